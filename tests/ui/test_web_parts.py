"""objstore.web's parts on their own: previews, Markdown escaping, side-by-side, streamed archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web UI needs the 'ui' extra")

from objstore import Repository
from objstore.web import archive, preview
from objstore.web.render import HTTPProblem, safe_path


def test_preview_reads_only_the_head_of_a_big_csv() -> None:
    body = b"a,b\n" + b"1,2\n" * 1_000_000
    f = io.BytesIO(body)
    pv = preview.preview(f, "t.csv", len(body))
    assert pv["kind"] == "csv" and pv["header"] == ["a", "b"] and len(pv["rows"]) == preview.CSV_ROWS and pv["more"]
    assert f.tell() == preview.HEAD_BYTES  # one ranged read, not the file


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("x.json", b'{"a": 1}', "json"),
        ("x.json", b"{not json", "text"),
        ("x.txt", "h\u00e9llo".encode(), "text"),
        ("x.bin", b"\0\1\2", "binary"),
        ("x.png", b"\x89PNG", "image"),
        ("x.md", b"# t", "markdown"),
        ("empty.txt", b"", "empty"),
    ],
)
def test_preview_kinds(name: str, data: bytes, kind: str) -> None:
    assert preview.preview(io.BytesIO(data), name, len(data))["kind"] == kind


def test_a_character_cut_by_the_read_boundary_is_still_text() -> None:
    data = b"a" * (preview.HEAD_BYTES - 1) + "\u00e9".encode() + b"tail"
    pv = preview.preview(io.BytesIO(data), "x.txt", len(data))
    assert pv["kind"] == "text" and pv["truncated"]


def test_markdown_keeps_no_markup_of_its_own() -> None:
    html = str(preview.markdown_html('# T <script>x()</script>\n\n[a](javascript:alert(1)) [b](https://ok.example/) <img src=x onerror="y()">'))
    assert "<script>" not in html and "<img" not in html and "javascript:" not in html.split("href")[0]
    assert "&lt;script&gt;" in html and '<a href="https://ok.example/"' in html and "<h1>" in html


def test_side_by_side_pairs_changed_lines_and_folds_long_equal_runs() -> None:
    a = "\n".join(f"line {i}" for i in range(40))
    b = a.replace("line 20", "LINE 20") + "\nadded"
    rows = preview.side_by_side(a, b)
    assert {"op": "replace", "left_no": 21, "left": "line 20", "right_no": 21, "right": "LINE 20"} in rows
    assert rows[-1] == {"op": "insert", "left_no": None, "left": "", "right_no": 41, "right": "added"}
    assert sum(r["op"] == "skip" for r in rows) == 2


@pytest.mark.parametrize("path", ["..", "a/../b", "./a", "a\\b", "a/\0"])
def test_climbing_paths_are_refused(path: str) -> None:
    with pytest.raises(HTTPProblem) as err:
        safe_path(path)
    assert err.value.status == 400 and repr(path) in err.value.message


def test_streamed_archives_hold_every_file_and_list_references(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello")
    big = bytes(range(256)) * 20_000  # 5 MB: several blocks
    (src / "sub" / "big.bin").write_bytes(big)
    repo = Repository.init(tmp_path / "store")
    tree = repo.snapshot(src)
    parts = list(archive.stream_zip(repo, tree))
    assert max(len(p) for p in parts) <= archive.BLOCK + 4096  # handed out a block at a time, never whole
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as zf:
        assert zf.read("a.txt") == b"hello" and zf.read("sub/big.bin") == big
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.stream_tar(repo, tree)))) as tf:
        member = tf.extractfile("sub/big.bin")
        assert member is not None and member.read() == big
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.stream_zip(repo, tree, "sub")))) as zf:
        assert zf.namelist() == ["big.bin"]
