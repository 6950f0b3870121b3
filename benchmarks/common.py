"""Shared helpers: result rows, timing, test data, file edits, child processes."""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000
"""Sizes and speeds are reported in decimal MB (10**6 bytes), as the targets are."""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The checkout holding ``benchmarks/`` and ``objstore/``."""

_BLOCK = 64 * MiB
_COPY_BLOCK = 8 * MiB


# -- results ----------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    bench: str
    metric: str
    value: float | None
    unit: str
    target: float | None = None
    op: str | None = None  # how value must compare to target: "<", "<=", ">=", ">"
    target_label: str = ""  # overrides the printed target (e.g. to name a peer)
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.target:
            return None
        return self.value / self.target

    @property
    def status(self) -> str:
        if self.value is None:
            return "ERROR"
        if self.target is None or self.op is None:
            return "info"
        ok = {
            "<": self.value < self.target,
            "<=": self.value <= self.target,
            ">": self.value > self.target,
            ">=": self.value >= self.target,
        }[self.op]
        return "PASS" if ok else "FAIL"

    def target_text(self) -> str:
        if self.target_label:
            return self.target_label
        if self.target is None or self.op is None:
            return "-"
        return f"{self.op} {fmt(self.target)} {self.unit}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "op": self.op,
            "ratio": self.ratio,
            "status": self.status,
            "notes": self.notes,
        }


def fmt(v: float | None) -> str:
    """A number with about three significant digits, no exponent."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.4f}"


def format_table(rows: list[Row]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    headers = ["benchmark", "metric", "measured", "target", "meas/target", "result", "notes"]
    body = [
        [
            r.bench,
            r.metric,
            f"{fmt(r.value)} {r.unit}".rstrip(),
            r.target_text(),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.status,
            r.notes,
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(headers)]
    right = {2, 4}  # numbers right-aligned

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return " | ".join(out).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(b) for b in body)])


# -- context ----------------------------------------------------------------


@dataclass
class Context:
    """What a benchmark gets: where to work, how big, how often."""

    workdir: str
    quick: bool
    repeats: int
    verbose: bool = True
    started: float = field(default_factory=time.perf_counter)
    tmpfs: str = "/dev/shm"  # where the "tmpfs" variants of the scale benchmarks run ("" = skip them)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[{time.perf_counter() - self.started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def fresh_dir(self, name: str) -> str:
        """An empty directory under the workdir (emptied if it exists)."""
        path = os.path.join(self.workdir, name)
        remove(path)
        os.makedirs(path)
        return path


