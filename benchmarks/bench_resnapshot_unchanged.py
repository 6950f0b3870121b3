"""resnapshot_unchanged: re-snapshot of a 1 GiB file nobody touched.

The file's mtime is set 10 s in the past before the first snapshot (the stat
cache does not trust files modified within 100 ms of being read), so the
re-snapshot should be answered from the stat cache without reading a byte.
Target < 50 ms, measured two ways: warm, with the same Repository object
that took the first snapshot; and in a fresh process, ``Repository.open``
plus the snapshot (interpreter start-up and imports are reported apart).
"""

from __future__ import annotations

import os
import time

from objstore import Repository

from .common import Context, MiB, Row, Timing, age_file, remove, run_child, settle, write_random_file

NAME = "resnapshot_unchanged"
TARGET_MS = 50.0


def run(ctx: Context) -> list[Row]:
    size = (256 if ctx.quick else 1024) * MiB
    runs = max(5, ctx.repeats)
    d = ctx.fresh_dir(NAME)
    data = os.path.join(d, "weights.bin")
    store = os.path.join(d, "store")
    write_random_file(data, size)
    age_file(data, 10.0)
    ctx.log(f"{NAME}: first snapshot of {size // MiB} MiB, then {runs} re-snapshots warm and {runs} in fresh processes")
    warm: list[float] = []
    with Repository.init(store) as repo:
        settle()
        t0 = time.perf_counter()
        first = repo.snapshot(data)
        first_s = time.perf_counter() - t0
        for _ in range(runs):
            t0 = time.perf_counter()
            again = repo.snapshot(data)
            warm.append(time.perf_counter() - t0)
            if again != first:
                raise AssertionError("re-snapshot of an unchanged file gave another tree")
    cold: list[float] = []
    opens: list[float] = []
    walls: list[float] = []
    for _ in range(runs):
        r = run_child({"op": "snapshot", "repo": store, "path": data})
        if r["tree"] != first:
            raise AssertionError("fresh-process re-snapshot gave another tree")
        cold.append(r["open_s"] + r["op_s"])
        opens.append(r["open_s"])
        walls.append(r["wall_s"])
    remove(d)
    w, c, o, wall = Timing(warm), Timing(cold), Timing(opens), Timing(walls)
    label = f"{size // MiB} MiB"
    return [
        Row(
            NAME,
            f"re-snapshot unchanged {label}, warm in-process",
            w.median * 1000,
            "ms",
            TARGET_MS,
            "<",
            notes=f"{w.spread(1000, 'ms')}; first snapshot {first_s:.2f} s",
        ),
        Row(
            NAME,
            f"re-snapshot unchanged {label}, fresh process incl. Repository.open",
            c.median * 1000,
            "ms",
            TARGET_MS,
            "<",
            notes=(
                f"open {o.median * 1000:.1f} ms; {c.spread(1000, 'ms')}; "
                f"whole process incl. interpreter+imports {wall.median * 1000:.0f} ms"
            ),
        ),
    ]
