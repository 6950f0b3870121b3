"""Progress bars for long operations: tqdm on a terminal, silent otherwise.

Long operations take a ``progress`` callback, ``progress(n_bytes)``. Where an
operation learns its total only once it has started (fsck, checkout), it
calls :func:`announce_total`, which tells a bar that accepts it (has a
``set_total`` method) and does nothing for a plain function.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[int], None]


def announce_total(progress: Progress | None, total: int) -> None:
    """Tell ``progress`` how many bytes the operation will report in all, if it wants to know."""
    setter = getattr(progress, "set_total", None)
    if setter is not None:
        setter(total)


def wants_total(progress: Progress | None) -> bool:
    """True when ``progress`` would use a total (worth computing one only then)."""
    return hasattr(progress, "set_total")


class ByteBar:
    """A tqdm bar in bytes (binary units), on stderr, left visible when done."""

    def __init__(self, desc: str, total: int | None = None) -> None:
        from tqdm import tqdm

        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        # A terminal that reports no width (some ptys) would get an empty bar.
        width: dict[str, Any] = {"dynamic_ncols": True} if columns else {"ncols": 80, "nrows": 24}
        self._bar: Any = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=True,
            file=sys.stderr,
            **width,
        )

    def __call__(self, n: int) -> None:
        self._bar.update(n)

    def set_total(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _silent(n: int) -> None:
    pass


@contextmanager
def byte_progress(
    desc: str, total: int | Callable[[], int] | None = None, *, enabled: bool | None = None
) -> Iterator[Progress]:
    """Yield a ``progress(n_bytes)`` callback backed by a :class:`ByteBar`.

    ``enabled=None`` shows the bar only when stderr is a terminal;
    ``total`` may be a function, called only when a bar is shown (a total
    can cost a walk over the files).
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _silent
        return
    bar = ByteBar(desc, total() if callable(total) else total)
    try:
        yield bar
    finally:
        bar.close()
