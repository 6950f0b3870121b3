"""memory: peak RSS of a fresh process snapshotting a 2 GiB file.

The snapshot runs in a new interpreter (``benchmarks._child``) that reports
its own peak RSS (VmHWM from /proc/self/status), so neither this process
nor earlier children count. (``ru_maxrss`` is not used: after a vfork+exec
Linux reports the parent's high-water mark in it.) Target < 200 MB. For reference, the peak RSS of checking
that file out again in another fresh process is reported too (no target;
mapped pack pages that were read count towards RSS).
"""

from __future__ import annotations

import os

from .common import MB, Context, GiB, MiB, Row, remove, run_child, write_random_file

NAME = "memory"
TARGET_MB = 200.0


def run(ctx: Context) -> list[Row]:
    size = 512 * MiB if ctx.quick else 2 * GiB
    label = f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"
    d = ctx.fresh_dir(NAME)
    data = os.path.join(d, "big.bin")
    store = os.path.join(d, "store")
    dest = os.path.join(d, "restore")
    ctx.log(f"{NAME}: writing {label}")
    write_random_file(data, size)
    ctx.log(f"{NAME}: snapshot in a fresh process")
    snap = run_child({"op": "snapshot", "repo": store, "path": data, "init": True})
    remove(data)  # keep disk use down: file + store + checkout would be 3x
    ctx.log(f"{NAME}: checkout in a fresh process")
    co = run_child({"op": "checkout", "repo": store, "tree": snap["tree"], "dest": dest})
    if co["bytes"] != size:
        raise AssertionError(f"checkout wrote {co['bytes']} bytes, expected {size}")
    remove(d)
    kb = 1024 / MB
    return [
        Row(
            NAME,
            f"peak RSS, snapshot of {label} (fresh process)",
            snap["peak_rss_kb"] * kb,
            "MB",
            TARGET_MB,
            "<",
            notes=(
                f"after import+init {snap['rss_before_kb'] * kb:.0f} MB; {size / MB / snap['op_s']:.0f} MB/s; 1 run"
            ),
        ),
        Row(
            NAME,
            f"peak RSS, checkout of {label} (fresh process)",
            co["peak_rss_kb"] * kb,
            "MB",
            notes=(
                f"after import+open {co['rss_before_kb'] * kb:.0f} MB; at end anon {co['rss_anon_end_kb'] * kb:.0f} MB"
                f" + mapped files {co['rss_file_end_kb'] * kb:.0f} MB; {size / MB / co['op_s']:.0f} MB/s; 1 run"
            ),
        ),
    ]
