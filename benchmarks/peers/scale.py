"""The scale workloads of issue 17, on disk and in tmpfs, with trackio 0.43 in the same run.

Each ``bench_<name>`` module of a scale target (``large_file``,
``checkpoint``, ``many_files``, ``store_files``, ``startup``) calls
:func:`run_scale` with one workload method of :class:`ScaleBench`, which
extends the peer benchmark's :class:`~benchmarks.peers.workloads.Bench`: the
same systems (objstore's ``Repository`` API, our trackio façade, trackio
0.43 from its own venv), the same launcher (every operation a fresh process,
peak RSS from ``wait4``), the same round-robin repeats and the same cells,
tables and plots. Each workload runs once per :class:`Place` (``disk`` and
``tmpfs``); workload keys carry the place, e.g. ``"large log (tmpfs)"``.

Data:

* one large random file: ``os.urandom``;
* the checkpoint: a random 64 MiB block XORed with a different constant per
  block (fast to make, incompressible, no chunk repeats anywhere), edited in
  place by 16 random overwrites spread over the file totalling 1 % (the
  ``scattered_edits`` pattern of edit_dedup and ten_versions);
* small files: text of English-like words (a Zipf-distributed vocabulary of
  common words and made-up ones, with line breaks), 256..1024 bytes each, 100
  per directory, 10 directories per top directory.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..common import (
    Context,
    KiB,
    MiB,
    Row,
    age_file,
    count_files,
    dir_bytes,
    fmt,
    remove,
    scattered_edits,
    write_random_file,
)
from . import envs
from .places import Place, places
from .report import Section, key_legend, present_workloads
from .systems import Objstore, Op, Runner, System, Trackio, make_systems
from .workloads import Bench, Cell, Workload, register

PLACES = ("disk", "tmpfs")
REFERENCE = "trackio 0.43"
OURS = ("objstore", "trackio (objstore)")
GB = 1_000_000_000


def keys(stem: str) -> dict[str, str]:
    """``{place: "<stem> (<place>)"}``."""
    return {p: f"{stem} ({p})" for p in PLACES}


LARGE_LOG, LARGE_RESTORE = keys("large log"), keys("large restore")
CKPT_LOG, CKPT_RELOG, CKPT_RESTORE = keys("ckpt log"), keys("ckpt re-log 1%"), keys("ckpt restore")
SMALL_LOG, SMALL_RELOG, SMALL_RESTORE = keys("small log"), keys("small re-log"), keys("small restore")
VERSIONS = keys("versions")
STARTUP = keys("startup")

register(
    [
        Workload(k, t, m)
        for place in PLACES
        for k, t, m in (
            (LARGE_LOG[place], "log one {size} random file", "time"),
            (LARGE_RESTORE[place], "restore it into an empty dir", "time"),
            (CKPT_LOG[place], "log a {size} checkpoint", "time"),
            (CKPT_RELOG[place], "re-log it after a 1% scattered edit", "time"),
            (CKPT_RESTORE[place], "restore the edited checkpoint", "time"),
            (SMALL_LOG[place], "log {files} text files of 0.25-1 KiB", "time"),
            (SMALL_RELOG[place], "log them again, unchanged", "time"),
            (SMALL_RESTORE[place], "restore the {files} files", "time"),
            (VERSIONS[place], "files in the store after {size}", "files"),
            (STARTUP[place], "import trackio; trackio.init()", "time"),
        )
    ]
)


# -- data ------------------------------------------------------------------------------

_BLOCK = 64 * MiB


def write_checkpoint(path: str, size: int) -> None:
    """``size`` incompressible bytes with no repeated chunk, fast: a random block XORed per block."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with matplotlib in the bench extra
        write_random_file(path, size)
        return
    base = np.frombuffer(os.urandom(_BLOCK), dtype=np.uint64)
    rng = random.Random()
    out = np.empty_like(base)
    with open(path, "wb") as f:
        left = size
        while left:
            # every byte of the constant non-zero, so every byte of the block differs from the base's
            key = int.from_bytes(bytes(rng.randrange(1, 256) for _ in range(8)), "little")
            np.bitwise_xor(base, np.uint64(key), out=out)
            n = min(_BLOCK, left)
            f.write(memoryview(out).cast("B")[:n])
            left -= n


