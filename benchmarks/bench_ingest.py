"""ingest: throughput of snapshot and checkout on incompressible data.

A 1 GiB random file (512 MiB with --quick) is snapshotted into a fresh
repository and checked out into an empty directory, in this process (both
cores) and in a fresh process pinned to one core (``sched_setaffinity``);
target >= 500 MB/s each way (the issue asks for it on one core). Then the
peer comparison with trackio: first snapshot and restore of a 256 MiB file
(trackio 0.56 s / 0.26 s).

The source file is in the page cache (just written); snapshot fsyncs its
packs, checkout does not fsync what it writes.
"""

from __future__ import annotations

import filecmp
import os
from typing import Any

from objstore import Repository

from .common import MB, Context, MiB, Row, Timing, measure, remove, run_child, write_random_file

NAME = "ingest"
TARGET_MBPS = 500.0
TRACKIO_SNAPSHOT_S = 0.56
TRACKIO_RESTORE_S = 0.26


class _Open:
    """A repository opened in ``setup`` and closed in ``teardown`` (outside the clock)."""

    def __init__(self) -> None:
        self.repo: Any = None
        self.tree = ""


def _in_process(data: str, store: str, dest: str, repeats: int) -> tuple[Timing, Timing]:
    """(snapshot, checkout) timings, each into a fresh store / empty dir."""
    h = _Open()

    def setup_snap() -> None:
        remove(store)
        h.repo = Repository.init(store)

    def snap() -> None:
        h.tree = h.repo.snapshot(data)

    snaps = measure(snap, repeats, setup=setup_snap, teardown=lambda: h.repo.close())
    checked = False

    def setup_co() -> None:
        remove(dest)
        h.repo = Repository.open(store)

    def teardown_co() -> None:
        nonlocal checked
        h.repo.close()
        if not checked:
            if not filecmp.cmp(data, os.path.join(dest, os.path.basename(data)), shallow=False):
                raise AssertionError("checked-out file differs from the original")
            checked = True

    cos = measure(lambda: h.repo.checkout(h.tree, dest), repeats, setup=setup_co, teardown=teardown_co)
    remove(dest)
    return snaps, cos


def _one_core(data: str, store: str, dest: str, repeats: int) -> tuple[Timing, Timing]:
    snaps: list[float] = []
    snaps_cpu: list[float] = []
    tree = ""
    for _ in range(repeats):
        remove(store)
        r = run_child({"op": "snapshot", "repo": store, "path": data, "init": True, "cpus": [0]})
        assert r["cpus"] == [0], r["cpus"]
        snaps.append(r["op_s"])
        snaps_cpu.append(r["cpu_s"])
        tree = r["tree"]
    cos: list[float] = []
    cos_cpu: list[float] = []
    for _ in range(repeats):
        remove(dest)
        r = run_child({"op": "checkout", "repo": store, "tree": tree, "dest": dest, "cpus": [0]})
        cos.append(r["op_s"])
        cos_cpu.append(r["cpu_s"])
    if os.path.getsize(os.path.join(dest, os.path.basename(data))) != os.path.getsize(data):
        raise AssertionError("one-core checkout wrote the wrong size")
    remove(dest)
    return Timing(snaps, snaps_cpu), Timing(cos, cos_cpu)


def run(ctx: Context) -> list[Row]:
    size = (512 if ctx.quick else 1024) * MiB
    d = ctx.fresh_dir(NAME)
    data = os.path.join(d, "random.bin")
    store = os.path.join(d, "store")
    dest = os.path.join(d, "restore")
    rows: list[Row] = []
    label = f"{size // MiB} MiB"

    write_random_file(data, size)
    ctx.log(f"{NAME}: {label} snapshot/checkout x{ctx.repeats}, this process")
    snap, co = _in_process(data, store, dest, ctx.repeats)
    ctx.log(f"{NAME}: {label} snapshot/checkout x{ctx.repeats}, fresh process on one core")
    snap1, co1 = _one_core(data, store, dest, ctx.repeats)
    mb = size / MB
    for what, t, cores in (
        ("snapshot", snap, "2 cores"),
        ("snapshot", snap1, "1 core"),
        ("checkout", co, "2 cores"),
        ("checkout", co1, "1 core"),
    ):
        rows.append(
            Row(
                NAME,
                f"{what} throughput, {label} random, {cores}",
                mb / t.median,
                "MB/s",
                TARGET_MBPS,
                ">=",
                notes=f"{t.median:.3f} s; {t.spread()}; {t.cpu_note}",
            )
        )
    remove(store)
    remove(data)

    small = 256 * MiB
    write_random_file(data, small)
    ctx.log(f"{NAME}: 256 MiB first snapshot / restore x{ctx.repeats}")
    snap, co = _in_process(data, store, dest, ctx.repeats)
    remove(d)
    rows.append(
        Row(
            NAME,
            "first snapshot of a 256 MiB file",
            snap.median,
            "s",
            TRACKIO_SNAPSHOT_S,
            "<=",
            target_label=f"<= {TRACKIO_SNAPSHOT_S} s (trackio)",
            notes=f"{small / MB / snap.median:.0f} MB/s; {snap.spread()}; {snap.cpu_note}",
        )
    )
    rows.append(
        Row(
            NAME,
            "restore of that 256 MiB file",
            co.median,
            "s",
            TRACKIO_RESTORE_S,
            "<=",
            target_label=f"<= {TRACKIO_RESTORE_S} s (trackio)",
            notes=f"{small / MB / co.median:.0f} MB/s; {co.spread()}; {co.cpu_note}",
        )
    )
    return rows
