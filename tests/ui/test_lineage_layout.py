"""The lineage graph stays legible at 200 nodes: no overlaps, bounded size, every label escaped."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("markupsafe")

from trackio.dashboard import lineage as lin


def fan(consumers: int) -> lin.Graph:
    """One producer run -> one version -> ``consumers`` runs, each logging a version of its own."""
    g = lin.Graph()
    g.nodes["run:p"] = lin.Node("run:p", "run", "producer", "/r/p")
    g.nodes["v"] = lin.Node("v", "version", "data:v0", "/v")
    g.add_edge("run:p", "v")
    for i in range(consumers):
        g.nodes[f"run:{i}"] = lin.Node(f"run:{i}", "run", f"train-{i:03d}", f"/r/{i}")
        g.nodes[f"out{i}"] = lin.Node(f"out{i}", "version", f"model-{i:03d}:v0", f"/m/{i}")
        g.add_edge("v", f"run:{i}")
        g.add_edge(f"run:{i}", f"out{i}")
    return g


def test_two_hundred_nodes_never_overlap_and_fit_a_few_screens() -> None:
    full = fan(120)
    g = lin.neighbourhood(full, "v", hops=2)
    assert len(g.nodes) == 242
    width, height = lin.layout(g)
    boxes = sorted((n.x, n.y) for n in g.nodes.values())
    for (x1, y1), (x2, y2) in itertools.pairwise(boxes):
        assert abs(x1 - x2) >= lin.NODE_W or abs(y1 - y2) >= lin.NODE_H, "two nodes overlap"
    assert height <= 40 + lin.ROWS_PER_COLUMN * (lin.NODE_H + lin.ROW_GAP) + 20  # tall columns wrap instead of running off
    assert width < 6000


def test_hops_limit_the_neighbourhood_both_ways() -> None:
    full = fan(3)
    assert {n.label for n in lin.neighbourhood(full, "v", 1).nodes.values()} == {"producer", "data:v0", "train-000", "train-001", "train-002"}
    cols = {n.label: n.col for n in lin.neighbourhood(full, "v", 2).nodes.values()}
    assert cols["producer"] == -1 and cols["train-001"] == 1 and cols["model-001:v0"] == 2


def test_labels_and_urls_are_escaped_in_the_svg() -> None:
    g = lin.Graph()
    g.nodes["x"] = lin.Node("x", "run", '<script>x()</script>"><img onerror=y()>', '/r/"><script>')
    svg = str(lin.svg(g, "x"))
    assert "<script>" not in svg and "<img" not in svg and "&lt;script&gt;" in svg
