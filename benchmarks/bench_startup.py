"""startup: ``import trackio; trackio.init(project=...)`` in a fresh process, vs trackio 0.43 (issue 17).

Our trackio façade and trackio 0.43, each under its own interpreter, with
``TRACKIO_DIR`` on disk and in tmpfs (a store made by a warm-up run, which
also compiles what has no ``.pyc``); max(5, ``--repeats``) runs each,
round-robin. The time is the import plus ``init`` measured inside the
process (the whole process, interpreter start-up included, is in the peer
table). Target: < 0.2 s.
"""

from __future__ import annotations

from .common import Context, Row, fmt
from .peers.report import Section
from .peers.scale import PLACES, REFERENCE, STARTUP, ScaleBench, find, run_scale, spread, value_row

NAME = "startup"
OURS = "trackio (objstore)"
STARTUP_S = 0.2

_sections: list[Section] = []


def sections() -> list[Section]:
    return list(_sections)


def run(ctx: Context) -> list[Row]:
    _sections.clear()
    runs = max(5, ctx.repeats)

    def work(bench: ScaleBench) -> None:
        bench.startup(runs)

    cells, _extra, section = run_scale(
        ctx,
        NAME,
        work,
        "Startup: import trackio; trackio.init() (issue 17)",
        trackio_only=True,
        runs=f"median of {runs}",
    )
    _sections.append(section)
    rows: list[Row] = []
    for place in PLACES:
        ref = find(cells, STARTUP[place], REFERENCE)
        ref_note = (
            f"trackio 0.43: {fmt(ref.seconds)} s" if ref is not None and ref.seconds else "no trackio 0.43 result"
        )
        rows.append(
            value_row(
                NAME,
                cells,
                STARTUP[place],
                OURS,
                f"import trackio + trackio.init(), fresh process, {place}",
                lambda c: c.seconds,
                "s",
                STARTUP_S,
                "<",
                lambda c, n=ref_note: f"{spread(c)}; process {fmt(c.process_s)} s; {'; '.join(c.notes)}; {n}",
            )
        )
    return rows
