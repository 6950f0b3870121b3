"""The six workloads, run for every system on the same data in the same run.

Each workload writes its data into its own source root (``<work>/wN/src``),
just before the systems read it (so it is in the page cache for everyone).
Timings are medians of ``repeats`` runs, each from a fresh store (or, for
restores and fetches, into an empty destination; re-logs repeat on the same
store), ``os.sync()`` before each run outside the clock, the systems taking
turns run by run (round-robin); workload 3 runs once per system.

1. ``W1 log`` / ``W1 restore``: one random (incompressible) file, logged
   into an empty store, then restored into an empty directory.
2. ``W2 re-log``: the same unchanged file logged again (its mtime set 10 s
   back before the first log, as for a file written a while ago).
3. ``W3 10 versions``: ten checkpoints of a random file; each next one has
   ``size/100/64 KiB`` 64 KiB regions overwritten at random places and 100
   bytes inserted (~1% changed); every version is logged; the key figure is
   the store size after all ten.
4. ``W4 log`` / ``W4 restore``: 20,000 text files of 1-4 KiB
   (``bench_small_files.make_tree``) logged as one directory, then restored.
5. ``W5 compressible``: float16 "weights" with 60% zeros (pruned), logged;
   the key figure is the store size.
6. ``W6 push`` / ``W6 fetch``: the W1 file, logged locally (outside the
   clock), sent to a fresh bucket on a loopback moto S3 server; then brought
   onto a "fresh machine" (empty store/cache) and materialized. HTTP
   requests are counted by the server.
"""

from __future__ import annotations

import filecmp
import os
import random
import shutil
import statistics
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from ..bench_small_files import make_tree
from ..common import (
    Context,
    KiB,
    MiB,
    age_file,
    apply_edits,
    count_files,
    dir_bytes,
    fmt,
    remove,
    set_aside,
    write_random_file,
)
from .systems import Op, S3Target, System

REGION = 64 * KiB
INSERT = 100
VERSIONS = 10
SEED = 20240611


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    metric: str  # the key figure, lower is better: "time" (s), "stored" (bytes) or "files" (files in the store)


WORKLOADS = [
    Workload("W1 log", "log one {size} random file", "time"),
    Workload("W1 restore", "restore it into an empty dir", "time"),
    Workload("W2 re-log", "log the unchanged file again", "time"),
    Workload("W3 10 versions", "10 checkpoints, ~1% changed each: store after all", "stored"),
    Workload("W4 log", "log {files} files of 1-4 KiB", "time"),
    Workload("W4 restore", "restore the {files} files", "time"),
    Workload("W5 compressible", "log a {size} compressible float16 file: store size", "stored"),
    Workload("W6 push", "push the W1 file to S3 (moto, loopback)", "time"),
    Workload("W6 fetch", "fetch it from S3 onto a fresh machine", "time"),
]
BY_KEY = {w.key: w for w in WORKLOADS}
"""Every known workload by key: the six above plus those the scale benchmarks :func:`register`."""


def register(workloads: list[Workload]) -> None:
    """Make more workloads known (to cells, tables and plots), after those already known."""
    for w in workloads:
        BY_KEY.setdefault(w.key, w)


@dataclass
class Cell:
    """One (workload, system) result."""

    workload: str
    system: str
    ours: bool
    skipped: str = ""  # why there is no result
    seconds: float | None = None  # median of the runs
    samples: list[float] = field(default_factory=list)
    data_bytes: int = 0  # logical bytes the operation handled (for MB/s)
    stored: int | None = None
    files: int | None = None
    peak_rss: int | None = None  # bytes, largest of the runs
    requests: int | None = None
    process_s: float | None = None  # median wall of the operation's processes, start-up included
    cpu_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mbps(self) -> float | None:
        if not self.seconds or not self.data_bytes:
            return None
        return self.data_bytes / 1e6 / self.seconds

    def key_value(self) -> float | None:
        """The workload's key figure (lower is better)."""
        if self.skipped:
            return None
        metric = BY_KEY[self.workload].metric
        return self.seconds if metric == "time" else self.files if metric == "files" else self.stored

    def add(self, ops: list[Op], data_bytes: int) -> None:
        self.samples = [o.seconds for o in ops]
        self.seconds = statistics.median(self.samples)
        self.process_s = statistics.median(o.process_s for o in ops)
        self.cpu_s = statistics.median(o.cpu_s for o in ops)
        self.peak_rss = max(o.peak_rss for o in ops)
        reqs = [o.requests for o in ops if o.requests is not None]
        self.requests = int(statistics.median(reqs)) if reqs else None
        self.data_bytes = data_bytes


