"""Group records (format version 3): small objects compressed together in one zstd frame."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
import zstandard
from helpers import SMALL, damage, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import Blob, Repository
from objstore.codec import GROUPED, RAW, ZSTD
from objstore.config import CONFIG_PATH
from objstore.errors import CorruptObject, FormatError
from objstore.limits import MAX_GROUP_MEMBER, MAX_GROUP_MEMBERS, MAX_GROUP_RAW, check_entry
from objstore.packs import IndexEntry, decode_group, encode_group

DATA = Path(__file__).parent / "data"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau"]


def text_files(root: Path, n: int, seed: int = 1) -> Path:
    """``n`` files of 250..1000 bytes of word text in a few folders (like the many_files benchmark)."""
    import random

    rng = random.Random(seed)
    for i in range(n):
        size = rng.randint(250, 1000)
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(WORDS))
        write(root / f"d{i % 7}" / f"f{i:04d}.txt", (" ".join(words) + f" {i}\n").encode())
    return root


def entries(repo: Repository) -> list[tuple[bytes, IndexEntry]]:
    return [item for name in repo.odb.pack_names for item in repo.odb.index(name).items()]


def pack_versions(path: Path) -> set[int]:
    return {struct.unpack_from("<H", p.read_bytes(), 4)[0] for p in (path / "packs").glob("*.pack")}


def listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_new_repository_groups_small_objects_and_reads_them_back(tmp_path: Path) -> None:
    src = text_files(tmp_path / "src", 600)
    repo = Repository.init(tmp_path / "repo")
    tree = repo.snapshot(src)
    repo.refs.set("main", repo.commit(tree))
    assert json.loads((tmp_path / "repo" / CONFIG_PATH).read_text())["version"] == 3
    assert pack_versions(tmp_path / "repo") == {2}
    items = entries(repo)
    assert {e.codec for _, e in items} == {GROUPED}  # files, trees and the commit
    groups = {(e.offset, e.stored_length) for _, e in items}
    assert 2 <= len(groups) < len(items) / 50  # ~128 KiB of members per group
    repo.close()

    again = Repository.open(tmp_path / "repo")
    out = tmp_path / "out"
    again.checkout("main", out)
    assert listing(out) == listing(src)
    assert again.read_file("main", "d3/f0010.txt") == (src / "d3" / "f0010.txt").read_bytes()
    assert again.fsck().ok


def test_groups_make_text_files_compress_as_their_content_allows(tmp_path: Path) -> None:
    src = text_files(tmp_path / "src", 1500)
    raw = sum(len(b) for b in listing(src).values())
    sizes = {}
    for version in (2, 3):
        path = tmp_path / f"v{version}"
        with Repository.init(path, version=version) as repo:
            repo.refs.set("main", repo.commit(repo.snapshot(src)))
        sizes[version] = sum(p.stat().st_size for p in (path / "packs").iterdir())
    # One frame per file barely shrinks 0.25-1 KiB of text; a frame per ~128 KiB does.
    assert sizes[3] < 0.7 * sizes[2]
    assert sizes[3] < 0.4 * raw


def test_objects_of_the_open_group_are_readable_before_it_is_sealed(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    blob = repo.odb.put(Blob(b"pending bytes"))
    assert repo.odb.has(blob)
    assert repo.odb.get(blob) == Blob(b"pending bytes")
    assert repo.odb.resolve_prefix(blob[:10]) == blob
    many = [repo.odb.put(Blob(rand_bytes(i, 4000))) for i in range(80)]  # seals a group or two
    assert all(repo.odb.get(b) == Blob(rand_bytes(i, 4000)) for i, b in enumerate(many))
    repo.flush()
    assert {e.codec for _, e in entries(repo)} == {GROUPED}
    assert repo.odb.get(blob) == Blob(b"pending bytes")
    repo.close()


def test_large_objects_keep_records_of_their_own(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "small.txt", b"tiny text\n" * 10)
    write(src / "weights.bin", rand_bytes(3, 200_000))  # one 200 KB blob: over the member size
    with Repository.init(tmp_path / "repo") as repo:
        tree = repo.snapshot(src)
        by_id = dict(entries(repo))
        ids = {p: e.id for p, e in repo.walk(tree)}
        assert by_id[bytes.fromhex(ids["small.txt"])].codec == GROUPED
        assert by_id[bytes.fromhex(ids["weights.bin"])].codec == RAW
        assert repo.read_file(tree, "weights.bin") == rand_bytes(3, 200_000)


def test_a_format_2_repository_from_an_older_objstore_is_read_and_written_as_it_is(tmp_path: Path) -> None:
    """``tests/data/format2-repo`` was written by objstore before groups existed (format version 2)."""
    expected = json.loads((DATA / "format2-repo.json").read_text())
    path = tmp_path / "old"
    shutil.copytree(DATA / "format2-repo", path)
    repo = Repository.open(path)
    assert repo.resolve("main") == expected["commit"]
    out = tmp_path / "out"
    repo.checkout("main", out)
    assert {k: hashlib.sha256(v).hexdigest() for k, v in listing(out).items()} == expected["files"]
    assert repo.fsck().ok

    # Written to by this objstore, it stays version 2: no group records, version 1 packs.
    text_files(out / "more", 200)
    repo.refs.set("main", repo.commit(repo.snapshot(out), parents=[expected["commit"]]))
    repo.repack()
    repo.close()
    assert json.loads((path / CONFIG_PATH).read_text())["version"] == 2
    assert pack_versions(path) == {1}
    again = Repository.open(path)
    assert {e.codec for _, e in entries(again)} <= {RAW, ZSTD}
    assert listing(out) == {k: v for k, v in _checkout(again, "main", tmp_path / "out2").items()}
    assert again.fsck().ok


def _checkout(repo: Repository, ref: str, dest: Path) -> dict[str, bytes]:
    repo.checkout(ref, dest)
    return listing(dest)


@pytest.mark.parametrize(("src_version", "dst_version"), [(3, 3), (2, 3), (3, 2)])
def test_push_and_fetch_over_fsspec_leave_the_receiver_in_its_own_format(tmp_path: Path, src_version: int, dst_version: int) -> None:
    src = text_files(tmp_path / "src", 400)
    a = Repository.init(tmp_path / "a", version=src_version)
    a.refs.set("main", a.commit(a.snapshot(src)))
    remote = tmp_path / "remote"
    Repository.init(remote, version=dst_version).close()
    pushed = a.push(f"file://{remote}")
    assert pushed.objects > 400
    r = Repository.open(remote)
    codecs = {e.codec for _, e in entries(r)}
    assert (GROUPED in codecs) == (dst_version == 3)
    assert r.fsck().ok
    r.close()

    b = Repository.init(tmp_path / "b")  # version 3
    fetched = b.fetch(f"file://{remote}")
    assert fetched.objects == pushed.objects
    assert {e.codec for _, e in entries(b)} == {GROUPED}
    assert _checkout(b, "main", tmp_path / "out") == listing(src)
    assert b.fsck().ok


def test_repack_and_gc_regroup_the_members_they_keep(tmp_path: Path) -> None:
    from datetime import timedelta

    src = text_files(tmp_path / "src", 300)
    repo = Repository.init(tmp_path / "repo")
    keep = repo.commit(repo.snapshot(src))
    repo.refs.set("keep", keep)
    text_files(tmp_path / "other", 300, seed=2)
    drop = repo.commit(repo.snapshot(tmp_path / "other"))
    repo.refs.set("drop", drop)
    assert repo.repack().packs_after == 1
    repo.refs.delete("drop", released=[drop])
    before = len(entries(repo))
    result = repo.gc(grace=timedelta(0))
    assert result.objects_removed > 250
    assert result.bytes_freed > 0
    items = entries(repo)
    assert len(items) == before - result.objects_removed
    assert {e.codec for _, e in items} == {GROUPED}
    assert _checkout(repo, "keep", tmp_path / "out") == listing(src)
    assert repo.fsck().ok
    repo.close()


@given(st.floats(0, 1))
@settings(max_examples=30, deadline=None)
def test_any_flipped_byte_of_a_group_is_detected(tmp_path_factory: pytest.TempPathFactory, where: float) -> None:
    """Damage anywhere in a group record fails a read of at least one member (and fsck);
    no read ever returns other bytes than the ones stored."""
    tmp = tmp_path_factory.mktemp("gflip")
    src = tmp / "src"
    for i in range(20):
        write(src / f"f{i}.txt", f"the text of file {i}\n".encode() * (i + 3))
    repo = Repository.init(tmp / "repo", chunking=SMALL)
    tree = repo.snapshot(src)
    ids = {p: e.id for p, e in repo.walk(tree)}
    honest = {oid: bytes(repo.odb.get_encoded(oid)) for oid in repo.odb.iter_ids()}
    repo = damage(repo, ids["f0.txt"], where)
    refused = []
    for oid, good in honest.items():
        try:
            assert bytes(repo.odb.get_encoded(oid)) == good
        except CorruptObject as exc:
            assert exc.object_id == oid
            refused.append(oid)
    assert refused
    assert not repo.fsck().ok
    repo.close()


# -- hostile group records ----------------------------------------------------------

DS = 16


def _member(data: bytes) -> tuple[bytes, bytes]:
    import xxhash

    encoded = b"\x01" + data
    return xxhash.xxh3_128_digest(encoded), encoded


def _table(lengths: list[int], count: int | None = None) -> bytes:
    return struct.pack("<I", len(lengths) if count is None else count) + struct.pack(f"<{len(lengths)}I", *lengths)


def _frame(data: bytes, *, content_size: bool = True, checksum: bool = True) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=content_size, write_checksum=checksum).compress(data)


def _read(tmp_path: Path, oid: bytes, stored: bytes, raw_length: int, tag: int = 1) -> bytes | memoryview:
    with Repository.init(tmp_path / "repo") as repo:
        entry = IndexEntry(100, len(stored), raw_length, tag, GROUPED)
        return bytes(repo.odb.decode_verified(oid, entry, stored, "packs/hostile.pack"))


def test_a_group_round_trips(tmp_path: Path) -> None:
    members = [_member(b"one"), _member(b"two two"), _member(b"three " * 50)]
    stored, raw = encode_group([enc for _, enc in members], 3)
    assert raw == sum(len(enc) for _, enc in members)
    import xxhash

    group = decode_group(stored, xxhash.xxh3_128_digest)
    for oid, enc in members:
        assert group.member(oid) == enc
        assert _read(tmp_path / oid.hex(), oid, stored, len(enc)) == enc


def _bomb(table: bytes, claim: int) -> bytes:
    """A table, then a well-formed zstd frame header claiming ``claim`` bytes of content and a few bytes."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE4]) + claim.to_bytes(8, "little")  # single segment, checksum, 8-byte size
    return table + header + b"\x01\x00\x00" + b"\0" * 8


