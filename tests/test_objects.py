"""Canonical encodings: round trips, one encoding per content, non-canonical bytes rejected."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from objstore.errors import FormatError, UnsafePath
from objstore.ids import ALGORITHMS
from objstore.objects import Blob, ChunkedBlob, Commit, Tree, TreeEntry, decode

DS = 16  # xxh3-128 digest size
XXH = ALGORITHMS["xxh3-128"]

# -- strategies ---------------------------------------------------------------

ids16 = st.binary(min_size=DS, max_size=DS).map(bytes.hex)

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    min_size=1,
    max_size=20,
).filter(lambda n: n not in (".", ".."))

# Text that msgpack can carry (valid UTF-8: no lone surrogates).
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def entries(draw, name=names):
    n = draw(name)
    kind = draw(st.sampled_from(["file", "dir", "symlink", "reference"]))
    if kind == "file":
        return TreeEntry(n, "file", draw(ids16), draw(st.integers(0, 2**63)), draw(st.sampled_from([0o644, 0o755])))
    if kind == "dir":
        return TreeEntry(n, "dir", draw(ids16), draw(st.integers(0, 2**63)))
    if kind == "symlink":
        return TreeEntry(n, "symlink", target=draw(texts))
    return TreeEntry(
        n,
        "reference",
        size=draw(st.integers(-1, 2**63)),
        target=draw(texts),
        digest=draw(st.none() | texts),
    )


entry_lists = st.lists(entries(), max_size=12, unique_by=lambda e: e.name)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.binary(max_size=20)
)
metadata_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
metadata = st.dictionaries(texts, metadata_values, max_size=6)


def reorder(value, rng: random.Random):
    """The same value with every map's keys inserted in a shuffled order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: reorder(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


commits = st.builds(
    Commit,
    tree=ids16,
    parents=st.lists(ids16, max_size=3).map(tuple),
    time=st.floats(allow_nan=False, allow_infinity=False),
    author=st.none() | texts,
    message=texts,
    metadata=metadata,
)

# -- round trips --------------------------------------------------------------


@given(st.binary(max_size=2000))
def test_blob_round_trip(data):
    b = Blob(data)
    enc = b.encode()
    assert decode(enc, DS) == b
    assert Blob(bytes(data)).encode() == enc


@given(st.lists(st.tuples(ids16, st.integers(1, 2**40)), max_size=30).map(tuple))
def test_chunked_blob_round_trip(chunks):
    c = ChunkedBlob(chunks)
    enc = c.encode()
    back = decode(enc, DS)
    assert back == c
    assert back.size == sum(s for _, s in chunks)
    assert back.encode() == enc


@given(entry_lists, st.randoms(use_true_random=False))
def test_tree_round_trip_and_order_independence(ents, rng):
    tree = Tree.from_entries(ents)
    enc = tree.encode()
    back = decode(enc, DS)
    assert back == tree
    # Entries are kept in UTF-8 byte order of their names.
    keys = [e.name.encode() for e in back.entries]
    assert keys == sorted(keys)
    # Any input order gives the same bytes, hence the same id.
    shuffled = list(ents)
    rng.shuffle(shuffled)
    assert Tree.from_entries(shuffled).encode() == enc
    assert XXH.digest(Tree.from_entries(shuffled).encode()) == XXH.digest(enc)


def test_tree_with_every_kind_and_unicode_names():
    oid = "ab" * DS
    ents = [
        TreeEntry("naïve-日本.txt", "file", oid, 10, 0o644),
        TreeEntry("run.sh", "file", oid, 3, 0o755),
        TreeEntry("sub", "dir", oid, 99),
        TreeEntry("link", "symlink", target="../elsewhere/ß"),
        TreeEntry("ext", "reference", size=-1, target="s3://bucket/key", digest=None),
        TreeEntry("ext2", "reference", size=5, target="https://x/y", digest="sha256:00ff"),
        TreeEntry("😀", "file", oid, 0, 0o644),
    ]
    tree = Tree.from_entries(ents)
    back = decode(tree.encode(), DS)
    assert back == tree
    assert back["run.sh"].is_executable and not back["naïve-日本.txt"].is_executable
    assert back["link"].target == "../elsewhere/ß"
    assert back["ext"].size == -1 and back["ext2"].digest == "sha256:00ff"
    assert back.size == 10 + 3 + 99 + 5 + 0


@given(commits, st.randoms(use_true_random=False))
def test_commit_round_trip_and_key_order_independence(c, rng):
    enc = c.encode()
    back = decode(enc, DS)
    assert back == c
    same = Commit(c.tree, c.parents, c.time, c.author, c.message, reorder(dict(c.metadata), rng))
    assert same.encode() == enc
    assert XXH.digest(same.encode()) == XXH.digest(enc)


def test_commit_nested_metadata_any_insertion_order():
    a = Commit("00" * DS, (), 1.5, "me", "msg", {"z": 1, "a": {"y": [1, {"q": 2, "b": 3}], "c": None}})
    b = Commit("00" * DS, (), 1.5, "me", "msg", {"a": {"c": None, "y": [1, {"b": 3, "q": 2}]}, "z": 1})
    assert a.encode() == b.encode()
    assert decode(a.encode(), DS) == b


