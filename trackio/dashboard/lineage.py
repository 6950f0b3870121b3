"""The lineage graph: runs and artifact versions, N hops up and down, laid out as SVG.

Edges run producer run -> version -> consumer runs (and run inputs -> run ->
outputs). Nodes are placed in columns by signed hop distance from the focus
(upstream left, downstream right); a tall column wraps into sub-columns so
200 nodes stay legible; within a column nodes are ordered by the mean row of
their neighbours in the previous column, which removes most crossings. The
SVG is built here, server-side: no JavaScript library is needed to draw it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

NODE_W, NODE_H = 230, 26
COL_GAP, ROW_GAP, SUBCOL_GAP = 90, 10, 24
ROWS_PER_COLUMN = 30
LABEL_CHARS = 32


@dataclass
class Node:
    id: str
    kind: str  # "run" or "version"
    label: str
    url: str
    detail: str = ""
    col: int = 0
    x: float = 0.0
    y: float = 0.0
    block: tuple[float, float] = (0.0, 0.0)  # left and right edge of the node's column (sub-columns included)


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)  # (from, to): producer -> version -> consumer
    ups: dict[str, set[str]] = field(default_factory=dict)
    downs: dict[str, set[str]] = field(default_factory=dict)

    def add_edge(self, a: str, b: str) -> None:
        self.edges.add((a, b))
        self.downs.setdefault(a, set()).add(b)
        self.ups.setdefault(b, set()).add(a)


def neighbourhood(full: Graph, focus: str, hops: int, limit: int = 2000) -> Graph:
    """The part of ``full`` within ``hops`` of ``focus`` (upstream and downstream), with columns set."""
    out = Graph()
    cols = {focus: 0}
    for direction, step in ((full.ups, -1), (full.downs, 1)):
        queue = deque([(focus, 0)])
        while queue and len(cols) < limit:
            node, d = queue.popleft()
            if d >= hops:
                continue
            for nxt in sorted(direction.get(node, ())):
                if nxt not in cols:
                    cols[nxt] = step * (d + 1)
                    queue.append((nxt, d + 1))
    for nid, col in cols.items():
        n = full.nodes[nid]
        out.nodes[nid] = Node(n.id, n.kind, n.label, n.url, n.detail, col)
    for a, b in full.edges:
        if a in cols and b in cols:
            out.add_edge(a, b)
    return out


def layout(g: Graph) -> tuple[float, float]:
    """Set every node's x/y; return (width, height)."""
    by_col: dict[int, list[Node]] = {}
    for n in g.nodes.values():
        by_col.setdefault(n.col, []).append(n)
    order: dict[str, float] = {}
    columns = sorted(by_col, key=lambda c: (abs(c), c))  # from the focus outward
    for c in columns:
        nodes = by_col[c]
        prev = c + 1 if c < 0 else c - 1

        def rank(n: Node, prev: int = prev) -> tuple[float, str]:
            near = [order[m] for m in (g.ups.get(n.id, set()) | g.downs.get(n.id, set())) if m in order and g.nodes[m].col == prev]
            return (sum(near) / len(near) if near else 1e9, n.label)

        nodes.sort(key=rank)
        for i, n in enumerate(nodes):
            order[n.id] = i
    x = 20.0
    tallest = max(min(len(nodes), ROWS_PER_COLUMN) for nodes in by_col.values())
    full = tallest * (NODE_H + ROW_GAP)
    for c in sorted(by_col):
        nodes = by_col[c]
        subcols = (len(nodes) + ROWS_PER_COLUMN - 1) // ROWS_PER_COLUMN
        rows = min(len(nodes), ROWS_PER_COLUMN)
        top = 40 + (full - rows * (NODE_H + ROW_GAP)) / 2  # columns centred on the tallest
        right = x + subcols * (NODE_W + SUBCOL_GAP) - SUBCOL_GAP
        for i, n in enumerate(nodes):
            n.x = x + (i // rows) * (NODE_W + SUBCOL_GAP)
            n.y = top + (i % rows) * (NODE_H + ROW_GAP)
            n.block = (x, right)
        x = right + COL_GAP
    return x - COL_GAP + 20, 40 + full + 10


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _edge_path(a: Node, b: Node) -> str:
    """From a's right side to b's left side. A node inside a wrapped column
    leaves (or is entered) along the gap below (above) its row, so no edge
    crosses the other nodes of its column."""
    cmds = []
    x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
    cmds.append(f"M{x1:.0f},{y1:.0f}")
    if x1 < a.block[1] - 1:  # not in the last sub-column: out along the gap below
        gap = a.y + NODE_H + ROW_GAP / 2
        cmds.append(f"L{x1 + SUBCOL_GAP / 2:.0f},{y1:.0f} L{x1 + SUBCOL_GAP / 2:.0f},{gap:.0f} L{a.block[1]:.0f},{gap:.0f}")
        x1, y1 = a.block[1], gap
    x2, y2 = b.x, b.y + NODE_H / 2
    tail = ""
    if x2 > b.block[0] + 1:  # not in the first sub-column: in along the gap above
        gap = b.y - ROW_GAP / 2
        tail = f" L{x2 - SUBCOL_GAP / 2:.0f},{gap:.0f} L{x2 - SUBCOL_GAP / 2:.0f},{y2:.0f} L{x2:.0f},{y2:.0f}"
        x2, y2 = b.block[0], gap
    mid = (x1 + x2) / 2
    cmds.append(f"C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}")
    return " ".join(cmds) + tail


def svg(g: Graph, focus: str) -> Markup:
    """The graph as an inline SVG (every label escaped; nodes link to their pages)."""
    width, height = layout(g)
    parts = [f'<svg class="lineage" id="lineage-svg" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">']
    cols = sorted({n.col for n in g.nodes.values()})
    for c in cols:
        first = min((n for n in g.nodes.values() if n.col == c), key=lambda n: n.x)
        title = "focus" if c == 0 else (f"{-c} up" if c < 0 else f"{c} down")
        parts.append(f'<text x="{first.x:.0f}" y="20" class="colhead">{title}</text>')
    for a, b in sorted(g.edges):
        parts.append(f'<path class="edge" d="{_edge_path(g.nodes[a], g.nodes[b])}"/>')
    for n in g.nodes.values():
        cls = f"node {n.kind}" + (" focus" if n.id == focus else "")
        label = escape(n.label)
        parts.append(
            f'<g class="{cls}" data-id="{escape(n.id)}" data-label="{label}"><a href="{escape(n.url)}">'
            f"<title>{label}{escape(' · ' + n.detail) if n.detail else ''}</title>"
            f'<rect x="{n.x:.0f}" y="{n.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
            f'<text x="{n.x + 8:.0f}" y="{n.y + 17:.0f}">{"▶ " if n.kind == "run" else "◆ "}{escape(_short(n.label))}</text></a></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def as_json(g: Graph, focus: str) -> dict[str, Any]:
    return {
        "focus": focus,
        "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, "url": n.url, "detail": n.detail, "hop": n.col} for n in g.nodes.values()],
        "edges": [{"from": a, "to": b} for a, b in sorted(g.edges)],
    }
