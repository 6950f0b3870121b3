"""Run the benchmarks and print one table: ``python -m benchmarks --help``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from types import ModuleType
from typing import Any

from . import GROUPS, NAMES
from .common import ROOT, Context, Row, format_table

# Rough peak temp-disk use of each benchmark (GB), full / quick.
_DISK_GB = {
    "edit_dedup": (0.6, 0.2),
    "ten_versions": (1.2, 0.3),
    "small_files": (0.3, 0.3),
    "ingest": (3.3, 1.7),
    "resnapshot_unchanged": (2.2, 0.6),
    "memory": (4.4, 1.1),
    "chunk_size": (1.4, 0.4),
    "remote": (2.5, 0.7),
    "server": (2.6, 0.8),
    "peers": (6.5, 1.8),
    # The scale benchmarks check their own room per place and skip what does not fit (checkpoint:
    # ~21 GB on disk for ours, ~31 GB for trackio 0.43 at 10 GB), so only their small part is here.
    "large_file": (1.6, 0.4),
    "checkpoint": (0.5, 0.5),
    "many_files": (7.6, 1.6),  # every round's restore and store kept until the end (common.set_aside)
    "store_files": (0.1, 0.1),
    "startup": (0.1, 0.1),
    "dashboard": (1.3, 0.5),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f".bench_{name}", __package__)


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "objstore"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip() + ("+dirty objstore/" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _wait_idle(limit: float, quiet: bool) -> None:
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
        if not quiet:
            print(f"waiting for an idle machine (load avg {_loadavg()})", file=sys.stderr, flush=True)
        time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller files (about a quarter of the full sizes)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these (repeatable or comma-separated): {', '.join(NAMES)}"
        + "; groups: "
        + ", ".join(f"{k} = {'+'.join(v)}" for k, v in GROUPS.items()),
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is reported (default 3)")
    p.add_argument("--workdir", help="parent directory for temp files (default: the system temp dir)")
    p.add_argument(
        "--tmpfs",
        default="/dev/shm",
        metavar="DIR",
        help="memory-backed directory for the in-tmpfs variants of the scale benchmarks (default /dev/shm; '' skips them)",
    )
    p.add_argument("--keep", action="store_true", help="do not delete the temp directory afterwards")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as a Markdown page (e.g. docs/benchmarks.md)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to drop below 0.5",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in NAMES:
            doc = (_module(name).__doc__ or "").strip().splitlines()[0]
            print(doc)
        return 0
    selected = list(NAMES)
    if args.only:
        wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        wanted = [m for n in wanted for m in GROUPS.get(n, (n,))]
        unknown = [n for n in wanted if n not in NAMES]
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}", file=sys.stderr)
            return 2
        selected = [n for n in NAMES if n in wanted]
    if args.repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 2

    parent = args.workdir or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    need = max(_DISK_GB[n][1 if args.quick else 0] for n in selected)
    free = shutil.disk_usage(parent).free / 1e9
    if free < need * 1.2:
        print(f"only {free:.1f} GB free under {parent}; these benchmarks need about {need:.1f} GB", file=sys.stderr)
        return 2
    if args.wait_idle > 0:
        _wait_idle(args.wait_idle, quiet=args.quiet)
    workdir = tempfile.mkdtemp(prefix="objstore-bench-", dir=parent)
    ctx = Context(workdir=workdir, quick=args.quick, repeats=args.repeats, verbose=not args.quiet, tmpfs=args.tmpfs)
    load_before = _loadavg()
    rows: list[Row] = []
    extras: list[Any] = []  # sections a benchmark adds besides its rows (``sections()``: .text, .markdown(doc_dir))
    failed: list[str] = []
    t0 = time.perf_counter()
    try:
        for name in selected:
            ctx.log(f"== {name}")
            try:
                module = _module(name)
                rows.extend(module.run(ctx))
                extras.extend(getattr(module, "sections", list)())
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                rows.append(Row(name, f"crashed: {type(exc).__name__}: {exc}"[:100], None, ""))
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - t0

    header = (
        f"objstore benchmarks ({'quick' if args.quick else 'full'}, median of {args.repeats} unless noted) - "
        f"commit {_git_head()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load avg {load_before} -> {_loadavg()}, {elapsed:.0f} s"
    )
    print(header)
    for extra in extras:
        print(extra.text)
    print(format_table(rows))
    if args.markdown:
        doc_dir = os.path.dirname(os.path.abspath(args.markdown))
        sections = [extra.markdown(doc_dir) for extra in extras]
        with open(args.markdown, "w") as f:
            f.write(markdown_page(header, rows, sections))
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("PASS", "FAIL", "ERROR")}
    print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} errors (rows without a target are info)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "repeats": args.repeats, "rows": [r.to_dict() for r in rows]}, f, indent=2)
    return 1 if failed else 0


def markdown_page(header: str, rows: list[Row], sections: list[str] | None = None) -> str:
    """The results as a Markdown page: what was run, one table, then any extra sections."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks --markdown docs/benchmarks.md` (`make bench` runs exactly this).",
        "Each timing is the median of several runs; the ratio is measured / target (for a `>=` target, above 1 is better;",
        "for `<=` and `<`, below 1 is better). Peer figures in targets are from `shared/DESIGN.md` (same kind of 2-core",
        "machine), except the `peers` rows: those peers were measured in the same run (section below the table).",
        "",
        f"_{header}_",
        "",
        "| benchmark | metric | measured | target | measured/target | result | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = "-" if r.value is None else f"{r.value:,.3g} {r.unit}".strip()
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.bench} | {r.metric} | {value} | {r.target_text()} | {ratio} | {r.status} | {r.notes} |")
    for section in sections or []:
        lines += ["", section]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
