"""A small trackio store with everything the dashboard shows, and a live server over it."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '"><img src=x onerror="window.__xss=1">'
XSS_PROJECT = "xss" + XSS_IMG  # a project name may hold anything but "/" and NUL


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (234, 88, 12)) -> bytes:
    """A valid, tiny PNG (one colour)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def build_store(work: Path) -> dict[str, str]:
    """Log a small project (dataset v0, v1; model; runs using them) and an XSS-laden one.

    Returns ids tests need. ``TRACKIO_DIR`` must already point at the store.
    """
    import trackio

    data = work / "data"
    data.mkdir(parents=True)
    (data / "train.csv").write_text("id,label,score\n" + "".join(f"{i},cat{i % 3},{i / 10}\n" for i in range(200)))
    (data / "README.md").write_text("# Images\n\nA **small** dataset with a [link](https://example.org).\n\n- one\n- two\n")
    (data / "labels.json").write_text(json.dumps({"classes": ["cat0", "cat1", "cat2"]}))
    (data / "sample.png").write_bytes(png())
    (data / "old.txt").write_text("going away\n")
    ids: dict[str, str] = {}
    with trackio.init(project="vision", name="prepare-data", config={"seed": 1}) as run:
        a = trackio.Artifact("images", type="dataset", description="the training images", metadata={"rows": 200})
        a.add_dir(data)
        run.log_artifact(a, aliases=["prod"])
        (data / "train.csv").write_text("id,label,score\n" + "".join(f"{i},cat{i % 3},{i / 10}\n" for i in range(199)) + "199,dog,9.9\n")
        (data / "old.txt").unlink()
        (data / "extra.txt").write_text("new in v1\n")
        b = trackio.Artifact("images", type="dataset", metadata={"rows": 200, "fixed": "label of 199"})
        b.add_dir(data)
        logged = run.log_artifact(b, aliases=["prod"])
        ids["prepare"] = run.id
        ids["images_v1"] = logged.id or ""
    model = work / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(3000))
    (model / "metrics.json").write_text(json.dumps({"accuracy": 0.93}))
    with trackio.init(project="vision", name="train") as run:
        run.use_artifact("images:prod")
        trackio.log({"loss": 0.25})
        m = trackio.Artifact("classifier", type="model", metadata={"arch": "resnet"})
        m.add_dir(model)
        (work / "external.bin").write_bytes(b"kept outside the store")
        m.add_reference((work / "external.bin").as_uri(), name="external/data.bin")
        run.log_artifact(m, aliases=["candidate"])
        ids["train"] = run.id
    with trackio.init(project="vision", name="evaluate") as run:
        run.use_artifact("classifier:latest")
        ids["evaluate"] = run.id
    evil = work / "evil"
    evil.mkdir()
    (evil / f"{XSS_IMG}.txt").write_text(XSS_SCRIPT)
    (evil / "notes.md").write_text(f"# {XSS_SCRIPT}\n\n{XSS_IMG}\n")
    with trackio.init(project=XSS_PROJECT, name=XSS_IMG, config={"x": XSS_SCRIPT}) as run:
        e = trackio.Artifact("evil", type="data", description=XSS_SCRIPT, metadata={"a": XSS_SCRIPT, "b": XSS_IMG})
        e.add_dir(evil)
        run.log_artifact(e)
        e2 = trackio.Artifact("evil", type="data", metadata={XSS_IMG: XSS_SCRIPT})
        (evil / "notes.md").write_text(f"# changed {XSS_IMG}\n")
        e2.add_dir(evil)
        run.log_artifact(e2)
        ids["evil_run"] = run.id
    return ids
