"""Ctrl-C in a writing command: say in one line what was kept, exit 130.

An interrupted snapshot drops the pack it was filling, but packs it had
already published stay (each is complete and verified). Nothing refers to
them yet: running the same command again stores the same chunks and finds
them there, so it skips writing them; ``gc`` frees them once they are older
than its grace period if the command is not run again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .packs import index_path, pack_path

if TYPE_CHECKING:
    from .repo import Repository

EXIT_INTERRUPTED = 130
"""128 + SIGINT: what shells report for a command stopped by Ctrl-C."""


@dataclass(frozen=True)
class Kept:
    """Packs published since a point in time (by this command, or a concurrent writer)."""

    packs: int
    bytes: int


def packs_since(repo: Repository, before: set[str]) -> Kept:
    """The packs of ``repo`` not in ``before``, and their bytes on storage."""
    repo.odb.refresh()
    new = [name for name in repo.odb.pack_names if name not in before]
    size = 0
    for name in new:
        for path in (pack_path(name), index_path(name)):
            try:
                size += repo.storage.size(path)
            except (FileNotFoundError, OSError):
                pass  # gone meanwhile (a repack): nothing to report for it
    return Kept(len(new), size)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def describe(kept: Kept, prog: str, rerun: str, gc_command: str) -> str:
    """The one line telling the user what an interruption left behind."""
    if not kept.packs:
        return f"{prog}: interrupted; nothing was stored"
    packs = "1 pack" if kept.packs == 1 else f"{kept.packs} packs"
    return (
        f"{prog}: interrupted; kept {packs} ({_mib(kept.bytes)}) already written: {rerun} again reuses them, "
        f"or `{gc_command}` frees them (after its 1 h grace period; `--grace 0` when nothing else writes to the store)"
    )


@contextmanager
def interruptible(repo: Repository, prog: str, rerun: str, gc_command: str) -> Iterator[None]:
    """Turn Ctrl-C (``KeyboardInterrupt``) inside the block into the report line on stderr and exit 130."""
    repo.odb.refresh()
    before = set(repo.odb.pack_names)
    try:
        yield
    except KeyboardInterrupt:
        try:
            line = describe(packs_since(repo, before), prog, rerun, gc_command)
        except Exception:  # the store itself is unreadable: still leave as interrupted
            line = f"{prog}: interrupted"
        print(line, file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["EXIT_INTERRUPTED", "Kept", "describe", "interruptible", "packs_since"]
