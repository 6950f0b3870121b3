"""A small shared thread pool for work that releases the GIL (zstd, hashing, I/O)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

A = TypeVar("A")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="objstore")
        return _pool


def bounded_map(fn: Callable[[A], R], items: Iterable[A], window: int | None = None) -> Iterator[R]:
    """Like ``map`` on the pool, in order, with at most ``window`` items in flight.

    The bound keeps memory flat however many items (or bytes) stream through.
    """
    window = window or 2 * workers()
    ex = pool()
    inflight: deque[Future[R]] = deque()
    try:
        for item in items:
            inflight.append(ex.submit(fn, item))
            if len(inflight) >= window:
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()
    finally:
        for f in inflight:
            f.cancel()


def read_ahead(items: Iterable[A], depth: int = 8) -> Iterator[A]:
    """Iterate ``items`` on a helper thread, up to ``depth`` ahead of the consumer.

    For a network stream consumed by disk writes: receiving the next piece
    overlaps handling this one (both release the GIL). An error on the
    helper thread is raised here, in order.
    """
    import queue

    q: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message: tuple[int, object]) -> bool:
        while not stop.is_set():  # never block forever on a consumer that left
            try:
                q.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in items:
                if not offer((0, item)):
                    return
            offer((1, None))
        except BaseException as exc:
            offer((2, exc))

    thread = threading.Thread(target=pump, name="objstore-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == 0:
                yield value  # type: ignore[misc]
            elif kind == 1:
                return
            else:
                raise value  # type: ignore[misc]
    finally:
        stop.set()