def edit_in_place(path: str, rng: random.Random, fraction: float = 0.01, count: int = 16) -> int:
    """Overwrite ``fraction`` of the file in place, as ``count`` random blocks spread over it; bytes written.

    The blocks are :func:`~benchmarks.common.scattered_edits`' (the edit_dedup and
    ten_versions pattern: one edit of 0.5..1.5x the mean length in each of
    ``count`` equal stretches), all overwrites, written with ``pwrite`` so a
    10 GB file needs no second copy.
    """
    size = os.path.getsize(path)
    written = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, _kind, data in scattered_edits(rng, size, fraction, count, insert_share=0.0):
            written += os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    return written


_COMMON_TEXT = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their been has would when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "man me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three model training data loss step epoch learning rate batch layer weights "
    "value file result test run version output input network gradient sample"
)
_COMMON = _COMMON_TEXT.split()


def _vocabulary(seed: int) -> tuple[list[str], list[float]]:
    """Common words first, then made-up ones, with Zipf weights (cumulative), plus line breaks."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "er", "an", "en")]
    made = {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(6000)}
    vocab = ["\n", *_COMMON, *sorted(made - set(_COMMON))]
    weights = [1 / (rank + 2) ** 1.05 for rank in range(len(vocab))]
    weights[0] = weights[8]  # a line break about as often as a common word
    cum: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    return vocab, cum


def write_text_tree(root: str, files: int, seed: int = 17) -> int:
    """``files`` text files of 256..1024 bytes, 100 per directory, 10 directories per top one; total bytes."""
    rng = random.Random(seed)
    vocab, cum = _vocabulary(seed)
    total = 0
    for i in range(files):
        leaf, n = divmod(i, 100)
        top, sub = divmod(leaf, 10)
        d = os.path.join(root, f"part{top:03d}", f"shard{sub}")
        if n == 0:
            os.makedirs(d, exist_ok=True)
        size = rng.randint(256, 1024)
        words = rng.choices(vocab, cum_weights=cum, k=size // 4)
        text = " ".join(words).replace(" \n ", "\n").encode()[: size - 1] + b"\n"
        with open(os.path.join(d, f"doc{n:02d}.txt"), "wb") as f:
            f.write(text)
        total += len(text)
    return total


def age_tree(root: str, seconds: float = 10.0) -> None:
    """Every file's mtime ``seconds`` back (written a while ago: stat caches may trust them)."""
    t = time.time() - seconds
    for top, _dirs, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(top, name), (t, t))


