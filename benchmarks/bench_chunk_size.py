"""chunk_size: store size and speed of a few FastCDC settings (docs/format.md).

Runs the ten_versions workload (10 versions, ~1% scattered edits each; a
256 MiB file, 64 MiB with --quick) once per ChunkParams setting, on the
same base file and the same edits, and reports per setting: the final store
size and growth per version (smaller chunks re-store less around an edit
but cost more index entries and per-object work), first-ingest throughput
(median of fresh-repository snapshots of the base file), re-snapshot speed
of an edited version and restore speed of the last one.

pyfastcdc's ``avg_size`` is the target *past* ``min_size``, so chunks
average about ``min_size + avg_size``; the labels give that sum.
"""

from __future__ import annotations

import os

from objstore import ChunkParams, Repository

from .bench_ten_versions import VERSIONS, versions_workload
from .common import MB, Context, KiB, MiB, Row, Timing, measure, remove, write_random_file

NAME = "chunk_size"

SETTINGS: list[tuple[str, ChunkParams]] = [
    ("~64 KiB (16K/48K/256K)", ChunkParams(min_size=16 * KiB, avg_size=48 * KiB, max_size=256 * KiB)),
    ("~160 KiB (32K/128K/512K, default)", ChunkParams()),
    ("~512 KiB (128K/384K/2M)", ChunkParams(min_size=128 * KiB, avg_size=384 * KiB, max_size=2 * MiB)),
    ("~1 MiB (256K/768K/4M)", ChunkParams(min_size=256 * KiB, avg_size=768 * KiB, max_size=4 * MiB)),
]


def _first_ingest(base: str, store: str, params: ChunkParams, repeats: int) -> tuple[Timing, int]:
    """Timing of snapshotting ``base`` into a fresh repository; and its chunk count."""
    chunks = 0

    def once() -> None:
        nonlocal chunks
        with Repository.init(store, chunking=params) as repo:
            repo.snapshot(base)
            chunks = repo.stats().objects - 2  # minus the chunk list and the tree

    return measure(once, repeats, setup=lambda: remove(store)), chunks


def run(ctx: Context) -> list[Row]:
    size = (64 if ctx.quick else 256) * MiB
    d = ctx.fresh_dir(NAME)
    base = os.path.join(d, "base.bin")
    store = os.path.join(d, "ingest-store")
    write_random_file(base, size)
    mb = size / MB
    rows: list[Row] = []
    for label, params in SETTINGS:
        ctx.log(f"{NAME}: {label}: ingest x{ctx.repeats}, then {VERSIONS} versions of {size // MiB} MiB")
        ingest, chunks = _first_ingest(base, store, params, ctx.repeats)
        remove(store)
        work = os.path.join(d, "versions")
        os.makedirs(work)
        r = versions_workload(base, work, params)
        remove(work)
        resnap = Timing(r.snapshot_s[1:])
        growth = sorted(r.growth)[len(r.growth) // 2] / MB
        rows.append(
            Row(
                NAME,
                f"{label}: store after {VERSIONS} versions",
                r.store_bytes / MB,
                "MB",
                notes=f"growth/version {growth:.1f} MB (median); {chunks} chunks, mean {size / max(chunks, 1) / KiB:.0f} KiB",
            )
        )
        restore = f"restore {mb / r.restore_s:.0f} MB/s" if r.restore_s else ""
        rows.append(
            Row(
                NAME,
                f"{label}: first ingest speed",
                mb / ingest.median,
                "MB/s",
                notes=f"{ingest.spread()}; re-snapshot {mb / resnap.median:.0f} MB/s; {restore}",
            )
        )
    remove(d)
    return rows
