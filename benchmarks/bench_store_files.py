"""store_files: 1,000 versions of 50 artifacts (100 of 10 quick) through trackio: files in the store (issue 17).

Our trackio façade and trackio 0.43 each log small text files as versions
of ``art00``..``art49`` round-robin with ``trackio.log_artifact``, one tenth
of the versions in one process, the rest in a second one (a resumed
script), on disk and in tmpfs. Measured: the files in the store afterwards
(target < 100), what ``refs.list()`` of a fresh ``Repository`` on the
façade's store reads (files opened + directories listed, counted with an
audit hook in the process; target <= 10, the same after a tenth of the
versions: O(1)), and the files the last ``log_artifact`` added (target:
at most one pack and its index, and at most 3 other files).
"""

from __future__ import annotations

from typing import Any

from .common import Context, Row, fmt
from .peers.report import Section
from .peers.scale import PLACES, REFERENCE, VERSIONS, ScaleBench, count_pack_files, find, run_scale, value_row

NAME = "store_files"
OURS = "trackio (objstore)"
STORE_FILES = 100
REFS_READS = 10
PACK_FILES = 2  # one pack and its index
OTHER_FILES = 3  # O(1): e.g. the ref-log entries of the version, the alias and the run

_sections: list[Section] = []


def sections() -> list[Section]:
    return list(_sections)


def _reads(probe: dict[str, Any]) -> int:
    return int(probe["files_opened"]) + int(probe["dirs_listed"])


def _probe_note(probe: dict[str, Any]) -> str:
    return (
        f"{probe['refs']} refs: {probe['files_opened']} files opened, {probe['dirs_listed']} dirs listed, "
        f"{probe['storage_reads']} Storage reads, {fmt(probe['op_s'] * 1e3)} ms"
    )


def run(ctx: Context) -> list[Row]:
    _sections.clear()
    versions, artifacts = (100, 10) if ctx.quick else (1_000, 50)
    label = f"{versions:,} versions / {artifacts} artifacts"

    def work(bench: ScaleBench) -> None:
        bench.store_files(versions, artifacts)

    cells, extra, section = run_scale(
        ctx,
        NAME,
        work,
        f"Files in the store after {label} (issue 17)",
        label,
        trackio_only=True,
        runs="once per system",
    )
    _sections.append(section)
    rows: list[Row] = []
    for place in PLACES:
        key = VERSIONS[place]
        probes = extra.get(place, {}).get("probes", {})
        got: dict[str, Any] = probes.get(OURS, {})
        ref = find(cells, key, REFERENCE)
        ref_note = (
            f"trackio 0.43: {ref.files:,} files"
            if ref is not None and ref.files is not None
            else f"trackio 0.43: {ref.skipped if ref is not None else 'no result'}"
        )
        rows.append(
            value_row(
                NAME,
                cells,
                key,
                OURS,
                f"files in the store after {label}, {place}",
                lambda c: c.files,
                "",
                STORE_FILES,
                "<",
                lambda c, n=ref_note: f"{n}; {fmt(c.seconds)} s for all log_artifact calls; {'; '.join(c.notes)}",
            )
        )
        probe, small = got.get("probe"), got.get("probe_small")
        rows.append(
            value_row(
                NAME,
                cells,
                key,
                OURS,
                f"refs.list() reads (files + dirs) after {label}, {place}",
                lambda c, p=probe: _reads(p) if p else None,
                "",
                REFS_READS,
                "<=",
                lambda c, p=probe, s=small: (
                    f"{_probe_note(p)}; after {versions // 10} versions: {_probe_note(s)}" if p and s else "no probe"
                ),
                target_label=f"<= {REFS_READS} (O(1))",
            )
        )
        last = got.get("last_added")
        first = got.get("first_added") or []
        packs, others = count_pack_files(last) if last is not None else (None, None)
        shown = ", ".join(last[:6]) + (" ..." if last and len(last) > 6 else "") if last is not None else ""
        rows.append(
            value_row(
                NAME,
                cells,
                key,
                OURS,
                f"pack + index files added by one log_artifact, {place}",
                lambda c, v=packs: v,
                "",
                PACK_FILES,
                "<=",
                lambda c, s=shown: f"the last of {versions:,}: {s}",
                target_label=f"<= {PACK_FILES} (a pack + its index)",
            )
        )
        rows.append(
            value_row(
                NAME,
                cells,
                key,
                OURS,
                f"other files added by one log_artifact, {place}",
                lambda c, v=others: v,
                "",
                OTHER_FILES,
                "<=",
                lambda c, f=first: f"the first one added {len(f)} files in all ({count_pack_files(f)[0]} pack/index)",
                target_label=f"<= {OTHER_FILES} (O(1))",
            )
        )
    return rows
