"""Length-framed messages over a pipe between this process and a forked helper child.

A frame is an 8-byte little-endian length and that many bytes; a frame of
length 0 marks the end. Ends are marked in the stream, not by closing the
pipe: a child another thread forks meanwhile holds copies of the pipe's
ends until it exits, so EOF may come late (it still means the writer died).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct

FRAME = struct.Struct("<Q")
END = FRAME.pack(0)
PIPE_SIZE = 1 << 20
"""Bytes a helper pipe is asked to hold (Linux' default is 64 KiB)."""


def pipe() -> tuple[int, int]:
    """``os.pipe()`` with room for :data:`PIPE_SIZE` bytes where the kernel allows it."""
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]
    return r, w


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` (``os.write`` may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send(fd: int, payload: bytes) -> None:
    """One frame holding ``payload`` (not empty: an empty frame is :data:`END`)."""
    write_all(fd, FRAME.pack(len(payload)) + payload)


def read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from a blocking pipe; None if it closes first."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = os.read(fd, min(n - got, 1 << 20))
        if not part:
            return None
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class FrameReader:
    """Frames from a pipe set non-blocking: :meth:`poll` takes what has arrived
    without waiting (a writer blocked on a full pipe goes on meanwhile),
    :meth:`wait` until at least one more frame or the end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._buf = bytearray()
        self.ended = False
        """The end frame arrived."""
        self.closed = False
        """The pipe closed without one (the writer died)."""

    @property
    def done(self) -> bool:
        return self.ended or self.closed

    def poll(self) -> list[bytes]:
        """The complete frames that have arrived; never blocks."""
        while not self.done:
            try:
                part = os.read(self.fd, 1 << 22)
            except BlockingIOError:
                break
            except OSError:
                self.closed = True
                break
            if not part:
                self.closed = True
                break
            self._buf += part
        return self._frames()

    def wait(self) -> list[bytes]:
        """At least one frame, unless the stream is over (then what is left, maybe nothing)."""
        while True:
            frames = self.poll()
            if frames or self.done:
                return frames
            select.select([self.fd], [], [])

    def _frames(self) -> list[bytes]:
        buf = self._buf
        out: list[bytes] = []
        at = 0
        while not self.ended and len(buf) - at >= FRAME.size:
            (n,) = FRAME.unpack_from(buf, at)
            if n == 0:
                self.ended = True
                at += FRAME.size
                break
            if len(buf) - at - FRAME.size < n:
                break
            out.append(bytes(buf[at + FRAME.size : at + FRAME.size + n]))
            at += FRAME.size + n
        if at:
            del buf[:at]
        return out
