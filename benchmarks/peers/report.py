"""The peer table (text and Markdown), the plot, and the target rows."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..common import Row, fmt
from .workloads import BY_KEY, WORKLOADS, Cell, Workload

NAME = "peers"
OURS = ("objstore", "trackio (objstore)")
REFERENCE = "trackio 0.43"


def _mb(n: int | float | None) -> str:
    return "-" if n is None else f"{fmt(n / 1e6)} MB"


def best_peer(cells: Iterable[Cell], key: str) -> Cell | None:
    """The peer with the lowest key figure on a workload."""
    peers = [c for c in cells if c.workload == key and not c.ours and c.key_value() is not None]
    return min(peers, key=lambda c: c.key_value() or 0.0) if peers else None


def vs_best(cells: list[Cell], cell: Cell) -> str:
    best = best_peer(cells, cell.workload)
    mine = cell.key_value()
    if not cell.ours or best is None or mine is None:
        return ""
    return f"{mine / (best.key_value() or 1):.2f}x {best.system}"


def _notes(cell: Cell) -> str:
    if cell.skipped:
        return cell.skipped
    parts = []
    if len(cell.samples) > 1:
        parts.append(f"{len(cell.samples)} runs {fmt(min(cell.samples))}..{fmt(max(cell.samples))} s")
    if cell.process_s is not None and cell.seconds is not None and cell.process_s - cell.seconds > 0.05:
        parts.append(f"process {fmt(cell.process_s)} s")
    if cell.cpu_s is not None:
        parts.append(f"cpu {fmt(cell.cpu_s)} s")
    parts.extend(n for n in cell.notes if n)
    return "; ".join(parts)


HEADERS = ["workload", "system", "time", "MB/s", "stored", "files", "peak RSS", "requests", "vs best peer", "notes"]


def _cells_row(cells: list[Cell], c: Cell) -> list[str]:
    if c.skipped:
        return [c.workload, c.system, "-", "-", "-", "-", "-", "-", "", "skipped: " + c.skipped]
    return [
        c.workload,
        c.system,
        f"{fmt(c.seconds)} s",
        fmt(c.mbps) if c.mbps else "-",
        _mb(c.stored),
        "-" if c.files is None else f"{c.files:,}",
        _mb(c.peak_rss),
        "-" if c.requests is None else str(c.requests),
        vs_best(cells, c),
        _notes(c),
    ]


def _ordered(cells: list[Cell]) -> list[Cell]:
    order = {key: i for i, key in enumerate(BY_KEY)}
    return sorted(cells, key=lambda c: (order[c.workload], not c.ours))


def present_workloads(cells: list[Cell]) -> list[Workload]:
    """The workloads that have cells, in their registered order."""
    keys = {c.workload for c in cells}
    return [w for key, w in BY_KEY.items() if key in keys]


def text_table(cells: list[Cell]) -> str:
    body = [_cells_row(cells, c) for c in _ordered(cells)]
    widths = [max([len(h), *(len(b[i]) for b in body)]) for i, h in enumerate(HEADERS)]
    right = {2, 3, 4, 5, 6, 7}

    def line(cols: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths))
        ).rstrip()

    out = [line(HEADERS), "-+-".join("-" * w for w in widths)]
    previous = None
    for c, b in zip(_ordered(cells), body):
        if previous is not None and c.workload != previous:
            out.append("")
        previous = c.workload
        out.append(line(b))
    return "\n".join(out)


def markdown_table(cells: list[Cell]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for c in _ordered(cells):
        row = _cells_row(cells, c)
        if c.ours:
            row[1] = f"**{row[1]}**"
        lines.append("| " + " | ".join(x.replace("|", "/") for x in row) + " |")
    return "\n".join(lines)


_METRIC_LABEL = {"time": "time", "stored": "stored bytes", "files": "files in the store"}


def key_legend(workloads: list[Workload] | None = None) -> str:
    return "; ".join(f"{w.key}: {_METRIC_LABEL[w.metric]}" for w in (WORKLOADS if workloads is None else workloads))


class Section:
    """Extra output for ``__main__``: a peer table as text, and as Markdown with its plot."""

    def __init__(
        self,
        cells: list[Cell],
        title: str,
        about: str,
        heading: str,
        plot_name: str,
        size_label: str = "",
        files: int = 0,
    ) -> None:
        self.cells = cells
        self.title = title
        self.about = about
        self.heading = heading  # the Markdown heading line, e.g. "## Peers, measured in the same run"
        self.plot_name = plot_name  # file name of the plot, written beside the Markdown page
        self.size_label = size_label
        self.files = files

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.about}\n\n{text_table(self.cells)}\n"

    def markdown(self, doc_dir: str) -> str:
        """The Markdown section; writes the plot into ``doc_dir``."""
        why = plot(self.cells, os.path.join(doc_dir, self.plot_name), self.title, self.size_label, self.files)
        image = f"![{self.heading.lstrip('# ')}, one panel per workload]({self.plot_name})" if not why else f"_({why})_"
        return "\n".join(
            [
                self.heading,
                "",
                f"_{self.title}_",
                "",
                self.about.replace("\n", "  \n"),
                "",
                markdown_table(self.cells),
                "",
                image,
                "",
            ]
        )


# -- target rows ----------------------------------------------------------------------------


def _find(cells: list[Cell], key: str, system: str) -> Cell | None:
    for c in cells:
        if c.workload == key and c.system == system and not c.skipped:
            return c
    return None


def _why_missing(cells: list[Cell], key: str, *systems: str) -> str:
    for s in systems:
        for c in cells:
            if c.workload == key and c.system == s and c.skipped:
                return f"{s}: {c.skipped}"[:100]
    return "no result"


def target_rows(cells: list[Cell], size_label: str, files: int) -> list[Row]:
    rows: list[Row] = []

    def speedup(key: str, ours: str, target: float, what: str) -> None:
        mine, ref = _find(cells, key, ours), _find(cells, key, REFERENCE)
        if mine is None or ref is None or not mine.seconds or not ref.seconds:
            rows.append(
                Row(NAME, f"{what}: {ours} vs trackio 0.43", None, "x", notes=_why_missing(cells, key, ours, REFERENCE))
            )
            return
        rows.append(
            Row(
                NAME,
                f"{what}: {ours} vs trackio 0.43",
                ref.seconds / mine.seconds,
                "x",
                target,
                ">=",
                target_label=f">= {target:g}x trackio 0.43",
                notes=f"{fmt(mine.seconds)} s vs {fmt(ref.seconds)} s (speed ratio)",
            )
        )

    for ours in OURS:
        speedup("W1 log", ours, 1.5, f"W1 ingest {size_label}")
    for ours in OURS:
        speedup("W2 re-log", ours, 20.0, f"W2 re-log {size_label}")
    for ours in OURS:
        mine, ref = _find(cells, "W3 10 versions", ours), _find(cells, "W3 10 versions", REFERENCE)
        metric = f"W3 store after 10 versions: {ours} vs trackio 0.43"
        if mine is None or ref is None or not mine.stored or not ref.stored:
            rows.append(Row(NAME, metric, None, "x", notes=_why_missing(cells, "W3 10 versions", ours, REFERENCE)))
        else:
            rows.append(
                Row(
                    NAME,
                    metric,
                    mine.stored / ref.stored,
                    "x",
                    0.3,
                    "<=",
                    target_label="<= 0.3x trackio 0.43",
                    notes=f"{_mb(mine.stored)} vs {_mb(ref.stored)}",
                )
            )
    for ours in OURS:
        mine = _find(cells, "W4 log", ours)
        rows.append(
            Row(
                NAME,
                f"W4 {files:,} files: files in the {ours} store",
                None if mine is None else mine.files,
                "",
                20,
                "<",
                notes="" if mine is not None else _why_missing(cells, "W4 log", ours),
            )
        )
    for ours in OURS:
        speedup("W4 log", ours, 3.0, f"W4 log {files:,} files")
    for w in WORKLOADS:
        best = best_peer(cells, w.key)
        for ours in OURS:
            mine = _find(cells, w.key, ours)
            metric = f"{w.key}: {ours} / best peer ({'time' if w.metric == 'time' else 'stored'})"
            if mine is None or best is None or mine.key_value() is None:
                why = _why_missing(cells, w.key, ours) if mine is None else "no peer result"
                rows.append(Row(NAME, metric, None, "x", notes=why))
                continue
            value = (mine.key_value() or 0.0) / (best.key_value() or 1.0)
            rows.append(
                Row(
                    NAME,
                    metric,
                    value,
                    "x",
                    1.0,
                    "<",
                    target_label=f"< 1x ({best.system})",
                    notes=f"{_fmt_key(mine)} vs {_fmt_key(best)}",
                )
            )
    return rows


def _fmt_key(c: Cell) -> str:
    metric = BY_KEY[c.workload].metric
    return f"{fmt(c.seconds)} s" if metric == "time" else f"{c.files} files" if metric == "files" else _mb(c.stored)


# -- plot ----------------------------------------------------------------------------------


def plot(cells: list[Cell], path: str, title: str, size_label: str = "", files: int = 0) -> str:
    """One panel per workload, the key figure per system; "" on success, else why no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError as exc:
        return f"no plot: matplotlib is not installed ({exc})"
    workloads = present_workloads(cells)
    if not workloads:
        return "no plot: no results"
    cols = 3
    rows = (len(workloads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.3 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads):
        mine = [c for c in _ordered(cells) if c.workload == w.key]
        names = [c.system for c in mine]
        scale, unit = {"time": (1.0, "s"), "files": (1.0, "files")}.get(w.metric, (1e-6, "MB"))
        values = [(c.key_value() or 0.0) * scale for c in mine]
        colors = ["tab:blue" if c.ours else "tab:gray" for c in mine]
        y = list(range(len(mine)))
        ax.barh(y, values, color=colors)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{w.key}: {w.title.format(size=size_label, files=f'{files:,}')}", fontsize=9)
        ax.set_xlabel(f"{_METRIC_LABEL[w.metric]} ({unit}, lower is better)", fontsize=8)
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(min(positive) / 2, max(positive) * 4)  # room for the labels
        elif positive:
            ax.set_xlim(0, max(positive) * 1.2)
        for yi, c, v in zip(y, mine, values):
            label = "skipped" if c.key_value() is None else (f"{fmt(v)}")
            ax.text(v if v > 0 else (min(positive) if positive else 0), yi, " " + label, va="center", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return ""