# -- data ------------------------------------------------------------------------------


def write_compressible(path: str, size: int, seed: int = SEED) -> None:
    """float16 "weights", N(0, 0.02), 60% of them zero (pruned); numpy if present, else JSON lines."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with matplotlib in the bench extra
        _write_json_lines(path, size, seed)
        return
    rng = np.random.default_rng(seed)
    block = 8 * MiB // 2  # values per block
    with open(path, "wb") as f:
        left = size // 2
        while left:
            n = min(block, left)
            w = rng.normal(0.0, 0.02, n).astype(np.float16)
            w[rng.random(n) < 0.6] = 0
            f.write(w.tobytes())
            left -= n


def _write_json_lines(path: str, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        written = 0
        step = 0
        while written < size:
            line = f'{{"step": {step}, "loss": {rng.random():.6f}, "lr": 0.0003, "tokens": {rng.randrange(10**6)}}}\n'
            f.write(line)
            written += len(line)
            step += 1


def checkpoint_edits(rng: random.Random, size: int) -> list[tuple[int, str, bytes]]:
    """~1% of ``size`` in 64 KiB overwrites spread over the file, plus a 100-byte insertion."""
    regions = max(1, round(size * 0.01 / REGION))
    stretch = size // regions
    edits: list[tuple[int, str, bytes]] = []
    for i in range(regions):
        offset = i * stretch + rng.randrange(max(1, stretch - REGION - 8 * KiB))
        edits.append((offset, "overwrite", rng.randbytes(REGION)))
    j = rng.randrange(regions)  # the insertion goes at the end of a stretch, past its overwrite
    edits.append((j * stretch + stretch - 4 * KiB, "insert", rng.randbytes(INSERT)))
    return edits


def verify(restored: str, original: str) -> None:
    """The restore must be exactly the source (file) or have its files and bytes (directory)."""
    if os.path.isdir(original):
        got = (count_files(restored), dir_bytes(restored)) if os.path.isdir(restored) else (0, 0)
        want = (count_files(original), dir_bytes(original))
        if got != want:
            raise AssertionError(f"restore has {got[0]} files / {got[1]} bytes, expected {want[0]} / {want[1]}")
    elif not (os.path.isfile(restored) and filecmp.cmp(restored, original, shallow=False)):
        raise AssertionError(f"restored file {restored} differs from {original}")


# -- running ---------------------------------------------------------------------------


class Bench:
    """Runs the workloads for a list of systems and collects cells.

    Repeated measurements go round-robin: repeat 1 of every system, then
    repeat 2 of every system, ..., so a machine whose state drifts (other
    load, a filesystem still digesting the previous deletions) spreads its
    drift over all systems instead of penalizing whichever ran last.
    """

    def __init__(self, ctx: Context, systems: list[System], skipped: dict[str, str], work: str) -> None:
        self.ctx = ctx
        self.systems = systems
        self.skipped = skipped
        self.work = work
        self.size = 64 * MiB if ctx.quick else 256 * MiB
        self.files = 5_000 if ctx.quick else 20_000
        self.cells: list[Cell] = []
        self.trash = ""  # set: restored trees are moved there instead of deleted (common.set_aside)

    @property
    def size_label(self) -> str:
        return f"{self.size // MiB} MiB"

    # -- helpers --

    def _cells(self, key: str) -> dict[str, Cell]:
        """A cell per system for a workload, plus rows for the peers that could not be installed."""
        out = {}
        for system in self.systems:
            out[system.name] = Cell(key, system.name, system.ours)
            self.cells.append(out[system.name])
        for name, why in self.skipped.items():
            self.cells.append(Cell(key, name, False, skipped=f"not installed: {why}"))
        return out

    def _rounds(
        self,
        live: list[System],
        cells: list[dict[str, Cell]],
        step: Callable[[System, int], None],
        times: int | None = None,
    ) -> list[System]:
        """``step(system, i)`` for i in range(times), round-robin over ``live``; the systems still standing.

        A system whose step raises gets the error in its still-empty cells,
        its store is removed, and it sits out the rest of the workload.
        """
        live = list(live)
        for i in range(self.ctx.repeats if times is None else times):
            for system in list(live):
                try:
                    step(system, i)
                except Exception as exc:
                    msg = f"failed: {type(exc).__name__}: {exc}"[:300]
                    self.ctx.log(f"peers: {system.name}: {msg}")
                    for group in cells:
                        c = group[system.name]
                        if c.seconds is None and not c.skipped:
                            c.skipped = msg
                    system.cleanup()
                    live.remove(system)
        return live

    def _dest(self, system: System) -> str:
        path = os.path.join(self.work, "dest", system.name.replace(" ", "_"))
        set_aside(path, self.trash)
        os.makedirs(path)
        return path

    def _restores(
        self,
        live: list[System],
        cells: list[dict[str, Cell]],
        cell: dict[str, Cell],
        rel: str,
        original: str,
        data_bytes: int,
    ) -> list[System]:
        ops: dict[str, list[Op]] = {s.name: [] for s in live}

        def step(system: System, i: int) -> None:
            dest = self._dest(system)
            op, restored = system.restore(rel, dest)
            if i == 0:
                verify(restored, original)
            ops[system.name].append(op)
            set_aside(dest, self.trash)

        live = self._rounds(live, cells, step)
        for s in live:
            cell[s.name].add(ops[s.name], data_bytes)
        return live

    def _logs(
        self,
        live: list[System],
        cells: list[dict[str, Cell]],
        cell: dict[str, Cell],
        src: str,
        rel: str,
        data_bytes: int,
    ) -> list[System]:
        """Log ``rel`` into a fresh store, ``repeats`` times per system; the store of the last run stays."""
        ops: dict[str, list[Op]] = {s.name: [] for s in live}

        def step(system: System, i: int) -> None:
            system.reset(src)
            system.prepare(rel)
            ops[system.name].append(system.log(rel, "v1"))

        live = self._rounds(live, cells, step)
        for s in live:
            cell[s.name].add(ops[s.name], data_bytes)
            cell[s.name].stored, cell[s.name].files = s.store_size()
        return live

    def _done(self, root: str) -> None:
        for system in self.systems:
            system.cleanup()
        remove(root)

    # -- workloads --

    def w1_w2(self) -> None:
        """W1 log + restore and W2 re-log of one random file."""
        root = os.path.join(self.work, "w1")
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        rel = "weights.bin"
        path = os.path.join(src, rel)
        self.ctx.log(f"peers: W1/W2: writing a {self.size_label} random file")
        write_random_file(path, self.size)
        age_file(path)  # written a while ago: stat caches may trust it (W2)
        log, restore, relog = self._cells("W1 log"), self._cells("W1 restore"), self._cells("W2 re-log")
        groups = [log, restore, relog]
        self.ctx.log(f"peers: W1: log x{self.ctx.repeats}, round-robin over {len(self.systems)} systems")
        live = self._logs(self.systems, groups, log, src, rel, self.size)
        self.ctx.log(f"peers: W1: restore x{self.ctx.repeats}")
        live = self._restores(live, groups, restore, rel, path, self.size)
        self.ctx.log(f"peers: W2: re-log x{self.ctx.repeats}")
        ops: dict[str, list[Op]] = {s.name: [] for s in live}

        def step(system: System, i: int) -> None:
            ops[system.name].append(system.log(rel, f"epoch {i + 2}"))

        live = self._rounds(live, groups, step)
        for s in live:
            c = relog[s.name]
            c.add(ops[s.name], self.size)
            c.stored, c.files = s.store_size()
            before = log[s.name].stored
            if c.stored is not None and before is not None:
                c.notes.append(f"store grew {c.stored - before:+,} B over {self.ctx.repeats} re-logs")
        self._done(root)

    def w3(self) -> None:
        """Ten checkpoints with ~1% changed each; the store size after all ten (one run per system, in turn)."""
        root = os.path.join(self.work, "w3")
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        base = os.path.join(root, "base.bin")
        rel = "ckpt.bin"
        path = os.path.join(src, rel)
        self.ctx.log(f"peers: W3: writing a {self.size_label} random file")
        write_random_file(base, self.size)
        cells = self._cells("W3 10 versions")
        for system in self.systems:
            self.ctx.log(f"peers: W3 {system.name}: {VERSIONS} versions")

            def step(system: System, _: int) -> None:
                remove(path)
                shutil.copyfile(base, path)
                system.reset(src)
                rng = random.Random(SEED)  # the same ten versions for every system
                ops = []
                total = 0
                for v in range(VERSIONS):
                    if v:
                        apply_edits(path, checkpoint_edits(rng, os.path.getsize(path)))
                    system.prepare(rel)
                    total += os.path.getsize(path)
                    ops.append(system.log(rel, f"v{v + 1}"))
                cell = cells[system.name]
                cell.add(ops, total)
                # the row's time is all ten logs together; the per-version spread goes in the notes
                per = [o.seconds for o in ops]
                cell.notes.append(
                    f"per version {fmt(min(per))}..{fmt(max(per))} s, median {fmt(statistics.median(per))} s"
                )
                cell.seconds = sum(per)
                cell.samples = [cell.seconds]
                cell.stored, cell.files = system.store_size()
                system.cleanup()  # ten versions of every system at once would need ~15 GB

            self._rounds([system], [cells], step, times=1)
        self._done(root)

    def w4(self) -> None:
        """20,000 small text files as one directory: log, then restore."""
        root = os.path.join(self.work, "w4")
        src = os.path.join(root, "src")
        rel = "dataset"
        data = os.path.join(src, rel)
        self.ctx.log(f"peers: W4: writing {self.files:,} files")
        total = make_tree(data, self.files)
        log, restore = self._cells("W4 log"), self._cells("W4 restore")
        self.ctx.log(f"peers: W4: log x{self.ctx.repeats}")
        live = self._logs(self.systems, [log, restore], log, src, rel, total)
        self.ctx.log(f"peers: W4: restore x{self.ctx.repeats}")
        self._restores(live, [log, restore], restore, rel, data, total)
        self._done(root)

    def w5(self) -> None:
        """A compressible file: store size (and log time)."""
        root = os.path.join(self.work, "w5")
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        rel = "weights-f16.bin"
        path = os.path.join(src, rel)
        self.ctx.log(f"peers: W5: writing a {self.size_label} compressible file")
        write_compressible(path, self.size)
        cells = self._cells("W5 compressible")
        self.ctx.log(f"peers: W5: log x{self.ctx.repeats}")
        live = self._logs(self.systems, [cells], cells, src, rel, self.size)
        for s in live:
            c = cells[s.name]
            if c.stored:
                c.notes.append(f"stored/file {c.stored / self.size:.2f}")
        self._done(root)

    def w6(self, endpoint: str) -> None:
        """Push to and fetch from S3 (a fresh bucket per push)."""
        root = os.path.join(self.work, "w6")
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        rel = "weights.bin"
        path = os.path.join(src, rel)
        self.ctx.log(f"peers: W6: writing a {self.size_label} random file")
        write_random_file(path, self.size)
        age_file(path)
        push, fetch = self._cells("W6 push"), self._cells("W6 fetch")
        live = []
        for system in self.systems:
            if system.s3_skip:
                push[system.name].skipped = fetch[system.name].skipped = system.s3_skip
            else:
                live.append(system)
        groups = [push, fetch]

        def setup(system: System, _: int) -> None:
            system.reset(src)
            system.prepare(rel)
            system.log(rel, "v1")  # outside the clock: the file is in the local store

        self.ctx.log("peers: W6: logging locally (outside the clock)")
        live = self._rounds(live, groups, setup, times=1)
        ops: dict[str, list[Op]] = {s.name: [] for s in live}
        targets: dict[str, S3Target] = {}

        def push_step(system: System, _: int) -> None:
            targets[system.name] = new_bucket(endpoint)
            ops[system.name].append(system.push(targets[system.name], rel))

        self.ctx.log(f"peers: W6: push x{self.ctx.repeats}")
        live = self._rounds(live, groups, push_step)
        for s in live:
            push[s.name].add(ops[s.name], self.size)
        ops = {s.name: [] for s in live}

        def fetch_step(system: System, i: int) -> None:
            dest = self._dest(system)
            op, restored = system.fetch(targets[system.name], rel, dest)
            if i == 0:
                verify(restored, path)
            ops[system.name].append(op)
            remove(dest)

        self.ctx.log(f"peers: W6: fetch x{self.ctx.repeats}")
        live = self._rounds(live, groups, fetch_step)
        for s in live:
            fetch[s.name].add(ops[s.name], self.size)
        self._done(root)


_buckets = 0


def new_bucket(endpoint: str) -> S3Target:
    """A fresh bucket (an unsigned PUT, which moto accepts)."""
    global _buckets
    _buckets += 1
    name = f"peers-{os.getpid()}-{_buckets}"
    req = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
    return S3Target(endpoint, name)
