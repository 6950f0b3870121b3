"""Stores that lie about sizes, and the child process that reads them.

The forging helpers build, from an honest repository, one that is valid
except for a single record: an index entry whose ``raw_length`` claims
gigabytes for a 196 KB zstd frame of RLE blocks (a decompression bomb), an
index whose count claims 2^40 entries, a tree whose msgpack array header
declares 2^31 entries, a ref log entry of 1 GiB.

Run as a script (``python hostile_sizes.py <scenario> <json args>``) it does
one read a user would do, under an address-space limit so a regression
fails instead of taking the machine down, and prints one JSON line: the
error met (its class, its module's error hierarchy, object id and pack) and
the process's peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

import msgpack
import xxhash

from objstore import Commit, Repository
from objstore.codec import GROUPED, RAW, ZSTD
from objstore.objects import TREE
from objstore.packs import PackWriter
from objstore.refs import REFS_DIR

GiB = 1 << 30
SAFETY_AS = 3 * GiB  # far above any honest read here, far below a bomb

# -- forging --------------------------------------------------------------------------


def zstd_bomb(size: int) -> bytes:
    """One zstd frame declaring ``size`` content bytes, made of 128 KiB RLE blocks (4 bytes each).

    6 GiB fit in 196 KB; the frame is well formed, so a decoder that trusts
    its header allocates ``size`` bytes and fills them with zeros.
    """
    block = 128 * 1024
    # magic | descriptor: 8-byte content size, not single-segment | window 2^17 | content size
    out = bytearray(struct.pack("<IBB", 0xFD2FB528, 0xC0, 7 << 3) + struct.pack("<Q", size))
    full, rest = divmod(size, block)
    sizes = [block] * full + ([rest] if rest else [])
    rle = 1 << 1
    head = struct.pack("<I", (block << 3) | rle)[:3] + b"\0"
    out += head * (len(sizes) - 1)
    out += struct.pack("<I", (sizes[-1] << 3) | rle | 1)[:3] + b"\0"  # last block
    return bytes(out)


def honest_repo(path: Path) -> tuple[str, str]:
    """A repository with a few files, one commit and ref ``main``; returns (commit, tree)."""
    src = path.parent / f"{path.name}-src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n" * 100)
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    with Repository.init(path) as repo:
        tree = repo.snapshot(src)
        commit = repo.commit(tree, message="honest", timestamp=1.0)
        repo.refs.set("main", commit)
    shutil.rmtree(src)
    return commit, tree


def forge(src: Path, dst: Path, victim: str, stored: bytes, raw_length: int, codec_id: int = ZSTD) -> None:
    """``dst``: a copy of repository ``src`` (config, every object, every ref head) in which
    the record of object ``victim`` holds ``stored`` and claims ``raw_length``."""
    with Repository.open(src) as good, Repository.init(dst, good.config.hash, chunking=good.config.chunking) as bad:
        writer = PackWriter(bad.storage, good.odb.digest_size)
        victim_raw = bytes.fromhex(victim)
        for name in good.odb.pack_names:
            for oid, e in good.odb.index(name).items():
                if oid == victim_raw:
                    writer.add(oid, e.type_tag, codec_id, stored, raw_length)
                    continue
                if e.codec == GROUPED:  # this writer gives every object a record of its own
                    writer.add(oid, e.type_tag, RAW, bytes(good.odb.get_encoded(oid)), e.raw_length)
                    continue
                data = good.storage.read_range(f"packs/{name}.pack", e.offset, e.stored_length)
                writer.add(oid, e.type_tag, e.codec, data, e.raw_length)
        writer.finish()
        for ref_path in good.storage.walk_files(REFS_DIR):  # the whole ref logs, byte for byte
            target = dst / ref_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / ref_path, target)


def bomb_remote(src: Path, dst: Path, claim: int) -> str:
    """A copy of ``src`` whose ``main`` commit is a zstd bomb claiming ``claim`` bytes; returns its id."""
    with Repository.open(src) as good:
        victim = good.refs.get("main")
    forge(src, dst, victim, zstd_bomb(claim), claim)
    return victim


def set_index_count(repo_path: Path, count: int) -> str:
    """Make the first index of a repository claim ``count`` entries, checksum kept valid; returns the pack name."""
    idx = sorted((repo_path / "packs").glob("*.idx"))[0]
    data = bytearray(idx.read_bytes())
    struct.pack_into("<Q", data, 8, count)
    struct.pack_into("<Q", data, len(data) - 8, xxhash.xxh3_64_intdigest(bytes(data[:-8])))
    idx.write_bytes(bytes(data))
    return idx.stem


def wide_tree_remote(src: Path, dst: Path, declared: int) -> tuple[str, str]:
    """A copy of ``src`` with ref ``main`` on a commit of a tree whose msgpack array
    header declares ``declared`` entries (followed by one real entry). The tree and
    the commit are stored under their correct ids. Returns (commit, tree)."""
    shutil.copytree(src, dst)
    with Repository.open(dst) as repo:
        blob = repo.store_bytes(b"x")
        entry = msgpack.packb(["f", 0, bytes.fromhex(blob), 1, 0o644], use_bin_type=True)
        body = b"\xdd" + struct.pack(">I", declared) + entry
        tree = repo.odb.put_encoded(bytes([TREE]) + body)
        commit = repo.odb.put_encoded(Commit(tree, (), 1.0, None, "wide", {}).encode())
        repo.odb.flush()
        repo.refs.set("main", commit)
    return commit, tree


def huge_ref_entry(repo_path: Path, ref: str, size: int) -> Path:
    """Append a ref log entry of ``size`` bytes (sparse: a valid entry, then a hole) to ``ref``."""
    with Repository.open(repo_path) as repo:
        head = repo.refs.head(ref)
        assert head is not None
        path = repo_path / repo.refs._path(ref, head.seq + 1)
        valid = repo.refs.read_back(ref, head.seq)
    with open(path, "wb") as f:
        f.write(valid)
        f.truncate(size)
    return path


def huge_packed_refs(repo_path: Path, size: int) -> Path:
    """Pack the ref logs, then make the packed file ``size`` bytes (sparse: its valid bytes, then a hole)."""
    with Repository.open(repo_path) as repo:
        done = repo.refs.compact()
        assert done is not None
        path = repo_path / repo.refs._packed_path(done.generation)
    with open(path, "r+b") as f:
        f.truncate(size)
    return path


# -- the child --------------------------------------------------------------------------


def _scenario(name: str, args: dict[str, Any]) -> Any:
    remote, work = args.get("remote", ""), Path(args.get("work", "."))
    if name == "fetch":
        with Repository.init(work / "local") as local:
            return local.fetch(remote).objects
    if name == "clone":
        Repository.clone(remote, work / "clone").close()
        return None
    if name == "fsck":
        with Repository.open(remote) as repo:
            return _report(repo.fsck(full=True))
    if name == "fsck-url":
        with Repository.init(work / "local") as local:
            return _report(local.fsck(url=remote, full=True))
    if name == "view":
        import fsspec

        return fsspec.filesystem("objstore", repo=remote, skip_instance_cache=True).ls("main")
    if name == "open":
        with Repository.open(remote) as repo:
            return repo.refs.list()
    if name == "read-tree":
        with Repository.open(remote) as repo:
            return len(repo.ls("main"))
    if name == "checkout":
        with Repository.open(remote) as repo:
            return repo.checkout("main", work / "out").files
    if name == "trackio-download":
        import trackio

        api = trackio.Api(project=args["project"], remote=remote)
        return api.artifact(f"{args['artifact']}:v0").download(work / "downloaded")
    if name == "trackio-sync":
        import trackio

        data = work / "mine.txt"
        data.write_bytes(b"logged on the second machine\n")
        trackio.init(project=args["project"], name="second")
        trackio.log_artifact(str(data), name=args["artifact"], type="dataset")
        trackio.finish()
        return trackio.sync(remote=remote).objects
    raise SystemExit(f"unknown scenario {name!r}")


def _report(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "bad_objects": report.bad_objects,
        "bad_packs": report.bad_packs,
        "bad_refs": report.bad_refs,
        "damaged_refs": report.damaged_refs,
    }


def _error_info(exc: BaseException) -> dict[str, Any]:
    from objstore.errors import ObjstoreError
    from trackio.errors import TrackioError

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 5:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return {
        "error": type(exc).__name__,
        "typed": isinstance(exc, (ObjstoreError, TrackioError)),
        "chain": [type(c).__name__ for c in chain],
        "message": str(exc),
        "object_id": getattr(exc, "object_id", None),
        "where": getattr(exc, "where", None),
        "traceback": traceback.format_exc(limit=8),
    }


def peak_rss() -> int:
    """This process's peak resident set, in bytes.

    ``VmHWM`` belongs to the process's own address space, which ``exec``
    replaces; ``ru_maxrss`` is carried over ``fork`` + ``exec`` and would
    report the parent's size if the parent (pytest) ever was larger.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    limit = int(args.get("address_space", SAFETY_AS))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out: dict[str, Any] = {"scenario": name}
    try:
        out["result"] = _scenario(name, args)
        out["error"] = None
    except BaseException as exc:  # everything is reported to the parent
        out.update(_error_info(exc))
    out["maxrss"] = peak_rss()
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no atexit hooks (trackio's) after the measurement


if __name__ == "__main__":
    main()
