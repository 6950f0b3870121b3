"""Every code block in the README and docs/ runs (or parses) as written.

* ```python blocks run in a fresh interpreter, in a sandbox directory that
  holds the files the examples name (checkpoints/, model.safetensors,
  tokenizer/, data/), with a fresh TRACKIO_DIR; where a line prints and its
  comment says what it prints, the output must match.
* ```console blocks run line by line (``$ command``) in such a sandbox.
* ```json blocks in format.md must be a config objstore accepts.
* ```text blocks are layouts and synopses, not code. The README's ```sh
  block is ``make demo`` / ``make test``, which CI itself runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from objstore.config import RepoConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        for i, (fence, body) in enumerate(FENCE.findall((ROOT / doc).read_text())):
            if fence == lang:
                out.append((doc, i, body))
    return out


def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    box = tmp_path / "box"
    for rel, size in [
        ("checkpoints/model.bin", 300_000),
        ("checkpoints/config.json", 20),
        ("model.safetensors", 200_000),
        ("tokenizer/vocab.txt", 5_000),
    ]:
        (box / rel).parent.mkdir(parents=True, exist_ok=True)
        (box / rel).write_bytes(os.urandom(size))
    (box / "data").mkdir()
    (box / "data" / "train.csv").write_text("a,b\n1,2\n3,4\n")
    env = {
        **os.environ,
        "TRACKIO_DIR": str(tmp_path / "trackio"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return box, env


def test_every_fence_is_known() -> None:
    for doc in DOCS:
        for fence, _ in FENCE.findall((ROOT / doc).read_text()):
            assert fence in {"python", "console", "json", "text", "sh"}, f"{doc}: unlabelled or unknown code block {fence!r}"


@pytest.mark.parametrize(("doc", "index", "code"), blocks("python"), ids=lambda v: str(v) if not isinstance(v, str) or len(v) < 40 else "")
def test_python_blocks_run(doc: str, index: int, code: str, tmp_path: Path) -> None:
    box, env = sandbox(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=box, env=env, timeout=180)
    assert proc.returncode == 0, f"{doc} block {index}:\n{proc.stderr}"
    promised = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+#\s*(.+)$", code, re.M)]
    printed = proc.stdout.strip().splitlines()
    assert len(printed) >= len(promised), proc.stdout
    for want, line in zip(promised, printed):
        assert line.strip() == want.split(":")[0].strip(), f"{doc} block {index}: printed {line!r}, the comment says {want!r}"


@pytest.mark.parametrize(("doc", "index", "script"), blocks("console"))
def test_console_blocks_run(doc: str, index: int, script: str, tmp_path: Path) -> None:
    box, env = sandbox(tmp_path)
    for line in script.splitlines():
        if not line.startswith("$ "):
            continue
        command = line[2:].split("  #")[0]
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=box, env=env, timeout=180)
        assert proc.returncode == 0, f"{doc} block {index}: {command!r} failed:\n{proc.stderr}"


@pytest.mark.parametrize(("doc", "index", "body"), blocks("json"))
def test_json_blocks_are_valid_configs(doc: str, index: int, body: str) -> None:
    data = json.loads(body.replace("<32 hex digits, random>", "0" * 32))
    config = RepoConfig.decode(json.dumps(data).encode(), doc)
    assert config.hash == "xxh3-128"


def test_readme_commands_run() -> None:
    """The README's two commands: ``make demo`` runs here; ``make test`` is this very suite (CI runs it)."""
    ((_, _, script),) = blocks("sh")
    commands = [line.split("#")[0].strip() for line in script.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    proc = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "every byte verified" in proc.stdout
