"""End-to-end tour of objstore on a local store (run with `make demo`).

It builds a small "training run" folder, stores two versions of it, shows
deduplication, history, a diff, a streamed read and a verified checkout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import trackio
from objstore import Repository


def write(path: str, data: bytes, executable: bool = False) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if executable:
        os.chmod(path, 0o755)


def main() -> None:
    work = tempfile.mkdtemp(prefix="objstore-demo-")
    try:
        run_dir = os.path.join(work, "run")
        weights = bytearray(os.urandom(8 * 1024 * 1024))  # an 8 MiB "checkpoint"
        write(f"{run_dir}/model.bin", bytes(weights))
        write(f"{run_dir}/config.json", b'{"lr": 0.001, "epochs": 3}\n')
        write(f"{run_dir}/train.sh", b"#!/bin/sh\npython train.py\n", executable=True)
        os.makedirs(f"{run_dir}/logs")  # an empty directory is kept too

        repo = Repository.init(os.path.join(work, "store"))
        print(f"created {repo}")

        tree1 = repo.snapshot(run_dir)
        v1 = repo.commit(tree1, message="epoch 1", metadata={"loss": 0.71})
        repo.refs.set("model/latest", v1)
        print(f"v1 = {v1[:12]}  ({repo.stats().stored_bytes / 1e6:.1f} MB stored)")

        # Change 64 KiB in the middle of the checkpoint: only nearby chunks are new.
        weights[4_000_000 : 4_000_000 + 65536] = os.urandom(65536)
        write(f"{run_dir}/model.bin", bytes(weights))
        tree2 = repo.snapshot(run_dir)
        v2 = repo.commit(tree2, parents=[v1], message="epoch 2", metadata={"loss": 0.42})
        repo.refs.set("model/latest", v2, expect=v1)  # compare-and-set
        s = repo.stats()
        print(f"v2 = {v2[:12]}  logical {s.logical_bytes / 1e6:.1f} MB, stored {s.stored_bytes / 1e6:.1f} MB "
              f"(dedup x{s.dedup_ratio:.2f}), {s.files_on_disk} files on disk")

        print("\nhistory of model/latest:")
        for commit_id, commit in repo.log("model/latest"):
            print(f"  {commit_id[:12]}  {commit.message:8}  {commit.metadata}")

        print("\ndiff v1 -> v2:")
        for change in repo.diff(v1, v2):
            print(f"  {change.status:8} {change.path}")

        print("\nfiles in v2:")
        for path, entry in repo.walk(v2):
            print(f"  {entry.kind:8} {oct(entry.mode) if entry.kind == 'file' else '':6} {entry.size:>9}  {path}")

        with repo.open_file(v2[:10], "model.bin") as f:  # an id prefix works too
            f.seek(4_000_000)
            assert f.read(65536) == bytes(weights[4_000_000 : 4_000_000 + 65536])
        print("\nstreamed 64 KiB from the middle of model.bin: verified")

        out = os.path.join(work, "restored")
        result = repo.checkout("model/latest", out)
        with open(f"{out}/model.bin", "rb") as restored:
            assert restored.read() == bytes(weights)
        assert os.access(f"{out}/train.sh", os.X_OK)
        print(f"checked out {result.files} files, {result.bytes / 1e6:.1f} MB, every byte verified")
        again = repo.checkout("model/latest", out)
        print(f"second checkout skipped {again.skipped} files already in place")

        # A remote is any fsspec URL with the same layout: push sends only what it lacks.
        remote = "file://" + os.path.join(work, "remote")
        sent = repo.push(remote, create=True)  # a new remote must be asked for (or made with Repository.init)
        again_sent = repo.push(remote)
        print(f"\npush: {sent.objects} objects in {sent.packs} pack(s); second push: {again_sent.objects} objects")
        clone = Repository.clone(remote, os.path.join(work, "clone"))
        print(f"clone has refs {sorted(clone.refs.list())}")

        trackio_tour(work, run_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


DEMO_TRACKIO_DIR = os.path.join(tempfile.gettempdir(), "objstore-demo-trackio")
"""The demo's trackio store: kept after the demo so the dashboard can show it."""


def trackio_tour(work: str, run_dir: str) -> None:
    """The same store under trackio's artifact API."""
    shutil.rmtree(DEMO_TRACKIO_DIR, ignore_errors=True)
    os.environ["TRACKIO_DIR"] = DEMO_TRACKIO_DIR  # one store per machine; here the demo's own
    os.chdir(work)

    print("\n-- trackio --")
    with trackio.init(project="demo", config={"lr": 0.001}):
        trackio.log({"loss": 0.42})
        art = trackio.Artifact("my-model", type="model", metadata={"epochs": 3})
        art.add_dir(run_dir)
        logged = trackio.log_artifact(art, aliases=["prod"])
        print(f"logged {logged.qualified_name} aliases={logged.aliases} size={logged.size} digest={logged.digest[:12]}")
        same = trackio.Artifact("my-model", type="model")
        same.add_dir(run_dir)
        again = trackio.log_artifact(same)
        print(f"re-logging identical content reuses {again.version}")
        write(f"{run_dir}/config.json", b'{"lr": 0.0005, "epochs": 4}\n')
        tuned = trackio.Artifact("my-model", type="model", metadata={"epochs": 4})
        tuned.add_dir(run_dir)
        print(f"after changing config.json: {trackio.log_artifact(tuned, aliases=['prod']).version} (now prod)")
    with trackio.init(project="demo") as consumer:
        used = trackio.use_artifact("my-model:prod", type="model")
        path = used.download()
        print(f"{consumer.name} used {used.qualified_name}, downloaded to {os.path.relpath(path, work)}")
        print(f"logged by {used.logged_by().name}; used by {[r.name for r in used.used_by()]}")
    trackio_bin = os.path.join(os.path.dirname(sys.executable), "trackio")
    print("\nbrowse the demo's artifacts, versions, diffs and lineage in the dashboard:")
    print(f"  TRACKIO_DIR={DEMO_TRACKIO_DIR} {trackio_bin} show --project demo")


if __name__ == "__main__":
    main()