def file_digest(path: str) -> str:
    """xxh3-128 of a file, read in 8 MiB blocks (for checking a restore without keeping the source)."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


# -- workloads --------------------------------------------------------------------------


def _is_pack_file(rel: str) -> bool:
    return rel.endswith((".pack", ".idx"))


class ScaleBench(Bench):
    """The scale workloads for one place (its systems live under the place's directory)."""

    def __init__(
        self, ctx: Context, systems: list[System], skipped: dict[str, str], place: Place, cells: list[Cell]
    ) -> None:
        super().__init__(ctx, systems, skipped, place.root)
        self.place = place
        self.cells = cells  # shared by the places: one table
        self.extra: dict[str, Any] = {}  # per-workload figures besides the cells (store growth, probes)

    def _skip_all(self, keys_: Iterable[str], why: str) -> None:
        for key in keys_:
            for cell in self._cells(key).values():
                cell.skipped = why
        self.ctx.log(f"{key}: {why}")

    # 1. one large file

    def large_file(self, size: int) -> None:
        label = self.place.label
        log, restore = LARGE_LOG[label], LARGE_RESTORE[label]
        why = self.place.lacks(size * (2 + len(self.systems)), f"a {size // MiB} MiB file, its stores and restores")
        if why:
            self._skip_all([log, restore], why)
            return
        root = os.path.join(self.work, "large")
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        rel = "weights.bin"
        path = os.path.join(src, rel)
        self.ctx.log(f"large_file ({label}): writing a {size // MiB} MiB random file")
        write_random_file(path, size)
        age_file(path)
        log_cells, restore_cells = self._cells(log), self._cells(restore)
        groups = [log_cells, restore_cells]
        self.ctx.log(f"large_file ({label}): log x{self.ctx.repeats}, round-robin")
        live = self._logs(self.systems, groups, log_cells, src, rel, size)
        self.ctx.log(f"large_file ({label}): restore x{self.ctx.repeats}")
        self._restores(live, groups, restore_cells, rel, path, size)
        self._done(root)

    # 2. a checkpoint

    def checkpoint(self, size: int, rounds: int) -> None:
        label = self.place.label
        names = [CKPT_LOG[label], CKPT_RELOG[label], CKPT_RESTORE[label]]
        # ours: source + a store of ~1x (+2% after the edit); a whole-file store (trackio 0.43) holds two copies
        why = self.place.lacks(int(size * 2.05), f"a {size / GB:g} GB checkpoint and one store")
        if why:
            self._skip_all(names, why)
            return
        log, relog, restore = (self._cells(k) for k in names)
        groups = [log, relog, restore]
        root = os.path.join(self.work, "ckpt")
        src = os.path.join(root, "src")
        rel = "checkpoint.bin"
        path = os.path.join(src, rel)
        ops: dict[str, dict[str, list[Op]]] = {s.name: {"log": [], "relog": [], "restore": []} for s in self.systems}
        growth: dict[str, list[float]] = {s.name: [] for s in self.systems}
        self.extra["growth"] = growth

        def step(system: System, i: int) -> None:
            copies = 3.05 if not system.ours else 2.05
            lacking = self.place.lacks(int(size * copies), f"{system.name} with a {size / GB:g} GB checkpoint")
            if lacking:
                raise _Skip(lacking)
            remove(root)
            os.makedirs(src)
            self.ctx.log(f"checkpoint ({label}) round {i + 1}: {system.name}: writing, log, 1% edit, re-log, restore")
            write_checkpoint(path, size)
            age_file(path)
            system.reset(src)
            system.prepare(rel)
            ops[system.name]["log"].append(system.log(rel, "v1"))
            before, _ = system.store_size()
            edit_in_place(path, random.Random(i))
            system.prepare(rel)
            ops[system.name]["relog"].append(system.log(rel, "v2"))
            after, _ = system.store_size()
            growth[system.name].append((after - before) / size)
            digest = file_digest(path)
            remove(root)  # the restore needs the room; it is checked against the digest instead
            dest = self._dest(system)
            op, restored = system.restore(rel, dest)
            if file_digest(restored) != digest:
                raise AssertionError(f"{system.name}: the restored checkpoint differs from the edited one")
            ops[system.name]["restore"].append(op)
            remove(dest)
            system.cleanup()

        live = self._rounds(self.systems, groups, step, times=rounds)
        for s in live:
            for key, cell in (("log", log), ("relog", relog), ("restore", restore)):
                cell[s.name].add(ops[s.name][key], size)
            g = growth[s.name]
            relog[s.name].notes.append(
                f"store growth {statistics.median(g):.2%} of the file"
                + (f" ({min(g):.2%}..{max(g):.2%})" if len(g) > 1 else "")
            )
        self._done(root)

    # 3. many small files

    def many_files(self, files: int) -> None:
        label = self.place.label
        names = [SMALL_LOG[label], SMALL_RELOG[label], SMALL_RESTORE[label]]
        # ~4 KiB per file on disk (block or page) for the source and, kept until the end (set_aside),
        # every round's restore and store
        trees = 1 + 2 * self.ctx.repeats * len(self.systems)
        why = self.place.lacks(files * 4 * KiB * trees, f"{files:,} small files")
        if why:
            self._skip_all(names, why)
            return
        root = os.path.join(self.work, "small")
        src = os.path.join(root, "src")
        rel = "dataset"
        data = os.path.join(src, rel)
        self.ctx.log(f"many_files ({label}): writing {files:,} text files")
        total = write_text_tree(data, files)
        age_tree(data)
        self.extra["content_bytes"] = total
        log, relog, restore = (self._cells(k) for k in names)
        groups = [log, relog, restore]
        # A round's 100k restored (or, for trackio 0.43, stored) files are deleted only after
        # the last timed step: deleted at once, they would slow the next round's creates on
        # ext4 without a journal for minutes (common.set_aside).
        self._set_trash(os.path.join(root, "trash"))
        self.ctx.log(f"many_files ({label}): log x{self.ctx.repeats}, round-robin")
        live = self._logs(self.systems, groups, log, src, rel, total)
        self.ctx.log(f"many_files ({label}): restore x{self.ctx.repeats}")
        live = self._restores(live, groups, restore, rel, data, total)
        self.ctx.log(f"many_files ({label}): unchanged re-log x{self.ctx.repeats}")
        ops: dict[str, list[Op]] = {s.name: [] for s in live}

        def step(system: System, i: int) -> None:
            ops[system.name].append(system.log(rel, f"again {i}"))

        live = self._rounds(live, groups, step)
        for s in live:
            c = relog[s.name]
            c.add(ops[s.name], total)
            c.stored, c.files = s.store_size()
        self._done(root)
        self._set_trash("")

    def _set_trash(self, trash: str) -> None:
        self.trash = trash
        for system in self.systems:
            system.trash = trash

    # 4. files in the store after many versions

    def store_files(self, versions: int, artifacts: int) -> None:
        label = self.place.label
        key = VERSIONS[label]
        cells = self._cells(key)
        systems: list[System] = [s for s in self.systems if isinstance(s, Trackio)]
        first = max(1, versions // 10)
        probes: dict[str, dict[str, Any]] = {}
        self.extra["probes"] = probes
        prober = Objstore(systems[0].runner, os.path.join(self.work, "probe"))
        prober.reset(self.work)

        def step(system: System, _: int) -> None:
            assert isinstance(system, Trackio)
            src = os.path.join(self.work, "versions-src", system.name.replace(" ", "_"))
            remove(src)
            system.reset(src)
            self.ctx.log(f"store_files ({label}): {system.name}: {versions:,} versions of {artifacts} artifacts")
            op1 = system.log_many(src, 0, first, artifacts)
            got: dict[str, Any] = {"first_added": op1.info["first_added"]}
            if system.ours:
                got["probe_small"] = prober.refs_probe(os.path.join(system.trackio_dir, "objstore")).info
            op2 = system.log_many(src, first, versions - first, artifacts)
            got["last_added"] = op2.info["last_added"]
            got["per_log_s"] = [op1.info["per_log_s"], op2.info["per_log_s"]]
            if system.ours:
                got["probe"] = prober.refs_probe(os.path.join(system.trackio_dir, "objstore")).info
            cell = cells[system.name]
            cell.add([op1, op2], 0)
            cell.seconds = op1.info["logs_s"] + op2.info["logs_s"]
            cell.samples = [cell.seconds]
            cell.stored, cell.files = system.store_size()
            cell.notes.append(f"median log_artifact {fmt(statistics.median(got['per_log_s']) * 1e3)} ms")
            probes[system.name] = got
            remove(src)
            system.cleanup()

        self._rounds(systems, [cells], step, times=1)
        prober.cleanup()

    # 5. startup

    def startup(self, runs: int) -> None:
        label = self.place.label
        cells = self._cells(STARTUP[label])
        systems: list[System] = [s for s in self.systems if isinstance(s, Trackio)]
        ops: dict[str, list[Op]] = {s.name: [] for s in systems}

        def warm(system: System, _: int) -> None:
            assert isinstance(system, Trackio)
            system.reset(self.work)
            system.startup(write_bytecode=True)  # creates the store; compiles what has no .pyc yet

        def step(system: System, _: int) -> None:
            assert isinstance(system, Trackio)
            ops[system.name].append(system.startup())

        live = self._rounds(systems, [cells], warm, times=1)
        live = self._rounds(live, [cells], step, times=runs)
        for s in live:
            c = cells[s.name]
            c.add(ops[s.name], 0)
            c.notes.append(f"import {fmt(statistics.median(o.info['import_s'] for o in ops[s.name]))} s")
            s.cleanup()


class _Skip(Exception):
    """A system does not fit (free room): its cells say why."""


# -- running -----------------------------------------------------------------------------


def run_scale(
    ctx: Context,
    name: str,
    work: Callable[[ScaleBench], None],
    title: str,
    size_label: str = "",
    files: int = 0,
    trackio_only: bool = False,
    runs: str = "",
) -> tuple[list[Cell], dict[str, dict[str, Any]], Section]:
    """Run ``work`` on disk and in tmpfs with objstore (unless ``trackio_only``), our trackio and trackio 0.43.

    Returns the cells, each place's ``ScaleBench.extra`` and the section (peer
    table + plot) for the output; ``runs`` says how often each operation ran
    (default: "median of <--repeats>").
    """
    t0 = time.perf_counter()
    tools = envs.ensure(ctx.log, only=(REFERENCE,))
    for tool in tools.values():
        ctx.log(f"{name}: {tool.name}: {tool.version if tool.ok else 'SKIPPED: ' + tool.reason}")
    cells: list[Cell] = []
    extras: dict[str, dict[str, Any]] = {}
    versions = ""
    with places(ctx, name) as (where, missing):
        for place in where:
            runner = Runner(os.path.join(place.root, "scratch"))
            systems, skipped = make_systems(tools, runner, os.path.join(place.root, "systems"), peers=(REFERENCE,))
            if trackio_only:
                systems = [s for s in systems if isinstance(s, Trackio)]
            versions = ", ".join(f"{s.name}: {s.version}" for s in systems)
            bench = ScaleBench(ctx, systems, skipped, place, cells)
            work(bench)
            extras[place.label] = bench.extra
            for s in systems:
                s.cleanup()
        for label, why in missing.items():
            extras[label] = {"missing": why}
            # the same rows as the places that ran, saying why this one did not
            for cell in list(cells):
                for ran in where:
                    if cell.workload.endswith(f"({ran.label})"):
                        key = cell.workload[: -len(f"({ran.label})")] + f"({label})"
                        if find(cells, key, cell.system) is None:
                            cells.append(Cell(key, cell.system, cell.ours, skipped=f"not run: {why}"))
    for cell in cells:
        if cell.skipped.startswith("failed: _Skip: "):
            cell.skipped = cell.skipped[len("failed: _Skip: ") :]
    places_note = "; ".join(f"{k}: not run ({v['missing']})" for k, v in extras.items() if "missing" in v)
    heading = f"{title} ({'quick' if ctx.quick else 'full'}), {runs or f'median of {ctx.repeats}'}, {time.perf_counter() - t0:.0f} s"
    about = (
        f"Versions: {versions or '-'}{'; ' + places_note if places_note else ''}.\n"
        f"'vs best peer' = ours / trackio 0.43's key figure ({key_legend(present_workloads(cells))}); below 1 = ahead.\n"
        "Each operation a fresh process (time = the call itself; 'process' = with start-up and imports); "
        "peak RSS = wait4 of the process tree; disk = the benchmark's workdir, tmpfs = --tmpfs (default /dev/shm)."
    )
    section = Section(
        cells, heading, about, f"## {title}", f"benchmarks-{name.replace('_', '-')}.png", size_label, files
    )
    return cells, extras, section


# -- rows ----------------------------------------------------------------------------------


def find(cells: list[Cell], key: str, system: str) -> Cell | None:
    for c in cells:
        if c.workload == key and c.system == system:
            return c
    return None


def missing_note(cells: list[Cell], key: str, *systems: str) -> str:
    for s in systems:
        c = find(cells, key, s)
        if c is None:
            return f"{s}: no result"
        if c.skipped:
            return f"{s}: {c.skipped}"[:160]
    return "no result"


def spread(c: Cell, scale: float = 1.0, unit: str = "s") -> str:
    if len(c.samples) <= 1:
        return "1 run"
    return f"median of {len(c.samples)} ({fmt(min(c.samples) * scale)}..{fmt(max(c.samples) * scale)} {unit})"


def speed_row(bench: str, cells: list[Cell], key: str, ours: str, target: float | None, what: str) -> Row:
    """``trackio 0.43's time / ours`` (how many times faster), with a ``>=`` target (or info)."""
    mine, ref = find(cells, key, ours), find(cells, key, REFERENCE)
    metric = f"{what}: {ours} vs trackio 0.43"
    if mine is None or ref is None or not mine.seconds or not ref.seconds or mine.skipped or ref.skipped:
        return Row(bench, metric, None, "x", notes=missing_note(cells, key, ours, REFERENCE))
    return Row(
        bench,
        metric,
        ref.seconds / mine.seconds,
        "x",
        target,
        ">=" if target is not None else None,
        target_label=f">= {target:g}x trackio 0.43" if target is not None else "",
        notes=f"{fmt(mine.seconds)} s vs {fmt(ref.seconds)} s; ours {spread(mine)}, theirs {spread(ref)}",
    )


def value_row(
    bench: str,
    cells: list[Cell],
    key: str,
    ours: str,
    metric: str,
    value: Callable[[Cell], float | None],
    unit: str,
    target: float | None,
    op: str | None,
    notes: Callable[[Cell], str] = lambda c: "",
    target_label: str = "",
) -> Row:
    """A row of one of our cells: ``value(cell)`` against a target (or info), or why there is none."""
    c = find(cells, key, ours)
    if c is None or c.skipped:
        return Row(bench, f"{metric} ({ours})", None, unit, notes=missing_note(cells, key, ours))
    return Row(
        bench,
        f"{metric} ({ours})",
        value(c),
        unit,
        target,
        op if target is not None else None,
        target_label=target_label,
        notes=notes(c),
    )


def count_pack_files(rels: list[str]) -> tuple[int, int]:
    """(pack + index files, other files) among store-relative paths."""
    packs = sum(1 for r in rels if _is_pack_file(r))
    return packs, len(rels) - packs


__all__ = [
    "GB",
    "OURS",
    "PLACES",
    "REFERENCE",
    "ScaleBench",
    "age_tree",
    "count_files",
    "count_pack_files",
    "dir_bytes",
    "edit_in_place",
    "find",
    "run_scale",
    "speed_row",
    "value_row",
    "write_checkpoint",
    "write_text_tree",
]