def test_different_content_gives_different_encoding():
    assert Blob(b"a").encode() != Blob(b"b").encode()
    t1 = Tree.from_entries([TreeEntry("a", "file", "00" * DS, 1, 0o644)])
    t2 = Tree.from_entries([TreeEntry("a", "file", "00" * DS, 1, 0o755)])
    assert t1.encode() != t2.encode()
    c1 = Commit("00" * DS, metadata={"k": 1})
    c2 = Commit("00" * DS, metadata={"k": 1.0})
    assert c1.encode() != c2.encode()


# -- construction-time validation ---------------------------------------------------------


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "nul\0", "/"])
def test_tree_entry_rejects_unsafe_names(bad):
    with pytest.raises(UnsafePath):
        TreeEntry(bad, "symlink", target="x")


def test_tree_from_entries_rejects_duplicates():
    e = TreeEntry("same", "symlink", target="x")
    with pytest.raises(UnsafePath):
        Tree.from_entries([e, TreeEntry("same", "file", "00" * DS, 1)])


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan"), float("inf"), 2**64, {1: "int key"}])
def test_commit_refuses_unstorable_metadata(bad):
    with pytest.raises(TypeError):
        Commit("00" * DS, metadata={"k": bad}).encode()


# -- non-canonical encodings are rejected ---------------------------------------------------


def _packed(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _file(name: str) -> list:
    return [name, 0, b"\x01" * DS, 5, 0o644]


def test_tree_with_unsorted_entries_is_rejected():
    good = bytes([3]) + _packed([_file("a"), _file("b")])
    assert decode(good, DS) == Tree.from_entries(
        [TreeEntry("a", "file", "01" * DS, 5), TreeEntry("b", "file", "01" * DS, 5)]
    )
    with pytest.raises(FormatError):
        decode(bytes([3]) + _packed([_file("b"), _file("a")]), DS)


def test_tree_sorted_by_utf8_bytes_not_by_python_str_order_of_other_encodings():
    # U+FF5E sorts before U+1F600 in UTF-8 (and code points) - the canonical order.
    good = bytes([3]) + _packed([_file("\uff5e"), _file("😀")])
    decode(good, DS)
    with pytest.raises(FormatError):
        decode(bytes([3]) + _packed([_file("😀"), _file("\uff5e")]), DS)


def test_tree_with_duplicate_names_is_rejected():
    with pytest.raises(FormatError):
        decode(bytes([3]) + _packed([_file("a"), _file("a")]), DS)


@pytest.mark.parametrize(
    "entry",
    [
        ["..", 0, b"\x01" * DS, 5, 0o644],
        ["a/b", 0, b"\x01" * DS, 5, 0o644],
        ["", 2, "target"],
        ["x", 0, b"\x01" * DS, 5, 0o600],  # mode other than 644/755
        ["x", 0, b"\x01" * (DS - 1), 5, 0o644],  # short id
        ["x", 0, b"\x01" * DS, -5, 0o644],  # negative size
        ["x", 9, "what"],  # unknown kind
        ["x", 2, "t", "extra"],  # wrong layout
    ],
)
def test_tree_with_invalid_entry_is_rejected(entry):
    with pytest.raises(FormatError):
        decode(bytes([3]) + _packed([entry]), DS)


def test_commit_metadata_with_keys_out_of_order_is_rejected():
    body = [b"\x00" * DS, [], 1.0, None, "m", {"b": 1, "a": 2}]
    with pytest.raises(FormatError):
        decode(bytes([4]) + _packed(body), DS)
    # Keys in order: accepted.
    body[5] = {"a": 2, "b": 1}
    assert decode(bytes([4]) + _packed(body), DS).metadata == {"a": 2, "b": 1}


def test_commit_nested_map_out_of_order_is_rejected():
    body = [b"\x00" * DS, [], 1.0, None, "m", {"a": {"y": 1, "x": 2}}]
    with pytest.raises(FormatError):
        decode(bytes([4]) + _packed(body), DS)


def test_non_shortest_integer_and_float32_are_rejected():
    ok = Tree.from_entries([TreeEntry("a", "file", "01" * DS, 5)]).encode()
    # The size 5 as a uint32 (0xce) instead of a positive fixint.
    long_int = ok.replace(b"\x05\xcd\x01\xa4", b"\xce\x00\x00\x00\x05\xcd\x01\xa4")
    assert long_int != ok
    with pytest.raises(FormatError):
        decode(long_int, DS)
    # A commit time packed as float32 instead of float64.
    c = Commit("00" * DS, (), 2.5, None, "", {}).encode()
    f32 = c.replace(msgpack.packb(2.5), msgpack.packb(2.5, use_single_float=True))
    assert f32 != c
    with pytest.raises(FormatError):
        decode(f32, DS)


def test_trailing_bytes_and_wrong_shapes_are_rejected():
    c = Commit("00" * DS).encode()
    for bad in [
        c + b"\x00",
        bytes([4]) + _packed([b"\x00" * DS, [], 1.0, None, "m"]),  # 5 fields
        bytes([4]) + _packed([b"\x00" * DS, [], 1, None, "m", {}]),  # int time
        bytes([4]) + _packed([b"\x00" * (DS + 1), [], 1.0, None, "m", {}]),  # long tree id
        bytes([2]) + _packed([10, b"\x01" * DS, [9]]),  # sizes do not add up
        bytes([2]) + _packed([0, b"\x01" * DS, [0]]),  # zero-size chunk
        bytes([2]) + _packed([5, b"\x01" * (DS + 1), [5]]),  # id list length
        bytes([9]) + b"whatever",  # unknown tag
        b"",
    ]:
        with pytest.raises(FormatError):
            decode(bad, DS)
