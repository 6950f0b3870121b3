"""Where a scale workload runs: on disk (the benchmark's workdir) and in tmpfs.

Every scale benchmark runs its workload twice, once in each :class:`Place`:

* ``disk``: under the benchmark's ``--workdir`` (the system temp dir by
  default), so stores, sources and restores live on the real filesystem;
* ``tmpfs``: under ``--tmpfs`` (``/dev/shm`` by default), memory-backed, which
  takes the storage device out of the picture and leaves the engine's own cost.

Free room is checked before a workload writes anything; in tmpfs it is the
smaller of the filesystem's free space and the memory the kernel says is
available (tmpfs pages are RAM, and this machine has no swap), so a workload
that does not fit is skipped with a message instead of exhausting memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..common import Context, remove


@dataclass(frozen=True)
class Place:
    """A filesystem to run a workload on: ``label`` ("disk" or "tmpfs") and a private directory."""

    label: str
    root: str  # a fresh directory of this benchmark's own
    fstype: str

    def room(self) -> int:
        """Bytes that can still be written here (memory-bounded in tmpfs)."""
        free = shutil.disk_usage(self.root).free
        if self.fstype == "tmpfs":
            free = min(free, mem_available())
        return free

    def lacks(self, need: int, what: str) -> str:
        """ "" if ``need`` bytes fit (with a 3% margin and 1.5 GB to spare), else why the workload is skipped.

        ``need`` already counts what the workload writes at its peak; the margin covers the
        file system's own overhead and the processes' memory (in tmpfs the room is memory).
        """
        room = self.room()
        if need * 1.03 + 1.5e9 <= room:
            return ""
        kind = "free memory/tmpfs space" if self.fstype == "tmpfs" else "free disk space"
        return f"skipped: {what} needs ~{need / 1e9:.1f} GB, only {room / 1e9:.1f} GB of {kind} under {self.root}"


def mem_available() -> int:
    """``MemAvailable`` from /proc/meminfo in bytes (a large number where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def fstype(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts; "?" if unknown)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


@contextmanager
def places(ctx: Context, name: str) -> Iterator[tuple[list[Place], dict[str, str]]]:
    """(the places to run ``name`` in, {label: why not}); their directories are removed afterwards.

    ``disk`` is the workdir unless that is itself memory-backed; ``tmpfs`` is
    ``ctx.tmpfs`` if it is set, exists and is a tmpfs.
    """
    made: list[Place] = []
    missing: dict[str, str] = {}
    disk_kind = fstype(ctx.workdir)
    if disk_kind in ("tmpfs", "ramfs"):
        missing["disk"] = f"the workdir {ctx.workdir} is on {disk_kind}, not on disk"
    else:
        made.append(Place("disk", ctx.fresh_dir(f"{name}-disk"), disk_kind))
    if not ctx.tmpfs:
        missing["tmpfs"] = "--tmpfs ''"
    elif not os.path.isdir(ctx.tmpfs):
        missing["tmpfs"] = f"{ctx.tmpfs} does not exist"
    elif fstype(ctx.tmpfs) != "tmpfs":
        missing["tmpfs"] = f"{ctx.tmpfs} is {fstype(ctx.tmpfs)}, not tmpfs"
    else:
        made.append(Place("tmpfs", tempfile.mkdtemp(prefix=f"objstore-bench-{name}-", dir=ctx.tmpfs), "tmpfs"))
    for label, why in missing.items():
        ctx.log(f"{name}: no {label} run: {why}")
    try:
        yield made, missing
    finally:
        for place in made:
            remove(place.root)