def _hostile_cases() -> dict[str, tuple[bytes, bytes, int, int]]:
    """name -> (id read, stored group, index raw length, index tag)."""
    (a, ea), (_b, eb) = _member(b"first member"), _member(b"second member")
    body = ea + eb
    ok = _table([len(ea), len(eb)])
    return {
        "lengths sum above the frame": (a, _table([len(ea), len(eb) + 5]) + _frame(body), len(ea), 1),
        "lengths sum below the frame": (a, _table([len(ea), len(eb) - 5]) + _frame(body), len(ea), 1),
        "lengths cut the members elsewhere": (a, _table([len(ea) - 2, len(eb) + 2]) + _frame(body), len(ea), 1),
        "bomb: frame declares 3 GiB": (a, _bomb(ok, 3 << 30), len(ea), 1),
        "bomb: frame declares what the table says, holds more": (a, _table([len(ea), len(eb)]) + _frame(body * 1000), len(ea), 1),
        "frame without content size": (a, ok + _frame(body, content_size=False), len(ea), 1),
        "frame without checksum": (a, ok + _frame(body, checksum=False), len(ea), 1),
        "damaged frame content": (a, ok + _frame(body)[:-6] + bytes([_frame(body)[-6] ^ 1]) + _frame(body)[-5:], len(ea), 1),
        "member count over the bound": (a, _table([len(ea), len(eb)], MAX_GROUP_MEMBERS + 1) + _frame(body), len(ea), 1),
        "member count of 2^32-1": (a, _table([len(ea), len(eb)], 0xFFFFFFFF) + _frame(body), len(ea), 1),
        "no members": (a, _table([]) + _frame(b""), len(ea), 1),
        "table longer than the record": (a, _table([len(ea), len(eb)], 40), len(ea), 1),
        "a member of 0 bytes": (a, _table([len(ea), 0, len(eb)]) + _frame(body), len(ea), 1),
        "member over the member bound": (a, _table([MAX_GROUP_MEMBER + 1]) + _frame(body), len(ea), 1),
        "members over the group bound": (a, _table([MAX_GROUP_MEMBER] * (MAX_GROUP_RAW // MAX_GROUP_MEMBER + 1)) + _frame(body), len(ea), 1),
        "member not in the group": (_member(b"elsewhere")[0], ok + _frame(body), 10, 1),
        "index length disagrees with the member": (a, ok + _frame(body), len(ea) + 1, 1),
        "index tag disagrees with the member": (a, ok + _frame(body), len(ea), 3),
        "truncated frame": (a, ok + _frame(body)[:-3], len(ea), 1),
        "truncated table": (a, ok[:6], len(ea), 1),
    }


@pytest.mark.parametrize("case", list(_hostile_cases()))
def test_a_hostile_group_is_corrupt_and_costs_no_memory(tmp_path: Path, case: str) -> None:
    oid, stored, raw_length, tag = _hostile_cases()[case]
    with pytest.raises(CorruptObject) as info:
        _read(tmp_path, oid, stored, raw_length, tag)
    assert info.value.object_id == oid.hex()


def test_group_parsing_refuses_what_breaks_a_bound() -> None:
    import xxhash

    with pytest.raises(FormatError, match="members"):
        decode_group(struct.pack("<I", MAX_GROUP_MEMBERS + 1), xxhash.xxh3_128_digest)
    with pytest.raises(FormatError, match="no member table"):
        decode_group(b"\x01", xxhash.xxh3_128_digest)
    with pytest.raises(FormatError, match="sum to"):
        decode_group(_table([MAX_GROUP_MEMBER] * 5), xxhash.xxh3_128_digest)


def test_index_entries_of_members_are_bounded() -> None:
    oid = bytes(DS)
    check_entry(oid, IndexEntry(8, 4000, 900, 1, GROUPED), 1 << 20)  # an honest member
    with pytest.raises(CorruptObject, match="grouped blob"):
        check_entry(oid, IndexEntry(8, 4000, MAX_GROUP_MEMBER + 1, 1, GROUPED), 64 << 20)
    with pytest.raises(CorruptObject, match="stored bytes"):
        check_entry(oid, IndexEntry(8, 1 << 40, 900, 1, GROUPED), 1 << 20)
    with pytest.raises(CorruptObject, match="unknown codec"):
        check_entry(oid, IndexEntry(8, 4000, 900, 1, 3), 1 << 20)


def test_a_pack_stream_carries_no_group_records() -> None:
    from objstore.wire import StreamError, StreamReader, encode_stream

    oid, enc = _member(b"x" * 20)
    stored, raw = encode_group([enc], 1)
    pieces = b"".join(encode_stream(DS, [(oid, 1, GROUPED, stored, raw)]))
    reader = StreamReader(DS, lambda *a: None)
    with pytest.raises(StreamError, match="codec 2"):
        reader.feed(pieces)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_group_decoding_of_arbitrary_bytes_raises_only_format_errors(data: bytes) -> None:
    import xxhash

    try:
        group = decode_group(data, xxhash.xxh3_128_digest)
    except FormatError:
        return
    for oid, (start, length) in group.members.items():  # whatever decodes is what its ids say
        assert xxhash.xxh3_128_digest(group.raw[start : start + length]) == oid


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12), st.data())
@settings(max_examples=200)
def test_a_mutated_group_decodes_to_its_members_or_raises_a_format_error(members: list[bytes], data: st.DataObject) -> None:
    import xxhash

    stored, _ = encode_group(members, 3)
    mutated = bytearray(stored)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] = data.draw(st.integers(0, 255))
    try:
        group = decode_group(bytes(mutated), xxhash.xxh3_128_digest)
    except FormatError:
        return
    for oid, (start, length) in group.members.items():
        assert xxhash.xxh3_128_digest(group.raw[start : start + length]) == oid


