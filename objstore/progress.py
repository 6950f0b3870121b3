"""Progress bars for long operations: tqdm on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def byte_progress(desc: str, total: int | None = None, *, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield an ``update(n_bytes)`` callback backed by a tqdm bar.

    ``enabled=None`` shows the bar only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:
        yield bar.update
