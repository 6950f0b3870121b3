"""objstore benchmark suite: ``python -m benchmarks [--quick] [--only NAME]``.

Each ``bench_<name>`` module measures one workload from the performance
issue and returns :class:`benchmarks.common.Row` results; ``__main__`` runs
the selected ones in a temp directory and prints one table. See
``benchmarks/README.md``.

This file stays import-light on purpose: ``benchmarks._child`` (the fresh
processes used for memory and cold-start timings) lives in this package and
must not pull in anything beyond what it measures.
"""

from __future__ import annotations

NAMES = (
    "edit_dedup",
    "ten_versions",
    "small_files",
    "ingest",
    "resnapshot_unchanged",
    "memory",
    "chunk_size",
    "remote",
    "server",
    "peers",
    "large_file",
    "checkpoint",
    "many_files",
    "store_files",
    "startup",
    "dashboard",
)
"""Every benchmark, in the order they run; module ``benchmarks.bench_<name>``."""

GROUPS = {"scale": ("large_file", "checkpoint", "many_files", "store_files", "startup")}
"""Names ``--only`` accepts for several benchmarks at once (``scale``: the targets of issue 17)."""

__all__ = ["GROUPS", "NAMES"]
