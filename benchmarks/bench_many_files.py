"""many_files: 100,000 text files of 0.25-1 KiB (20,000 quick): log, checkout, unchanged re-log, store (issue 17).

English-like text (Zipf-distributed words and line breaks), 100 files per
directory, on disk and in tmpfs; mtimes set 10 s back so stat caches may
trust them. objstore (``Repository.snapshot`` + commit + ref; checkout of
``main``), our trackio façade (``log_artifact`` of the directory;
``use_artifact().download()``) and trackio 0.43 log the tree into an empty
store, restore it into an empty directory and log it again unchanged,
``--repeats`` times each, round-robin. Targets: log < 2 s, checkout < 2 s,
unchanged re-log < 0.4 s (for 100,000 files; --quick scales them to 20,000:
the same files per second), store bytes <= 0.5x trackio 0.43's, < 20 files
in the store.
"""

from __future__ import annotations

from .common import MB, Context, Row, fmt
from .peers.report import Section
from .peers.scale import (
    OURS,
    PLACES,
    REFERENCE,
    SMALL_LOG,
    SMALL_RELOG,
    SMALL_RESTORE,
    ScaleBench,
    find,
    run_scale,
    speed_row,
    spread,
    value_row,
)
from .peers.workloads import Cell

NAME = "many_files"
LOG_S = 2.0
CHECKOUT_S = 2.0
RELOG_S = 0.4
FULL_FILES = 100_000
STORE_VS_TRACKIO = 0.5
STORE_FILES = 20

_sections: list[Section] = []


def sections() -> list[Section]:
    return list(_sections)


def run(ctx: Context) -> list[Row]:
    _sections.clear()
    files = 20_000 if ctx.quick else FULL_FILES

    def work(bench: ScaleBench) -> None:
        bench.many_files(files)

    cells, extra, section = run_scale(
        ctx, NAME, work, f"{files:,} small text files (issue 17), disk and tmpfs", files=files
    )
    _sections.append(section)
    rows: list[Row] = []
    n = f"{files:,} files"
    for place in PLACES:
        content = extra.get(place, {}).get("content_bytes", 0)

        def timed(c: Cell) -> str:
            return f"{files / (c.seconds or 1):,.0f} files/s; {spread(c)}; cpu {fmt(c.cpu_s)} s"

        for ours in OURS:
            for key, what, limit in (
                (SMALL_LOG, "log", LOG_S),
                (SMALL_RESTORE, "checkout", CHECKOUT_S),
                (SMALL_RELOG, "unchanged re-log", RELOG_S),
            ):
                # the targets are for 100,000 files: a smaller tree gets the same files/s
                target = limit * files / FULL_FILES
                label = f"< {fmt(target)} s" + (f" ({limit:g} s per {FULL_FILES:,})" if files != FULL_FILES else "")
                rows.append(
                    value_row(
                        NAME,
                        cells,
                        key[place],
                        ours,
                        f"{what} {n}, {place}",
                        lambda c: c.seconds,
                        "s",
                        target,
                        "<",
                        timed,
                        target_label=label,
                    )
                )
            mine, ref = find(cells, SMALL_LOG[place], ours), find(cells, SMALL_LOG[place], REFERENCE)
            ratio_note = ""
            ratio = None
            if mine is not None and ref is not None and mine.stored and ref.stored and not ref.skipped:
                ratio = mine.stored / ref.stored
                ratio_note = (
                    f"{mine.stored / MB:.1f} MB vs {ref.stored / MB:.1f} MB ({ref.files:,} files); "
                    f"content {content / MB:.1f} MB, ours {mine.stored / content:.2f}x of it"
                )
            rows.append(
                value_row(
                    NAME,
                    cells,
                    SMALL_LOG[place],
                    ours,
                    f"store bytes vs trackio 0.43, {n}, {place}",
                    lambda c, r=ratio: r,
                    "x",
                    STORE_VS_TRACKIO,
                    "<=",
                    lambda c, t=ratio_note or f"no trackio 0.43 result: {ref.skipped if ref else 'missing'}": t,
                    target_label=f"<= {STORE_VS_TRACKIO}x trackio 0.43",
                )
            )
            rows.append(
                value_row(
                    NAME,
                    cells,
                    SMALL_LOG[place],
                    ours,
                    f"files in the store, {n}, {place}",
                    lambda c: c.files,
                    "",
                    STORE_FILES,
                    "<",
                    lambda c: f"{c.stored / MB:.1f} MB (everything the system keeps)" if c.stored else "",
                )
            )
        for ours in OURS:
            rows.append(speed_row(NAME, cells, SMALL_LOG[place], ours, None, f"log {n}, {place}"))
    return rows
