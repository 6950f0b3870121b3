"""The runnable examples in the README and docs/index.md execute as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(doc: str) -> list[str]:
    return BLOCK.findall((ROOT / doc).read_text())


@pytest.mark.parametrize("index", range(len(blocks("docs/index.md"))))
def test_index_examples_run(index: int, tmp_path: Path) -> None:
    code = blocks("docs/index.md")[index]
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "td")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The comments promise the output: check every "# value" the block prints.
    expected = [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s+#\s*(.+)", code)]
    got = proc.stdout.strip().splitlines()
    for want, line in zip(expected, got):
        assert line.startswith(want.split(":")[0].strip()), (want, line)


def test_readme_example_runs(tmp_path: Path) -> None:
    (code,) = [b for b in blocks("README.md") if "Repository.init" in b]
    os.makedirs(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "model.bin").write_bytes(os.urandom(300_000))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "restored" / "model.bin").read_bytes() == (tmp_path / "checkpoints" / "model.bin").read_bytes()
