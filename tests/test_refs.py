"""Refs: set/get/list/history/delete, compare-and-set, validation, and concurrent writers."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import pytest
from helpers import PROJECT_ROOT, linear_commits, listing, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import ABSENT, Repository
from objstore.errors import InvalidRefName, ObjectNotFound, RefConflict, RefNotFound


@pytest.fixture
def commits(repo, tmp_path):
    return linear_commits(repo, tmp_path, 4)


def test_set_get_list_history_delete(repo, commits):
    c0, c1, c2, _ = commits
    e1 = repo.refs.set("main", c0, message="first", who="alice@host")
    assert (e1.seq, e1.old, e1.new, e1.message, e1.who) == (1, None, c0, "first", "alice@host")
    assert repo.refs.get("main") == c0
    repo.refs.set("main", c1[:10])  # prefixes resolve to full ids
    assert repo.refs.get("main") == c1
    repo.refs.set("runs/a/latest", c2)
    repo.refs.set("runs/b", "main")  # a ref name resolves to its target
    assert repo.refs.get("runs/b") == c1
    assert repo.refs.list() == {"main": c1, "runs/a/latest": c2, "runs/b": c1}
    assert repo.refs.list("runs/") == {"runs/a/latest": c2, "runs/b": c1}
    assert repo.refs.list("nothing") == {}
    assert repo.resolve("runs/a/latest") == c2

    d = repo.refs.delete("main", message="bye")
    assert d.new is None and d.old == c1 and d.seq == 3
    with pytest.raises(RefNotFound):
        repo.refs.get("main")
    assert not repo.refs.exists("main")
    assert "main" not in repo.refs.list()
    assert "main" in repo.refs.names()
    hist = repo.refs.history("main")
    assert [(e.seq, e.old, e.new) for e in hist] == [(1, None, c0), (2, c0, c1), (3, c1, None)]
    assert hist[0].time <= hist[1].time <= hist[2].time
    with pytest.raises(RefNotFound):
        repo.refs.delete("main")
    # A deleted ref can be recreated; history keeps growing.
    repo.refs.set("main", c2)
    assert [e.new for e in repo.refs.history("main")] == [c0, c1, None, c2]
    assert repo.refs.all_targets() >= {c0, c1, c2}


def test_refs_persist_across_open(repo, commits, tmp_path):
    repo.refs.set("keep", commits[1])
    again = Repository.open(tmp_path / "repo")
    assert again.refs.get("keep") == commits[1]
    assert again.get_commit("keep").message == "c1"


def test_compare_and_set(repo, commits):
    c0, c1, c2, c3 = commits
    repo.refs.set("main", c0, expect=ABSENT)
    with pytest.raises(RefConflict) as info:
        repo.refs.set("main", c1, expect=ABSENT)
    assert info.value.actual == c0
    repo.refs.set("main", c1, expect=c0)
    with pytest.raises(RefConflict) as info:
        repo.refs.set("main", c2, expect=c0)  # it moved to c1
    assert (info.value.expected, info.value.actual) == (c0, c1)
    assert repo.refs.get("main") == c1
    repo.refs.set("main", c2, expect=c1[:12])  # a prefix works for expect
    with pytest.raises(RefConflict):
        repo.refs.delete("main", expect=c1)
    repo.refs.delete("main", expect=c2)
    with pytest.raises(RefConflict):
        repo.refs.set("main", c3, expect=c2)  # deleted: no longer c2
    repo.refs.set("main", c3, expect=ABSENT)  # deleted counts as absent
    assert [e.new for e in repo.refs.history("main")] == [c0, c1, c2, None, c3]


def test_set_to_unknown_object_fails_and_stores_nothing(repo, commits, tmp_path):
    before = listing(tmp_path / "repo")
    with pytest.raises(ObjectNotFound):
        repo.refs.set("main", "0" * 32)
    with pytest.raises(ObjectNotFound):
        repo.refs.set("main", "f" * 31 + "e")
    with pytest.raises(RefNotFound):
        repo.refs.set("main", "no-such-ref")
    assert listing(tmp_path / "repo") == before
    with pytest.raises(RefNotFound):
        repo.refs.get("main")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/",
        "/lead",
        "trail/",
        "a//b",
        ".",
        "..",
        "a/../b",
        "a/./b",
        "sp ace",
        "tab\t",
        "new\nline",
        "ünï",
        "a:b",
        "a*",
        "a?b",
        "x\\y",
        "@{u}",
    ],
)
def test_invalid_ref_names(repo, commits, tmp_path, name):
    before = listing(tmp_path / "repo")
    with pytest.raises(InvalidRefName):
        repo.refs.set(name, commits[0])
    with pytest.raises(InvalidRefName):
        repo.refs.get(name)
    with pytest.raises(InvalidRefName):
        repo.refs.history(name)
    assert listing(tmp_path / "repo") == before


def test_valid_unusual_ref_names(repo, commits):
    for name in ["a.b", "v1.0+build", "x=y,z~w", "deep/er/and/deeper", "-dash", "UPPER"]:
        repo.refs.set(name, commits[0])
        assert repo.refs.get(name) == commits[0]


def test_threads_racing_to_create_exactly_one_wins(repo, commits):
    for trial in range(5):
        name = f"race-{trial}"
        results: list[object] = []
        barrier = threading.Barrier(8)

        def worker(i: int, name: str = name, barrier: threading.Barrier = barrier, results: list = results) -> None:
            barrier.wait()
            try:
                repo.refs.set(name, commits[i % 4], expect=ABSENT, message=f"t{i}")
                results.append(i)
            except RefConflict:
                results.append("conflict")
            except Exception as exc:
                results.append(repr(exc))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if isinstance(r, int)]
        assert len(winners) == 1 and results.count("conflict") == 7, results
        (entry,) = repo.refs.history(name)
        assert entry.message == f"t{winners[0]}"


# -- real processes -----------------------------------------------------------------------

_WRITER = r"""
import os, sys, time
from objstore import Repository
repo_path, go, ident, n, mode = sys.argv[1:6]
targets = sys.argv[6:]
repo = Repository.open(repo_path)
while not os.path.exists(go):
    time.sleep(0.001)
