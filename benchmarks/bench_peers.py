"""peers: objstore and our trackio façade against trackio 0.43, DVC, git, git-lfs and restic, same data, same run.

Every peer is installed by the benchmark itself into ``.bench-peers/``
(venvs for trackio 0.43 and DVC; git-lfs and restic from Debian when missing
and running as root) and skipped, with the reason in its rows, only if that
fails. Workloads (``benchmarks/peers/workloads.py``): a 256 MiB random file
(64 MiB with --quick) logged and restored, re-logged unchanged, ten ~1%
edited checkpoints of it, 20,000 small text files (5,000 quick), a
compressible float16 file, and push/fetch to a loopback moto S3 server with
counted requests. Every operation is a fresh process; Python libraries
report the call's own time, CLIs the commands' wall time; peak RSS is the
``wait4`` rusage of the operation's process tree, from a small launcher.

Prints a peer table (one row per workload and system) and returns target
rows: W1 ingest >= 1.5x trackio 0.43, W2 re-log >= 20x, W3 store <= 0.3x,
W4 < 20 files and >= 3x faster, and "ahead of the best peer" per workload.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .common import Context, Row, remove
from .peers import envs, report
from .peers.report import Section
from .peers.systems import Runner, make_systems
from .peers.workloads import Bench, Cell

NAME = "peers"
HERE = os.path.dirname(os.path.abspath(__file__))
MOTO = os.path.join(HERE, "peers", "moto_counting.py")
PLOT_NAME = "benchmarks-peers.png"


class CountingMoto:
    """``moto_counting.py`` in its own process for the duration of a ``with`` block."""

    def __init__(self, work: str) -> None:
        from .bench_remote import _free_port

        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.counter_url = f"{self.endpoint}/__bench__/counts"
        tmp = os.path.join(work, "moto-tmp")
        os.makedirs(tmp, exist_ok=True)
        self.log = open(os.path.join(work, "moto.log"), "w")  # noqa: SIM115 - closed in __exit__
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TMPDIR"] = tmp
        self.proc = subprocess.Popen(
            [sys.executable, MOTO, str(self.port)], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"the counting moto server did not start (exit {self.proc.poll()})")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def __enter__(self) -> CountingMoto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_sections: list[Section] = []


def sections() -> list[Section]:
    """What the last ``run`` adds to the output besides its rows (used by ``__main__``)."""
    return list(_sections)


def run(ctx: Context) -> list[Row]:
    _sections.clear()
    work = ctx.fresh_dir(NAME)
    t0 = time.perf_counter()
    tools = envs.ensure(ctx.log)
    for name, tool in tools.items():
        ctx.log(f"peers: {name}: {tool.version if tool.ok else 'SKIPPED: ' + tool.reason}")
    runner = Runner(os.path.join(work, "scratch"))
    systems, skipped = make_systems(tools, runner, os.path.join(work, "systems"))
    bench = Bench(ctx, systems, skipped, work)
    bench.w1_w2()
    bench.w3()
    bench.w4()
    bench.w5()
    try:
        with CountingMoto(work) as moto:
            runner.counter_url = moto.counter_url
            bench.w6(moto.endpoint)
    except RuntimeError as exc:
        for system in systems:
            for key in ("W6 push", "W6 fetch"):
                bench.cells.append(Cell(key, system.name, system.ours, skipped=str(exc)))
    finally:
        runner.counter_url = None
    remove(work)

    versions = ", ".join(f"{s.name}: {s.version}" for s in systems)
    missing = "; ".join(f"{k} SKIPPED ({v})" for k, v in skipped.items())
    title = (
        f"peers ({'quick' if ctx.quick else 'full'}): {bench.size_label} files, {bench.files:,} small files, "
        f"median of {ctx.repeats} (W3 once), {time.perf_counter() - t0:.0f} s"
    )
    about = (
        f"Versions: {versions}{'; ' + missing if missing else ''}.\n"
        f"'vs best peer' = ours / the best peer's key figure ({report.key_legend()}); below 1 = ahead.\n"
        "time = the call (objstore, trackio) or the commands (dvc, git, restic), each in a fresh process; "
        "'process' in notes = the processes' wall incl. start-up and imports; peak RSS = wait4 of the process tree; "
        "stored/files = everything the system keeps (see benchmarks/README.md); requests = HTTP requests moto served."
    )
    _sections.append(
        Section(
            bench.cells,
            title,
            about,
            "## Peers, measured in the same run",
            PLOT_NAME,
            bench.size_label,
            bench.files,
        )
    )
    return report.target_rows(bench.cells, bench.size_label, bench.files)