@pytest.mark.parametrize("sizes", [[900] * 2000, [16 * 1024 - 1] * 70 + [300], [5000, 40], [700] * 700 + [16 * 1024 - 1] * 9])
def test_groups_made_off_the_writer_are_full_and_read_back(tmp_path: Path, sizes: list[int]) -> None:
    """A snapshot's small files are grouped on the pool (``encode_groups``) and the
    pack writer appends the finished records: every group but the last holds at least
    GROUP_SIZE raw bytes, none is a sliver, and each member reads back by its id."""
    from objstore.packs import GROUP_SIZE, encode_groups

    members = [_member(rand_bytes(i, n // 3) * 3 + bytes(n % 3)) for i, n in enumerate(sizes)]
    groups = encode_groups(members, GROUP_SIZE, 1)
    assert [m[0] for g in groups for m in g[0]] == [oid for oid, _ in members]  # every member once, in order
    raws = [raw for _, _, raw in groups]
    assert sum(raws) == sum(len(enc) for _, enc in members)
    assert all(r >= GROUP_SIZE for r in raws[:-1])
    assert len(raws) == 1 or raws[-1] >= GROUP_SIZE // 4
    repo = Repository.init(tmp_path / "repo")
    already = members[1]
    repo.odb.put_encoded(already[1])  # in the writer's open group: the group record's copy is not indexed
    repo.odb.add_groups(groups)
    repo.flush()
    by_id = dict(entries(repo))
    assert len(by_id) == len(members) and all(e.codec == GROUPED for e in by_id.values())
    for oid, enc in members:
        assert repo.odb.get(oid.hex()) == Blob(enc[1:])
    repo.close()


def test_a_version_1_pack_takes_no_group_record(tmp_path: Path) -> None:
    from objstore.packs import PackWriter, encode_groups
    from objstore.storage import LocalStorage

    writer = PackWriter(LocalStorage(str(tmp_path)), 16)
    ((members, stored, raw),) = encode_groups([_member(b"x" * 100)], 1024, 3)
    with pytest.raises(ValueError, match="version 1"):
        writer.add_group(members, stored, raw)
    writer.abort()