def remove(path: str) -> None:
    """Delete a file or directory tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def set_aside(path: str, trash: str) -> None:
    """Move ``path`` (if it exists) into the directory ``trash`` on the same filesystem, to be
    deleted with it once no timed step follows (``remove(trash)``); without ``trash``, delete it now.

    Why not delete at once: on ext4 without a journal (this machine's /tmp) the kernel
    does not reuse an inode freed in the last 60 s (360 s while its inode-table block
    is dirty) and tests the free ones one by one on every create (fs/ext4/ialloc.c,
    ``recently_deleted``). Creating 100,000 files in the minutes after deleting
    100,000 then costs 25-40 s of system CPU instead of ~1.5 s, for any program: a
    plain ``os.open`` loop too. A rename frees nothing.
    """
    if not trash:
        remove(path)
        return
    if not os.path.lexists(path):
        return
    os.makedirs(trash, exist_ok=True)
    os.rename(path, os.path.join(trash, f"{len(os.listdir(trash))}-{os.path.basename(path)}"))


# -- timing -----------------------------------------------------------------


@dataclass
class Timing:
    """Several measurements of one thing (seconds)."""

    samples: list[float]
    cpu: list[float] = field(default_factory=list)  # CPU time of this process (all threads), same runs

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def spread(self, scale: float = 1.0, unit: str = "s") -> str:
        """``median of N (min..max)`` in the given unit, for the notes column."""
        if len(self.samples) == 1:
            return "1 run"
        return f"median of {len(self.samples)} ({fmt(self.min * scale)}..{fmt(self.max * scale)} {unit})"

    @property
    def cpu_note(self) -> str:
        """``cpu X s``: median CPU time (user+sys, all threads) of the runs, if recorded."""
        return f"cpu {statistics.median(self.cpu):.2f} s" if self.cpu else ""


def settle() -> None:
    """Flush dirty pages and the filesystem journal before a timed run.

    Without this, a run pays for the writeback and deletions of the one
    before it: on ext4 mounted with ``discard`` (as on the benchmark VM)
    creating files stalls for seconds behind a journal commit that follows
    an ``rm -r`` of thousands of files.
    """
    os.sync()


def measure(
    fn: Callable[[], object],
    repeats: int,
    setup: Callable[[], object] | None = None,
    teardown: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn`` ``repeats`` times; setup, :func:`settle` and teardown run outside the clock."""
    samples = []
    cpu = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        settle()
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if teardown is not None:
            teardown()
    return Timing(samples, cpu)


# -- test data --------------------------------------------------------------


def write_random_file(path: str, size: int) -> None:
    """``size`` incompressible bytes (os.urandom in 64 MiB blocks)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(_BLOCK, left)
            f.write(os.urandom(n))
            left -= n


def age_file(path: str, seconds: float = 10.0) -> None:
    """Set mtime/atime ``seconds`` in the past (the stat cache ignores fresh files)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


Edit = tuple[int, str, bytes]
"""(offset in the file before the edit, "overwrite" or "insert", bytes)."""


def _copy_n(src: Any, dst: Any, n: int) -> None:
    while n > 0:
        block = src.read(min(_COPY_BLOCK, n))
        if not block:
            raise EOFError("source ended early")
        dst.write(block)
        n -= len(block)


def apply_edits(path: str, edits: list[Edit]) -> None:
    """Rewrite ``path`` with non-overlapping edits in one streaming pass.

    Offsets refer to the file before the edits. The result replaces ``path``
    under a new inode, as most tools that save files do.
    """
    tmp = path + ".edit-tmp"
    pos = 0
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for offset, kind, data in sorted(edits, key=lambda e: e[0]):
            if offset < pos:
                raise ValueError(f"edit at {offset} overlaps the previous one (ends at {pos})")
            _copy_n(src, dst, offset - pos)
            dst.write(data)
            pos = offset
            if kind == "overwrite":
                src.seek(len(data), os.SEEK_CUR)
                pos += len(data)
            elif kind != "insert":
                raise ValueError(f"unknown edit kind {kind!r}")
        shutil.copyfileobj(src, dst, _COPY_BLOCK)
    os.replace(tmp, path)


def scattered_edits(
    rng: random.Random,
    size: int,
    fraction: float = 0.01,
    count: int = 16,
    insert_share: float = 0.25,
) -> list[Edit]:
    """``count`` random overwrites/insertions totalling about ``fraction`` of ``size``.

    The file is split into ``count`` equal stretches and each gets one edit at
    a random place, so edits are spread over the whole file and never overlap.
    Each edit is 0.5x..1.5x the mean length; a quarter are insertions.
    """
    mean = size * fraction / count
    stretch = size // count
    edits: list[Edit] = []
    for i in range(count):
        length = max(1, int(mean * rng.uniform(0.5, 1.5)))
        length = min(length, stretch // 2)
        offset = i * stretch + rng.randrange(max(1, stretch - length))
        kind = "insert" if rng.random() < insert_share else "overwrite"
        edits.append((offset, kind, rng.randbytes(length)))
    return edits


def dir_bytes(path: str) -> int:
    """Apparent size of every file under ``path``."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(top, name)).st_size
    return total


def count_files(path: str) -> int:
    return sum(len(files) for _top, _dirs, files in os.walk(path))


# -- fresh processes --------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one ``benchmarks._child`` operation in a fresh interpreter.

    Returns its JSON report plus ``wall_s``: the whole process from spawn to
    exit, interpreter start-up and imports included.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    settle()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {spec.get('op')} failed ({proc.returncode}):\n{proc.stderr}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    return report
