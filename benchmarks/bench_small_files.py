"""small_files: 20,000 files of 1-4 KiB in nested directories.

Content is base64 text of random bytes (compresses to about 3/4), laid out
as 20 dirs x 10 subdirs x 100 files. Measured: the first snapshot into a
fresh repository (plus a commit and a ref, as a user would make), how many
files the store directory holds afterwards (everything: config, packs,
indexes, refs, stat cache; target < 20), the store size, and a full
checkout into an empty directory. Peers: restic 2.29 s backup / 5.58 s
restore, git 2.23 s restore (the restore target is the best peer, git).
"""

from __future__ import annotations

import base64
import os
import random

from objstore import Repository

from .common import MB, Context, Row, count_files, dir_bytes, measure, remove, set_aside

NAME = "small_files"
FILES = 20_000
RESTIC_SNAPSHOT_S = 2.29
RESTIC_RESTORE_S = 5.58
GIT_RESTORE_S = 2.23
MAX_STORE_FILES = 20


def make_tree(root: str, files: int, seed: int = 7) -> int:
    """Write ``files`` files of 1-4 KiB under ``root``; return their total size."""
    rng = random.Random(seed)
    text = base64.b64encode(os.urandom(files * 3 * 1024))
    pos = 0
    total = 0
    per_leaf = 100
    for i in range(files):
        leaf, n = divmod(i, per_leaf)
        top, sub = divmod(leaf, 10)
        d = os.path.join(root, f"dir{top:02d}", f"sub{sub}")
        if n == 0:
            os.makedirs(d, exist_ok=True)
        size = rng.randint(1024, 4096)
        if pos + size > len(text):
            pos = 0
        with open(os.path.join(d, f"file{n:03d}.txt"), "wb") as f:
            f.write(text[pos : pos + size])
        pos += size
        total += size
    return total


def run(ctx: Context) -> list[Row]:
    d = ctx.fresh_dir(NAME)
    src = os.path.join(d, "src")
    store = os.path.join(d, "store")
    dest = os.path.join(d, "restore")
    ctx.log(f"{NAME}: writing {FILES} files")
    total = make_tree(src, FILES)
    trees: list[str] = []

    def snapshot() -> None:
        with Repository.init(store) as repo:
            tree = repo.snapshot(src)
            repo.refs.set("main", repo.commit(tree, message="small files"))
            trees.append(tree)

    ctx.log(f"{NAME}: snapshot x{ctx.repeats}")
    snap = measure(snapshot, ctx.repeats, setup=lambda: remove(store))
    files_in_store = count_files(store)
    with Repository.open(store) as repo:
        st = repo.stats()
    store_total = dir_bytes(store)

    ctx.log(f"{NAME}: checkout x{ctx.repeats}")
    results = []

    def checkout() -> None:
        with Repository.open(store) as repo:
            results.append(repo.checkout("main", dest))

    # each round's tree is set aside, not deleted: creates right after a delete of
    # 20,000 files are pathologically slow on journal-less ext4 (see common.set_aside)
    trash = os.path.join(d, "trash")
    co = measure(checkout, ctx.repeats, setup=lambda: set_aside(dest, trash))
    if results[-1].files != FILES or dir_bytes(dest) != total:
        raise AssertionError(
            f"checkout wrote {results[-1].files} files / {dir_bytes(dest)} bytes, expected {FILES} / {total}"
        )
    remove(d)
    return [
        Row(
            NAME,
            f"snapshot {FILES} files ({total / MB:.0f} MB)",
            snap.median,
            "s",
            RESTIC_SNAPSHOT_S,
            "<=",
            target_label=f"<= {RESTIC_SNAPSHOT_S} s (restic)",
            notes=f"{FILES / snap.median:.0f} files/s; {snap.spread()}; {snap.cpu_note}",
        ),
        Row(
            NAME,
            "files in the store directory",
            files_in_store,
            "",
            MAX_STORE_FILES,
            "<",
            notes=f"{st.packs} pack(s); stats().files_on_disk (no cache/) = {st.files_on_disk}",
        ),
        Row(
            NAME,
            "store size (packs + indexes)",
            st.stored_bytes / MB,
            "MB",
            notes=f"{st.stored_bytes / total:.2f}x the {total / MB:.1f} MB of content; whole dir {store_total / MB:.1f} MB",
        ),
        Row(
            NAME,
            "checkout (restore) into an empty dir",
            co.median,
            "s",
            GIT_RESTORE_S,
            "<=",
            target_label=f"<= {GIT_RESTORE_S} s (git; restic {RESTIC_RESTORE_S})",
            notes=f"{FILES / co.median:.0f} files/s; {co.spread()}; {co.cpu_note}",
        ),
    ]
