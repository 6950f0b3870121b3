"""ten_versions: 10 versions of a 256 MiB file, each with ~1% scattered edits.

The file is 256 MiB with --quick too (the peer numbers are for that size).
Version 1 is random; each next version applies 16 random overwrites or
insertions (a quarter insertions) spread over the file, together ~1% of its
size, and every version is snapshotted and committed. Reported: the final
store size (peers for the same workload: restic 423 MB, stores that keep
whole files 2,685 MB), the growth per version, re-snapshot speed of an
edited version and the restore time of the last one.

:func:`versions_workload` is shared with ``bench_chunk_size``.
"""

from __future__ import annotations

import filecmp
import itertools
import os
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from typing import Any

from objstore import ChunkParams, Repository

from .common import MB, Context, MiB, Row, Timing, apply_edits, remove, scattered_edits, settle, write_random_file

NAME = "ten_versions"
VERSIONS = 10
EDIT_FRACTION = 0.01
EDITS_PER_VERSION = 16
SEED = 20240601

RESTIC_MB = 423.0
WHOLE_FILE_MB = 2685.0


@dataclass
class VersionsResult:
    store_bytes: int  # packs + indexes after the last version
    growth: list[int]  # store growth of versions 2..N
    snapshot_s: list[float]  # every version's snapshot time
    file_sizes: list[int]  # every version's size
    objects: int
    raw_bytes: int
    restore_s: float | None


def versions_workload(
    base: str,
    workdir: str,
    params: ChunkParams | None = None,
    versions: int = VERSIONS,
    seed: int = SEED,
    restore: bool = True,
) -> VersionsResult:
    """Snapshot ``versions`` edited copies of ``base`` into a fresh repository.

    The edits depend only on ``seed`` and the file size, so every chunking
    setting sees exactly the same versions.
    """
    work = os.path.join(workdir, "weights.bin")
    store = os.path.join(workdir, "store")
    shutil.copyfile(base, work)
    rng = random.Random(seed)
    options: dict[str, Any] = {"chunking": params} if params is not None else {}
    sizes: list[int] = []
    times: list[float] = []
    stored: list[int] = []
    with Repository.init(store, **options) as repo:
        parent: str | None = None
        for v in range(versions):
            if v:
                apply_edits(work, scattered_edits(rng, os.path.getsize(work), EDIT_FRACTION, EDITS_PER_VERSION))
            sizes.append(os.path.getsize(work))
            settle()
            t0 = time.perf_counter()
            tree = repo.snapshot(work)
            times.append(time.perf_counter() - t0)
            parent = repo.commit(tree, [parent] if parent else [], message=f"version {v + 1}")
            stored.append(repo.stats().stored_bytes)
        assert parent is not None
        repo.refs.set("main", parent)
        st = repo.stats()
        restore_s = None
        if restore:
            dest = os.path.join(workdir, "restore")
            settle()
            t0 = time.perf_counter()
            repo.checkout(parent, dest)
            restore_s = time.perf_counter() - t0
            if not filecmp.cmp(work, os.path.join(dest, "weights.bin"), shallow=False):
                raise AssertionError("restored last version differs from the file snapshotted")
            remove(dest)
    remove(work)
    remove(store)
    growth = [b - a for a, b in itertools.pairwise(stored)]
    return VersionsResult(st.stored_bytes, growth, times, sizes, st.objects, st.raw_bytes, restore_s)


def run(ctx: Context) -> list[Row]:
    size = 256 * MiB  # also with --quick (about 10 s): the peer numbers are for 256 MiB
    d = ctx.fresh_dir(NAME)
    base = os.path.join(d, "base.bin")
    write_random_file(base, size)
    ctx.log(f"{NAME}: {VERSIONS} versions of a {size // MiB} MiB file, {EDITS_PER_VERSION} edits (~1%) each")
    r = versions_workload(base, d)
    remove(d)
    logical = sum(r.file_sizes)
    resnap = Timing(r.snapshot_s[1:])
    rows = [
        Row(
            NAME,
            f"store size after {VERSIONS} versions ({size // MiB} MiB file)",
            r.store_bytes / MB,
            "MB",
            RESTIC_MB,
            "<=",
            target_label=f"<= {RESTIC_MB:.0f} MB (restic)",
            notes=(
                f"whole-file stores {WHOLE_FILE_MB:.0f} MB; logical {logical / MB:.0f} MB; "
                f"dedup {logical / r.store_bytes:.1f}x; {r.objects} objects"
            ),
        ),
        Row(
            NAME,
            "store growth per edited version",
            statistics.median(r.growth) / MB,
            "MB",
            notes=(
                f"median of {len(r.growth)} ({min(r.growth) / MB:.1f}..{max(r.growth) / MB:.1f} MB); "
                f"edits {EDIT_FRACTION * size / MB:.1f} MB/version"
            ),
        ),
        Row(
            NAME,
            "re-snapshot speed of an edited version",
            size / MB / resnap.median,
            "MB/s",
            notes=f"{resnap.median:.3f} s; {resnap.spread()}; first version {r.snapshot_s[0]:.3f} s",
        ),
    ]
    if r.restore_s is not None:
        rows.append(
            Row(NAME, "restore last version", r.restore_s, "s", notes=f"{size / MB / r.restore_s:.0f} MB/s; 1 run")
        )
    return rows
