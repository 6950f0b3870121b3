"""The bulk small-file paths: a directory's small files are read, stored, checked
out and remembered in batches, with exactly the ids, trees and checks of the
one-file-at-a-time paths."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import msgpack
import pytest
from helpers import SMALL, age, damage, dir_state, rand_bytes, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objstore import FilesUnder, Repository, Tree, TreeEntry
from objstore.checkout import content_id
from objstore.errors import CorruptObject, FormatError, UnsafePath
from objstore.objects import DIR, MODE_EXEC, MODE_FILE, decode, tree_rows
from objstore.statcache import RACY_NS


def _mixed_tree(root: Path) -> Path:
    """Small files (empty, executable, non-ASCII names), one large file, a symlink, nested directories."""
    for d in ("a", "a/deep", "b", "ü dir"):
        for i in range(12):
            write(root / d / f"f{i:02d}.txt", f"{d} {i} ".encode() * (i * 7), executable=i == 3)
    write(root / "a" / "same-1.txt", b"duplicate content")
    write(root / "b" / "same-2.txt", b"duplicate content")
    write(root / "big.bin", rand_bytes(7, 20_000))
    write(root / "edge.bin", rand_bytes(8, SMALL.small_file))  # exactly the small-file bound
    write(root / "over.bin", rand_bytes(9, SMALL.small_file + 1))  # one byte over: chunked
    os.symlink("a/f01.txt", root / "link")
    (root / "empty-dir").mkdir()
    return root


def _oracle_tree(repo: Repository, path: Path) -> str:
    """The tree id of ``path`` built entry by entry from the object model (no snapshot code)."""
    entries = []
    for name in os.listdir(path):
        p = path / name
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            entries.append(TreeEntry(name, "symlink", target=os.readlink(p)))
        elif stat.S_ISDIR(st.st_mode):
            tree_id = _oracle_tree(repo, p)
            entries.append(TreeEntry(name, "dir", tree_id, repo.get(tree_id).size))
        else:
            mode = MODE_EXEC if st.st_mode & 0o111 else MODE_FILE
            entries.append(TreeEntry(name, "file", content_id(str(p), SMALL, repo.algorithm), st.st_size, mode))
    return repo.algorithm.digest(Tree.from_entries(entries).encode()).hex()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "store", chunking=SMALL)


@pytest.mark.parametrize("aged", [True, False])
def test_a_snapshot_gives_the_ids_the_object_model_gives(repo, tmp_path, aged):
    src = _mixed_tree(tmp_path / "src")
    if aged:
        age(src)
    tree = repo.snapshot(src)
    assert tree == _oracle_tree(repo, src)
    again = repo.snapshot(src)  # from the stat cache, where it may be trusted
    assert again == tree
    assert repo.read_file(tree, "a/f05.txt") == (src / "a" / "f05.txt").read_bytes()
    assert repo.read_file(tree, "b/same-2.txt") == b"duplicate content"


def test_a_checkout_into_an_empty_or_missing_folder_is_the_tree(repo, tmp_path):
    src = _mixed_tree(tmp_path / "src")
    commit = repo.commit(repo.snapshot(src))
    for dest in (tmp_path / "missing" / "deeper", tmp_path / "empty"):
        if dest.name == "empty":
            dest.mkdir()
        result = repo.checkout(commit, dest)
        assert dir_state(dest) == dir_state(src)
        assert result.files == sum(1 for _, e in repo.walk(commit) if e.kind == "file")
        assert result.bytes == sum(e.size for _, e in repo.walk(commit) if e.kind == "file")
        # The record of what was placed lets the next checkout tidy up after this one.
        assert repo.checkout(commit, dest).skipped == result.files


def test_a_checkout_over_an_older_one_replaces_and_tidies(repo, tmp_path):
    src = _mixed_tree(tmp_path / "src")
    first = repo.commit(repo.snapshot(src))
    dest = tmp_path / "out"
    repo.checkout(first, dest)
    (src / "a" / "f02.txt").write_bytes(b"changed")
    os.unlink(src / "b" / "f04.txt")
    write(src / "b" / "new.txt", b"new")
    second = repo.commit(repo.snapshot(src), [first])
    result = repo.checkout(second, dest)
    assert dir_state(dest) == dir_state(src)
    assert result.removed == ["b/f04.txt"]


def test_checkout_writes_nothing_through_a_symlink_planted_in_a_fresh_folder(repo, tmp_path):
    src = tmp_path / "src"
    write(src / "d" / "x.txt", b"x")
    tree = repo.snapshot(src)
    dest, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    dest.mkdir()
    os.symlink(outside, dest / "d")  # where the tree has a directory
    repo.checkout(tree, dest)
    assert (dest / "d" / "x.txt").read_bytes() == b"x"
    assert not (dest / "d").is_symlink()
    assert list(outside.iterdir()) == []


def test_every_small_file_of_a_checkout_is_verified(tmp_path):
    src = tmp_path / "src"
    for i in range(50):
        write(src / f"f{i:02d}.txt", rand_bytes(i, 300))  # random: stored raw, checked inline
    # Format version 2: one record per file, so the damage is this file's alone (in
    # version 3 the files share a group record, which fails as a whole: test_groups.py).
    repo = Repository.init(tmp_path / "store", chunking=SMALL, version=2)
    tree = repo.snapshot(src)
    victim = {p: e.id for p, e in repo.walk(tree)}["f17.txt"]
    repo = damage(repo, victim)
    dest = tmp_path / "out"
    with pytest.raises(CorruptObject) as info:
        repo.checkout(tree, dest)
    assert info.value.object_id == victim
    assert not (dest / "f17.txt").exists()


def test_a_changed_file_is_the_only_one_read_again(repo, tmp_path, monkeypatch):
    from test_statcache import CountingReads

    src = tmp_path / "src"
    for i in range(40):
        write(src / "d" / f"f{i:02d}.txt", f"file {i}".encode())
    age(src)
    first = repo.snapshot(src)
    changed = src / "d" / "f07.txt"
    st = os.stat(changed)
    changed.write_bytes(b"file X")  # same size and mtime: only ctime tells
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    reads = CountingReads(monkeypatch)
    second = repo.snapshot(src)
    assert second != first
    assert [p for p in reads.paths if p.startswith(str(src))] == [str(changed)]
    assert repo.read_file(second, "d/f07.txt") == b"file X"


def test_files_written_within_the_racy_window_are_not_trusted(repo, tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        write(src / f"f{i}.txt", b"v1")  # mtimes are now: within RACY_NS of the snapshot
    first = repo.snapshot(src)
    st = os.stat(src / "f3.txt")
    (src / "f3.txt").write_bytes(b"v2")
    os.utime(src / "f3.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(src / "f3.txt").st_mtime_ns > os.stat(src / "f3.txt").st_ctime_ns - RACY_NS
    second = repo.snapshot(src)
    assert second != first
    assert repo.read_file(second, "f3.txt") == b"v2"


def test_the_stat_cache_is_one_compact_file_of_version_3(repo, tmp_path):
    src = tmp_path / "src"
    n = 0
    for d in range(10):
        for i in range(100):
            write(src / f"dir{d}" / f"doc{i:02d}.txt", f"{d}/{i}".encode())
            n += 1
    age(src)
    repo.snapshot(src)
    cache = tmp_path / "store" / "cache" / "stat"
    assert os.listdir(cache.parent) == ["stat"]
    data = msgpack.unpackb(cache.read_bytes(), raw=False)
    assert data[0] == 3
    names = sum(len(f"doc{i:02d}.txt") for i in range(100)) * 10
    per_entry = (cache.stat().st_size - names) / n
    assert per_entry < 62  # git's index: 62 bytes plus the name per entry


def test_an_older_cache_is_ignored_and_replaced(repo, tmp_path):
    src = _mixed_tree(tmp_path / "src")
    age(src)
    tree = repo.snapshot(src)
    cache = tmp_path / "store" / "cache" / "stat"
    old = {str(src / "a"): [None, None, 0, 0, msgpack.packb({"f00.txt": [0, 0, 0, 0, 0, "00" * 16]})]}
    cache.write_bytes(msgpack.packb([2, repo.statcache.salt, old], use_bin_type=True))
    repo.close()
    again = Repository.open(tmp_path / "store")
    assert again.snapshot(src) == tree
    again.close()
    assert msgpack.unpackb(cache.read_bytes(), raw=False)[0] == 3


def _os_walk_files(root: Path) -> dict[str, str]:
    """What FilesUnder (and trackio's add_dir) take, listed the slow way: os.walk, regular files
    with symlinks to files followed, symlinked directories not descended."""
    out = {}
    for top, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(top, name)
            if os.path.isfile(p):
                out[os.path.relpath(p, root).replace(os.sep, "/")] = p
    return out


def test_files_under_is_the_regular_files_below(repo, tmp_path):
    src = _mixed_tree(tmp_path / "src")
    os.symlink("a", src / "dirlink")
    os.symlink("nowhere", src / "dangling")
    os.mkfifo(src / "b" / "fifo")
    (src / "nested" / "empty").mkdir(parents=True)
    age(src)
    expected = repo.build_tree(_os_walk_files(src))
    assert repo.build_tree({"": FilesUnder(src)}) == expected
    assert repo.build_tree({"": FilesUnder(src)}) == expected  # again, from the stat cache
    assert repo.build_tree({"under/here": FilesUnder(src)}) == repo.build_tree(
        {f"under/here/{k}": v for k, v in _os_walk_files(src).items()}
    )
    # The symlinked file is stored as the file it points to; a plain snapshot keeps the link.
    assert repo.read_file(expected, "link") == (src / "a" / "f01.txt").read_bytes()
    with pytest.warns(UserWarning, match="fifo"):
        assert repo.build_tree({"": FilesUnder(src)}) != repo.snapshot(src)
    # A change below is seen.
    (src / "a" / "deep" / "f04.txt").write_bytes(b"edited")
    assert repo.build_tree({"": FilesUnder(src)}) == repo.build_tree(_os_walk_files(src))


def test_build_tree_hands_over_the_rows_of_the_trees_it_encodes(repo, tmp_path):
    """``rows=`` gets, for each directory it listed, exactly the rows the stored tree decodes to
    (small, large, executable and symlinked files, nested and empty directories); a tree
    answered from the stat cache is not encoded again, so it is not handed over."""
    src = _mixed_tree(tmp_path / "src")
    os.symlink("nowhere", src / "dangling")
    age(src)
    rows: dict[bytes, list] = {}
    tree = repo.build_tree({"data": FilesUnder(src)}, rows=rows)
    stored = {}

    def walk(oid: bytes) -> None:
        stored[oid] = got = tree_rows(repo.odb.get_encoded_from(oid)[0], repo.odb.digest_size)
        for row in got:
            if row[1] == DIR:
                walk(row[2])

    walk(bytes.fromhex(tree))
    top = bytes.fromhex(tree)
    assert set(rows) == set(stored) - {top}  # the top tree is built from logical paths, not listed
    for oid, got in rows.items():
        assert [list(r) for r in got] == stored[oid]
    again: dict[bytes, list] = {}
    assert repo.build_tree({"data": FilesUnder(src)}, rows=again) == tree
    assert again == {}  # every directory answered by its signature


def test_files_under_refuses_a_forbidden_character(repo, tmp_path):
    src = tmp_path / "src"
    write(src / "d" / "a\\b.txt", b"x")
    with pytest.raises(UnsafePath) as info:
        repo.build_tree({"": FilesUnder(src, forbidden="\\")})
    assert info.value.path == str(src / "d" / "a\\b.txt")
    assert repo.build_tree({"": FilesUnder(src)})  # allowed where not forbidden


def test_files_under_checks_no_name_it_leaves_out(repo, tmp_path):
    """A directory without a file under it is no entry of the tree, so its name is not checked
    either (what trackio's add_dir decides when it stages one)."""
    src = tmp_path / "src"
    write(src / "ok" / "f.txt", b"x")
    (src / "no\\files" / "here").mkdir(parents=True)
    tree = repo.build_tree({"": FilesUnder(src, forbidden="\\")})
    assert [p for p, _ in repo.walk(tree)] == ["ok", "ok/f.txt"]
    write(src / "no\\files" / "here" / "now.txt", b"y")
    with pytest.raises(UnsafePath) as info:
        repo.build_tree({"": FilesUnder(src, forbidden="\\")})
    assert info.value.path == str(src / "no\\files")


def test_a_directory_without_files_leaves_nothing(repo, tmp_path):
    (tmp_path / "src" / "a" / "b").mkdir(parents=True)
    write(tmp_path / "x.txt", b"x")
    tree = repo.build_tree({"empty": FilesUnder(tmp_path / "src"), "x.txt": str(tmp_path / "x.txt")})
    assert [p for p, _ in repo.walk(tree)] == ["x.txt"]


# -- tree rows: the checkout's fast reading of trees accepts exactly what decode accepts

def _valid(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\0" not in name


_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6).filter(_valid)
_entry = st.one_of(
    st.builds(lambda n, i, s, x: TreeEntry(n, "file", i, s, MODE_EXEC if x else MODE_FILE), _names, st.binary(min_size=16, max_size=16).map(bytes.hex), st.integers(0, 2**40), st.booleans()),
    st.builds(lambda n, i, s: TreeEntry(n, "dir", i, s), _names, st.binary(min_size=16, max_size=16).map(bytes.hex), st.integers(0, 2**40)),
    st.builds(lambda n, t: TreeEntry(n, "symlink", target=t), _names, st.text(max_size=8)),
    st.builds(lambda n, t, s, d: TreeEntry(n, "reference", size=s, target=t, digest=d), _names, st.text(max_size=8), st.integers(-1, 99), st.none() | st.text(max_size=8)),
)


@given(st.lists(_entry, max_size=8, unique_by=lambda e: e.name))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_tree_rows_are_the_entries_decode_gives(entries):
    encoded = Tree.from_entries(entries).encode()
    assert tree_rows(encoded, 16) == [e._encode() for e in decode(encoded, 16).entries]


def _spoil(row: list, j: int, bad: object) -> None:
    """Put ``bad`` in field ``j`` of a tree row (one past the end: an extra field)."""
    if j == len(row):
        row.append(bad)
    else:
        row[j] = bad


def _tree_rows_agree_with_decode(body: list) -> None:
    """``tree_rows`` refuses what ``decode`` refuses, and otherwise gives decode's rows."""
    encoded = b"\x03" + msgpack.packb(body, use_bin_type=True)
    try:
        expected = [e._encode() for e in decode(encoded, 16).entries]
    except FormatError:
        with pytest.raises(FormatError):
            tree_rows(encoded, 16)
    else:
        assert tree_rows(encoded, 16) == expected



@given(st.lists(_entry, min_size=1, max_size=5, unique_by=lambda e: e.name), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_tree_rows_refuse_what_decode_refuses(entries, data):
    body = [e._encode() for e in Tree.from_entries(entries).entries]
    i = data.draw(st.integers(0, len(body) - 1))
    row = body[i]
    j = data.draw(st.integers(0, len(row)))
    bad = data.draw(st.sampled_from([None, True, False, -5, 1.5, "", ".", "..", "a/b", "x\0", b"\x00" * 3, 0o600, 7, []]))
    _spoil(row, j, bad)
    if data.draw(st.booleans()):
        body.reverse()
    _tree_rows_agree_with_decode(body)


@given(
    st.lists(
        st.builds(lambda n, i, s, x: TreeEntry(n, "file", i, s, MODE_EXEC if x else MODE_FILE), _names, st.binary(min_size=16, max_size=16).map(bytes.hex), st.integers(0, 2**40), st.booleans()),
        min_size=1,
        max_size=5,
        unique_by=lambda e: e.name,
    ),
    st.data(),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_tree_rows_of_files_only_refuse_what_decode_refuses(entries, data):
    """A tree of files only is checked column by column (one C-level pass per field):
    any one bad field in any row is refused as the per-row check refuses it."""
    body = [e._encode() for e in Tree.from_entries(entries).entries]
    row = body[data.draw(st.integers(0, len(body) - 1))]
    j = data.draw(st.integers(0, len(row)))
    bad = data.draw(st.sampled_from([None, True, False, -5, 1.5, "", ".", "..", "a/b", "x\0", b"\x00" * 3, b"\x00" * 17, 0o600, 0o100644, 7, 2, []]))
    _spoil(row, j, bad)
    _tree_rows_agree_with_decode(body)


def test_a_failed_snapshot_leaves_no_directory_answer_without_its_files(tmp_path):
    """Small files are stored in batches after their directory's tree: a snapshot
    that fails before the batch is stored must not have the stat cache answer the
    directory next time (its tree may have reached a published pack alone)."""
    src = tmp_path / "src"
    for d in "abcdef":
        for i in range(30):
            write(src / d / f"f{i:02d}.txt", f"{d} content {i} ".encode() * 20)
    bad = os.path.join(os.fsencode(src), b"z", b"bad-\xff.txt")
    os.makedirs(os.path.dirname(bad))
    with open(bad, "wb") as f:
        f.write(b"x")
    age(src)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    repo.odb.pack_size = 2048  # below what a config allows: every tree starts a new pack
    with pytest.raises(UnsafePath):
        repo.snapshot(src)
    os.unlink(bad)
    tree = repo.snapshot(src)
    dest = tmp_path / "out"
    repo.checkout(tree, dest)
    assert dir_state(dest) == dir_state(src)


# -- checkout of many small files: groups decoded once, directories opened from the destination down


def _many_dirs(root: Path) -> Path:
    """24 directories (3 levels) of text files, some with the same content in several places."""
    for top in range(3):
        for sub in range(8):
            for i in range(5):
                write(root / f"t{top}" / f"s{sub}" / f"f{i}.txt", f"{top}/{sub}/{i} ".encode() * (5 + i), executable=i == 4)
            write(root / f"t{top}" / f"s{sub}" / "same.txt", b"the same in every directory\n")
    return root


def test_a_checkout_keeps_a_bounded_number_of_directories_open(repo, tmp_path, monkeypatch):
    src = _many_dirs(tmp_path / "src")
    tree = repo.snapshot(src)
    monkeypatch.setattr("objstore.checkout._fd_budget", lambda: 4)  # far fewer than the 27 directories
    result = repo.checkout(tree, tmp_path / "out")
    assert dir_state(tmp_path / "out") == dir_state(src)
    assert result.files == 3 * 8 * 6
    if os.path.isdir("/proc/self/fd"):  # no directory of the checkout is left open
        targets = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                targets.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass  # the listing's own descriptor, closed by now
        assert not [t for t in targets if t.startswith(str(tmp_path / "out"))]
    assert repo.checkout(tree, tmp_path / "out").skipped == result.files  # every file remembered


def test_a_damaged_group_fails_the_checkout_and_no_file_holds_other_bytes(tmp_path):
    src = _many_dirs(tmp_path / "src")
    repo = Repository.init(tmp_path / "store", chunking=SMALL)  # format version 3: small files in groups
    tree = repo.snapshot(src)
    ids = {p: e.id for p, e in repo.walk(tree) if e.kind == "file"}
    members = {e.id for _, e in repo.walk(tree)} | {tree}  # trees share the groups too
    repo = damage(repo, ids["t1/s3/f2.txt"])
    dest = tmp_path / "out"
    with pytest.raises(CorruptObject) as info:
        repo.checkout(tree, dest)
    assert info.value.object_id in members
    for path in ids:
        placed = dest / path
        if placed.exists():
            assert placed.read_bytes() == (src / path).read_bytes()


def test_members_are_taken_by_group_each_once_and_verified(tmp_path):
    src = _many_dirs(tmp_path / "src")
    write(src / "big.bin", rand_bytes(3, 40_000))  # chunks of their own records, not grouped
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    tree = repo.snapshot(src)
    wanted = [bytes.fromhex(e.id) for _, e in repo.walk(tree) if e.kind in ("file", "dir")]
    chunk_ids = [bytes.fromhex(c[0]) for c in repo.get(next(e.id for p, e in repo.walk(tree) if p == "big.bin")).chunks]
    wanted += chunk_ids + wanted[:5]  # and some asked for twice
    got = [item for batch in repo.odb.iter_by_group(wanted) for item in batch]
    assert sorted(oid for oid, _ in got) == sorted(set(wanted))
    for oid, encoded in got:
        assert bytes(encoded) == bytes(repo.odb.get_encoded(oid))
        assert repo.algorithm.digest(bytes(encoded)) == oid


def test_a_file_that_cannot_be_read_leaves_the_others_read_and_no_descriptor_open(tmp_path):
    """A directory's small files are opened and read in bulk; one that vanished since the
    listing (or a directory in its place) is None and the rest are read all the same."""
    from objstore.snapshot import _READ_FLAGS, _read_all

    d = tmp_path / "d"
    for i in range(300):  # more than are opened at once
        write(d / f"f{i:03d}", f"content {i}".encode())
    (d / "sub").mkdir()
    names = [f"f{i:03d}" for i in range(300)]
    names[10:10] = ["gone"]
    names[200:200] = ["sub"]  # opens, but a read of a directory fails
    before = len(os.listdir("/proc/self/fd"))
    dfd = os.open(d, os.O_RDONLY)
    try:
        got = _read_all(dfd, names, _READ_FLAGS, [64] * len(names))
    finally:
        os.close(dfd)
    assert len(os.listdir("/proc/self/fd")) == before
    assert got == [None if n in ("gone", "sub") else f"content {int(n[1:])}".encode() for n in names]


@pytest.mark.parametrize("size, cut", [(5_000, 3_000), (900, 400), (5_000, 700)])
def test_a_file_that_shrank_since_it_was_listed_gets_the_size_of_what_was_stored(tmp_path, size, cut):
    """A tree entry's size is that of the bytes stored under its id, never the stale listed one
    (a checkout, a manifest and a directory's total all trust it)."""
    from objstore.snapshot import Snapshotter

    path = write(tmp_path / "src" / "f.bin", rand_bytes(21, size))
    listed = os.stat(path)
    os.truncate(path, cut)  # written to between the listing and the read
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    entry = Snapshotter(repo.odb, SMALL, repo.statcache).entry_for(str(path), "f.bin", listed)
    assert entry is not None and entry.size == cut
    assert repo.read_file(repo.make_tree([entry]), "f.bin") == path.read_bytes()


@pytest.mark.parametrize("how", ["directory", "listed file"])
def test_a_small_file_that_grew_since_it_was_stat_ed_is_stored_whole(tmp_path, monkeypatch, how):
    """Small files are read for as many bytes as their stat said, plus one: a file written
    to between the stat and the read is not cut at its old size; it takes the slow path
    and the snapshot holds all of its bytes (and the tree its size)."""
    src = tmp_path / "src"
    for i in range(20):
        write(src / f"f{i:02d}.txt", f"file {i}\n".encode())
    grown = src / "f07.txt"
    extra = b"appended after the stat\n" * 40
    real_lstat, real_stat = os.lstat, os.stat
    appended = []

    def stat_then_append(real):
        def call(path, *args, **kwargs):
            st = real(path, *args, **kwargs)
            if os.fspath(path).endswith("f07.txt") and not appended:
                appended.append(True)
                with open(grown, "ab") as f:
                    f.write(extra)
            return st

        return call

    monkeypatch.setattr(os, "lstat", stat_then_append(real_lstat))
    monkeypatch.setattr(os, "stat", stat_then_append(real_stat))
    repo = Repository.init(tmp_path / "store")
    files = {p.name: p for p in sorted(src.iterdir())}
    tree = repo.snapshot(src) if how == "directory" else repo.build_tree(files)
    monkeypatch.undo()
    assert appended, "the stat hook never ran"
    want = b"file 7\n" + extra
    assert grown.read_bytes() == want
    assert repo.read_file(tree, "f07.txt") == want
    assert {e.name: e.size for e in repo.get_tree(tree).entries}["f07.txt"] == len(want)
    out = tmp_path / "out"
    repo.checkout(tree, out)
    assert dir_state(out) == dir_state(src)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["directory", "listed files"])
def test_a_file_swapped_for_a_fifo_after_its_stat_does_not_block_the_snapshot(tmp_path, monkeypatch, how):
    """A path listed as a file and replaced by a FIFO (nobody writing to it) before it is
    opened: files are opened non-blocking, so the snapshot is not stuck on it. A directory's
    snapshot takes the path as what it now is, a FIFO, and skips it with a warning, as it
    skips one it lists; a file named on its own is refused with ``PathNotFound``."""
    from objstore.errors import PathNotFound

    src = tmp_path / "src"
    for i in range(20):
        write(src / f"f{i:02d}.txt", f"file {i}\n".encode())
    swapped = "f07.txt"
    target = src / swapped
    real_lstat, real_stat = os.lstat, os.stat
    swapped_in = []

    def stat_then_swap(real):
        def call(path, *args, **kwargs):
            st = real(path, *args, **kwargs)
            if os.fspath(path).endswith(swapped) and not swapped_in:
                swapped_in.append(True)
                os.unlink(target)
                os.mkfifo(target)
            return st

        return call

    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    files = {p.name: p for p in sorted(src.iterdir())}
    monkeypatch.setattr(os, "lstat", stat_then_swap(real_lstat))
    monkeypatch.setattr(os, "stat", stat_then_swap(real_stat))
    if how == "directory":
        with pytest.warns(UserWarning, match="not a file, directory or symlink"):
            tree = repo.snapshot(src)
        monkeypatch.undo()
        names = [e.name for e in repo.get_tree(tree).entries]
        assert names == sorted(n for n in files if n != swapped)
        assert repo.read_file(tree, "f03.txt") == b"file 3\n"
    else:
        with pytest.raises(PathNotFound, match=swapped), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small file's slow path warns before it refuses
            repo.build_tree(files)
        monkeypatch.undo()
    assert swapped_in, "the stat hook never ran"
    assert stat.S_ISFIFO(os.lstat(target).st_mode)


@pytest.mark.timeout(60)
def test_a_large_file_swapped_for_a_fifo_after_it_was_listed_does_not_block_the_snapshot(tmp_path):
    """The chunked path opens non-blocking too: in a directory's snapshot the path is taken as
    the FIFO it now is (skipped, with a warning); asked for as a file, ``PathNotFound``."""
    from objstore.errors import PathNotFound
    from objstore.snapshot import Snapshotter

    path = write(tmp_path / "src" / "big.bin", rand_bytes(5, 20_000))  # over SMALL.small_file
    listed = os.stat(path)
    os.unlink(path)
    os.mkfifo(path)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    snap = Snapshotter(repo.odb, SMALL, repo.statcache)
    with pytest.warns(UserWarning, match="not a file, directory or symlink"):
        assert snap.entry_for(str(path), "big.bin", listed) is None
    with pytest.raises(PathNotFound, match="no longer a regular file"):
        snap.file_entry(str(path), listed)
