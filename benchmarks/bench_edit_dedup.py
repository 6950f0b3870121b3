"""edit_dedup: a small edit to a big file must cost little store space.

A 256 MiB random file is snapshotted; then 64 KiB in the middle are
overwritten and 100 bytes inserted at offset 1000 (which shifts every later
byte), and it is snapshotted again. Target: the store grows by at most 2% of
the file size (content-defined chunking re-stores only the touched chunks).
"""

from __future__ import annotations

import os
import statistics
import time

from objstore import Repository

from .common import MB, Context, KiB, MiB, Row, Timing, apply_edits, remove, settle, write_random_file

NAME = "edit_dedup"


def run(ctx: Context) -> list[Row]:
    size = (64 if ctx.quick else 256) * MiB
    trials = ctx.repeats
    d = ctx.fresh_dir(NAME)
    data = os.path.join(d, "model.bin")
    store = os.path.join(d, "store")
    growths: list[int] = []
    resnap: list[float] = []
    for trial in range(trials):
        ctx.log(f"{NAME}: trial {trial + 1}/{trials}, {size // MiB} MiB file")
        write_random_file(data, size)
        with Repository.init(store) as repo:
            repo.snapshot(data)
            before = repo.stats().stored_bytes
            apply_edits(
                data,
                [
                    (1000, "insert", os.urandom(100)),
                    (size // 2, "overwrite", os.urandom(64 * KiB)),
                ],
            )
            settle()
            t0 = time.perf_counter()
            repo.snapshot(data)
            resnap.append(time.perf_counter() - t0)
            growths.append(repo.stats().stored_bytes - before)
        remove(store)
    remove(d)
    growth = statistics.median(growths)
    pct = 100.0 * growth / size
    t = Timing(resnap)
    return [
        Row(
            NAME,
            f"store growth, 64 KiB overwrite + 100 B insert ({size // MiB} MiB file)",
            pct,
            "%",
            2.0,
            "<=",
            notes=(
                f"= {growth / MB:.2f} MB; median of {trials} files "
                f"({min(growths) / MB:.2f}..{max(growths) / MB:.2f} MB)"
            ),
        ),
        Row(
            NAME,
            "re-snapshot time after the edit",
            t.median,
            "s",
            notes=f"{size / MB / t.median:.0f} MB/s; {t.spread()}",
        ),
    ]
