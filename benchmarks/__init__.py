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
    "peers",
)
"""Every benchmark, in the order they run; module ``benchmarks.bench_<name>``."""

__all__ = ["NAMES"]
