"""large_file: one 256 MiB random file (64 MiB quick), on disk and in tmpfs, vs trackio 0.43 (issue 17).

objstore (``Repository`` snapshot + commit + ref), our trackio façade
(``log_artifact``) and trackio 0.43 each log the file into an empty store
and restore it into an empty directory, ``--repeats`` times, round-robin,
each operation a fresh process (the peer benchmark's W1, run on both
filesystems). Targets: objstore's first snapshot >= 2 GB/s in tmpfs (on 2
cores; info on disk), log >= 1.5x and restore >= 1.5x as fast as trackio
0.43 (both places, both of our APIs).
"""

from __future__ import annotations

from .common import MB, Context, MiB, Row, fmt
from .peers.report import Section
from .peers.scale import LARGE_LOG, LARGE_RESTORE, OURS, PLACES, ScaleBench, run_scale, speed_row, spread, value_row

NAME = "large_file"
SNAPSHOT_MBPS = 2000.0  # 2 GB/s in tmpfs
SPEEDUP = 1.5

_sections: list[Section] = []


def sections() -> list[Section]:
    return list(_sections)


def run(ctx: Context) -> list[Row]:
    _sections.clear()
    size = (64 if ctx.quick else 256) * MiB
    label = f"{size // MiB} MiB"

    def work(bench: ScaleBench) -> None:
        bench.large_file(size)

    cells, _extra, section = run_scale(ctx, NAME, work, "One large file (issue 17), disk and tmpfs", label)
    _sections.append(section)
    rows: list[Row] = []
    for place in PLACES:
        rows.append(
            value_row(
                NAME,
                cells,
                LARGE_LOG[place],
                "objstore",
                f"first snapshot throughput, {label} random, {place}",
                lambda c: size / MB / c.seconds if c.seconds else None,
                "MB/s",
                SNAPSHOT_MBPS if place == "tmpfs" else None,
                ">=",
                lambda c: f"{fmt(c.seconds)} s; {spread(c)}; cpu {fmt(c.cpu_s)} s; snapshot + commit + ref",
            )
        )
        for ours in OURS:
            rows.append(speed_row(NAME, cells, LARGE_LOG[place], ours, SPEEDUP, f"log {label}, {place}"))
        for ours in OURS:
            rows.append(speed_row(NAME, cells, LARGE_RESTORE[place], ours, SPEEDUP, f"restore {label}, {place}"))
    return rows