done = 0
if mode == "set":
    for j in range(int(n)):
        repo.refs.set("shared", targets[j % len(targets)], message=f"{ident}:{j}")
        done += 1
else:  # compare-and-set increments: retry on conflict
    from objstore.errors import RefConflict
    from objstore import ABSENT
    conflicts = 0
    while done < int(n):
        head = repo.refs.head("shared")
        expect = head.new if head is not None and head.new else ABSENT
        try:
            repo.refs.set("shared", targets[done % len(targets)], expect=expect, message=f"{ident}:{done}")
            done += 1
        except RefConflict:
            conflicts += 1
print(done, flush=True)
"""


def _run_writers(repo_path, tmp_path, targets, procs: int, n: int, mode: str) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(repo_path), str(go), f"p{i}", str(n), mode, *targets],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(procs)
    ]
    time.sleep(0.3)  # let them start and wait at the gate
    go.write_bytes(b"")
    for c in children:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, err.decode()
        assert out.decode().strip() == str(n)


def _check_history(repo, procs: int, n: int) -> None:
    hist = repo.refs.history("shared")
    assert len(hist) == procs * n
    assert [e.seq for e in hist] == list(range(1, procs * n + 1))
    assert sorted(e.message for e in hist) == sorted(f"p{i}:{j}" for i in range(procs) for j in range(n))
    assert hist[0].old is None
    for prev, cur in itertools.pairwise(hist):
        assert cur.old == prev.new  # every update saw the one before it: none lost or reordered
    # Each writer's own updates appear in the order it made them.
    for i in range(procs):
        mine = [int(e.message.split(":")[1]) for e in hist if e.message.startswith(f"p{i}:")]
        assert mine == list(range(n))
    assert repo.refs.get("shared") == hist[-1].new


@pytest.mark.parametrize("procs", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_concurrent_processes_setting_one_ref_lose_nothing(repo, commits, tmp_path, procs):
    n = 40 if procs == 2 else 25
    _run_writers(tmp_path / "repo", tmp_path, commits, procs, n, "set")
    _check_history(Repository.open(tmp_path / "repo"), procs, n)


@pytest.mark.slow
def test_concurrent_compare_and_set_processes(repo, commits, tmp_path):
    procs, n = 6, 15
    _run_writers(tmp_path / "repo", tmp_path, commits, procs, n, "cas")
    _check_history(Repository.open(tmp_path / "repo"), procs, n)


def test_nested_ref_names_coexist(repo, commits):
    repo.refs.set("a", commits[0])
    repo.refs.set("a/b", commits[1])
    repo.refs.set("a/b/c", commits[2])
    assert repo.refs.get("a") == commits[0]
    assert repo.refs.get("a/b") == commits[1]
    assert repo.refs.list("a/") == {"a/b": commits[1], "a/b/c": commits[2]}
    repo.refs.delete("a/b")
    assert repo.refs.list("a") == {"a": commits[0], "a/b/c": commits[2]}
    assert len(repo.refs.history("a")) == 1


def test_forget_releases_ids_and_keeps_every_entry(tmp_path) -> None:
    from objstore import Repository

    repo = Repository.init(tmp_path / "r")
    a, b, c = (repo.store_bytes(x) for x in (b"a", b"b", b"c"))
    for target in (a, b, a, c):
        repo.refs.set("x", target)
    assert repo.refs.forget("x", {a}) == 2
    history = repo.refs.history("x")
    assert [e.new for e in history] == [a, b, a, c, c]  # nothing rewritten; one release entry appended
    assert history[-1].released == (a,) and not history[-1].moved
    assert repo.refs.forget("x", {c}) == 0  # the current value is never released
    assert repo.refs.get("x") == c
    assert repo.refs.all_targets() == {b, c}


def test_release_lets_gc_free_an_id_while_history_still_names_it(tmp_path) -> None:
    from datetime import timedelta

    from objstore import Repository

    repo = Repository.init(tmp_path / "r")
    a, b = repo.store_bytes(b"first value" * 100), repo.store_bytes(b"second value" * 100)
    repo.refs.set("x", a, message="one")
    repo.refs.set("x", b, message="two")
    with pytest.raises(ValueError, match="move or delete"):
        repo.refs.release("x", [b])
    entry = repo.refs.release("x", [a], message="drop a", meta={"why": "deleted", "labels": {a: "v0"}})
    assert entry is not None and entry.released == (a,) and entry.old == entry.new == b
    assert repo.refs.release("x", [a]) is None  # already released: nothing appended
    assert repo.refs.released("x") == {a}
    repo.gc(grace=timedelta(0))
    assert not repo.odb.has(a) and repo.odb.has(b)
    history = repo.refs.history("x")
    assert [(e.old, e.new, e.message) for e in history] == [(None, a, "one"), (a, b, "two"), (b, b, "drop a")]
    assert history[-1].meta == {"why": "deleted", "labels": {a: "v0"}}
    # setting a released value again makes it a root again
    c = repo.store_bytes(b"first value" * 100)
    assert c == a
    repo.refs.set("x", a)
    assert a in repo.refs.all_targets()


def test_a_move_can_release_in_the_same_entry(tmp_path) -> None:
    from objstore import Repository

    repo = Repository.init(tmp_path / "r")
    a, b = repo.store_bytes(b"a"), repo.store_bytes(b"b")
    repo.refs.set("x", a)
    e = repo.refs.delete("x", released=[a], message="gone")
    assert e.new is None and e.released == (a,)
    assert repo.refs.all_targets() == set()
    repo.refs.set("y", a)
    with pytest.raises(ValueError, match="cannot release"):
        repo.refs.set("y", b, released=[b])
    assert repo.refs.set("y", b, released=[a]).released == (a,)
    assert repo.refs.roots("y") == {b}


def test_entries_of_both_layouts_decode(tmp_path) -> None:
    import msgpack

    from objstore.errors import FormatError
    from objstore.refs import RefLogEntry

    a = "ab" * 16
    v1 = msgpack.packb([1, "x", 1, None, a, 1.5, "me@host", "m"], use_bin_type=True)
    assert RefLogEntry.decode(v1, "x/@1") == RefLogEntry("x", 1, None, a, 1.5, "me@host", "m")
    plain = RefLogEntry("x", 2, a, None, 2.0, "me", "gone")
    assert msgpack.unpackb(plain.encode())[0] == 1  # nothing new to say: the old layout, for old readers
    rich = RefLogEntry("x", 3, None, None, 3.0, "me", "", (a,), {"k": [1, 2]})
    assert msgpack.unpackb(rich.encode())[0] == 2
    assert RefLogEntry.decode(rich.encode(), "x/@3") == rich
    future = msgpack.packb([3, "x", 1, None, a, 1.5, "me", "m", [], {}, "more"], use_bin_type=True)
    with pytest.raises(FormatError, match="upgrade objstore"):
        RefLogEntry.decode(future, "x/@1")
    bad = msgpack.packb([2, "x", 1, None, a, 1.5, "me", "m", ["not hex"], {}], use_bin_type=True)
    with pytest.raises(FormatError, match="wrong shape"):
        RefLogEntry.decode(bad, "x/@1")
    with pytest.raises(TypeError, match="meta cannot be stored"):
        RefLogEntry("x", 4, None, a, 4.0, "me", "", (), {"k": object()}).encode()


_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@settings(max_examples=50)
@given(
    old=st.none() | _ids,
    new=st.none() | _ids,
    released=st.lists(_ids, max_size=4).map(lambda xs: tuple(sorted(set(xs)))),
    meta=st.dictionaries(st.text(max_size=8), st.none() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3), max_size=4),
    message=st.text(max_size=20),
)
def test_ref_log_entries_round_trip(old: str | None, new: str | None, released: tuple[str, ...], meta: dict, message: str) -> None:
    from objstore.refs import RefLogEntry

    e = RefLogEntry("a/b", 7, old, new, 12.5, "who@host", message, released, meta)
    assert RefLogEntry.decode(e.encode(), "a/b/@7") == e


def test_listing_a_prefix_sees_exactly_the_refs_under_it(repo, commits):
    for name in ("models/bert/latest", "models/bert/prod", "models/bertha/latest", "models/gpt", "data/x", "models"):
        repo.refs.set(name, commits[0])
    repo.refs.set("models/bert/latest", commits[1])  # a longer log must not show up twice
    assert repo.refs.list("models/bert/") == {"models/bert/latest": commits[1], "models/bert/prod": commits[0]}
    assert sorted(repo.refs.list("models/bert")) == ["models/bert/latest", "models/bert/prod", "models/bertha/latest"]
    assert sorted(repo.refs.list("models/")) == ["models/bert/latest", "models/bert/prod", "models/bertha/latest", "models/gpt"]
    assert repo.refs.names("nothing/here/") == [] and repo.refs.list("mo") == repo.refs.list("models")
    assert len(repo.refs.list()) == 6


def test_added_bytes_counts_each_stored_object_once(repo, tmp_path):
    d = tmp_path / "v"
    write(d / "big.bin", bytes(range(256)) * 4096)  # 1 MiB: several chunks
    write(d / "small.txt", b"one")
    first = repo.commit(repo.snapshot(d), message="v0")
    write(d / "small.txt", b"two")
    second = repo.commit(repo.snapshot(d), [first], message="v1")
    third = repo.commit(repo.tree_of(second), [second], message="v2: same tree")
    a, b, c = repo.added_bytes([first, second, third])
    assert a > b > c > 0  # v1 adds a small blob, a tree and its commit; v2 only its commit
    assert b < 1000
    assert repo.added_bytes([second])[0] > a / 2  # alone, v1 pays for the shared chunks too
    assert sum(repo.added_bytes([first, second, third])) == sum(repo.added_bytes([third, second, first]))
