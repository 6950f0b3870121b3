"""Previews of stored files from their first bytes (ranged reads, never a full download).

Text, JSON, CSV (first rows as a table), Markdown (rendered from escaped
text, so no markup of the file's own survives) and images; anything else
is "binary". Side-by-side text diffs for the diff page.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import posixpath
import re
from typing import IO, Any

from markupsafe import Markup, escape

HEAD_BYTES = 64 * 1024
"""Bytes read for a preview: one small ranged read, whatever the file's size."""
JSON_WHOLE = 1 << 20
"""JSON files up to this size are parsed and pretty-printed; bigger ones show their head."""
CSV_ROWS = 50
DIFF_BYTES = 256 * 1024

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
}
MARKDOWN = {".md", ".markdown"}
CSV_EXT = {".csv": ",", ".tsv": "\t"}
JSON_EXT = {".json", ".jsonl", ".ndjson", ".ipynb"}


def image_type(name: str) -> str | None:
    return IMAGE_TYPES.get(posixpath.splitext(name)[1].lower())


def _decode(head: bytes, truncated: bool) -> str | None:
    if b"\0" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(head) - 3:  # a character cut by the read boundary
            return head[: exc.start].decode("utf-8")
        return None


def preview(f: IO[bytes], name: str, size: int) -> dict[str, Any]:
    """What to show for a file: ``{"kind": ..., ...}``; reads at most ``HEAD_BYTES`` (``JSON_WHOLE`` for small JSON)."""
    ext = posixpath.splitext(name)[1].lower()
    if size == 0:
        return {"kind": "empty"}
    if image_type(name):
        return {"kind": "image", "mime": image_type(name)}
    whole_json = ext in {".json", ".ipynb"} and size <= JSON_WHOLE
    head = f.read(size if whole_json else HEAD_BYTES)
    truncated = len(head) < size
    text = _decode(head, truncated)
    if text is None:
        return {"kind": "binary", "head_hex": head[:256].hex(" ")}
    out: dict[str, Any] = {"truncated": truncated, "shown_bytes": len(head)}
    if whole_json:
        try:
            return {**out, "kind": "json", "text": json.dumps(json.loads(text), indent=2, ensure_ascii=False)}
        except ValueError:
            pass
    if ext in CSV_EXT:
        lines = text.splitlines()
        if truncated and lines:
            lines = lines[:-1]  # the last line may be cut by the read boundary
        rows = list(csv.reader(io.StringIO("\n".join(lines[: CSV_ROWS + 1])), delimiter=CSV_EXT[ext]))
        return {**out, "kind": "csv", "header": rows[0] if rows else [], "rows": rows[1:], "more": len(lines) > CSV_ROWS + 1 or truncated}
    if ext in MARKDOWN:
        return {**out, "kind": "markdown", "text": text, "html": str(markdown_html(text))}
    return {**out, "kind": "text", "text": text}


# -- Markdown -------------------------------------------------------------------

_SAFE_URL = re.compile(r"^(https?://|mailto:|#|/|\./|[^:]*$)", re.IGNORECASE)


def _inline(escaped: str) -> str:
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![*\w])\*([^*]+)\*(?!\w)", r"<em>\1</em>", s)

    def link(m: re.Match[str]) -> str:
        text, url = m.group(1), m.group(2)
        if not _SAFE_URL.match(url):
            return text
        return f'<a href="{url}" rel="noopener noreferrer">{text}</a>'

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, s)


def markdown_html(text: str) -> Markup:
    """A small, safe Markdown subset: headings, paragraphs, lists, quotes, code, emphasis, links.

    The text is HTML-escaped first and only our own tags are added, so a
    ``<script>`` in the file is shown, never run.
    """
    out: list[str] = []
    para: list[str] = []
    list_tag: str | None = None
    in_code = False
    code: list[str] = []

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            if in_code:
                out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
                code.clear()
                in_code = False
            else:
                flush()
                in_code = True
            continue
        line = str(escape(raw))
        if in_code:
            code.append(line)
            continue
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if m:
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            continue
        m = re.match(r"^([-*+]|\d+\.)\s+(.*)$", stripped)
        if m:
            tag = "ol" if m.group(1)[0].isdigit() else "ul"
            if para:
                out.append("<p>" + _inline(" ".join(para)) + "</p>")
                para.clear()
            if list_tag != tag:
                if list_tag:
                    out.append(f"</{list_tag}>")
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline(m.group(2))}</li>")
            continue
        if stripped.startswith("&gt;"):
            flush()
            out.append(f"<blockquote>{_inline(stripped[4:].strip())}</blockquote>")
            continue
        if list_tag:
            flush()
        para.append(stripped)
    if in_code:
        out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
    flush()
    return Markup("\n".join(out))


# -- side by side ---------------------------------------------------------------


def read_text(f: IO[bytes] | None, size: int) -> tuple[str | None, bool]:
    """(text of the file's head, truncated) or (None, _) for binary; ``f`` None is an absent side."""
    if f is None:
        return "", False
    head = f.read(DIFF_BYTES)
    truncated = len(head) < size
    return _decode(head, truncated), truncated


def side_by_side(a: str, b: str) -> list[dict[str, Any]]:
    """Rows ``{"op", "left_no", "left", "right_no", "right"}``; ``op`` is equal, replace, delete or insert."""
    left, right = a.splitlines(), b.splitlines()
    rows: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal" and i2 - i1 > 8:  # fold long unchanged runs, keep 3 lines of context each side
            for k in range(3):
                rows.append({"op": "equal", "left_no": i1 + k + 1, "left": left[i1 + k], "right_no": j1 + k + 1, "right": right[j1 + k]})
            rows.append({"op": "skip", "left_no": None, "left": f"… {i2 - i1 - 6} unchanged lines …", "right_no": None, "right": ""})
            for k in range(i2 - i1 - 3, i2 - i1):
                rows.append({"op": "equal", "left_no": i1 + k + 1, "left": left[i1 + k], "right_no": j1 + k + 1, "right": right[j1 + k]})
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            li, rj = i1 + k, j1 + k
            rows.append({
                "op": op,
                "left_no": li + 1 if li < i2 else None,
                "left": left[li] if li < i2 else "",
                "right_no": rj + 1 if rj < j2 else None,
                "right": right[rj] if rj < j2 else "",
            })
    return rows
