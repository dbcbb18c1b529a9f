"""Memory back to the operating system after many clients leave.

Each stream allocates a few kilobytes (uvicorn's protocol, the request, the
session, its tasks). When thousands of clients leave, CPython frees those
objects, but the memory stays with the process unless two things hold:

- the allocator must be able to give back pages, not only whole arenas.
  CPython's own small-object allocator returns a 1 MiB arena only when every
  object in it is gone, and a few long-lived objects made during a crowd (log
  lines being written, a library's caches) pin most of them: 5000 streams left
  RSS +93 % over its start. `serve` therefore runs with PYTHONMALLOC=malloc
  (glibc's allocator, page by page: +21 %) unless PYTHONMALLOC is set
  (`glibc_malloc_argv`, used by the CLI, which re-executes itself once).
- glibc must be told to give back what is free: `malloc_trim(0)`, once the
  number of open streams has fallen to half its peak since the last trim (a
  reconnect storm that is over, a deploy elsewhere), a second later so that one
  trim covers a whole wave of departures.

Elsewhere than glibc on Linux, both do nothing.

And CPython's cyclic garbage collector must not stall the streams: `settle_gc`,
once the server has started, freezes what start-up made (modules, the app and
its routes, the pools: about 80,000 objects that live as long as the process)
out of every later collection, and collects the youngest generation every
GC_THRESHOLD0 allocations instead of every 700. With 1000 streams, a full
collection otherwise walked everything and paused the event loop, and with it
every stream, for 60 to 180 ms (measured with gc.callbacks in the server, 1000
clients at 1000 events/s); the young collections ran a hundred times a second.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import platform
import sys
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)


def glibc_malloc_argv(environ: Mapping[str, str]) -> list[str] | None:
    """The command line to re-execute this process with PYTHONMALLOC=malloc, or None when it
    should go on as it is (PYTHONMALLOC set, not glibc on Linux)."""
    if "PYTHONMALLOC" in environ or not sys.platform.startswith("linux"):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    return [sys.executable, *sys.orig_argv[1:]]


def reexec_with_glibc_malloc() -> None:
    """Become the same command with PYTHONMALLOC=malloc (same pid); on any failure, go on as is."""
    argv = glibc_malloc_argv(os.environ)
    if argv is None:
        return
    try:
        os.execve(argv[0], argv, {**os.environ, "PYTHONMALLOC": "malloc"})
    except OSError as exc:  # pragma: no cover - an odd interpreter path
        logger.debug("cannot re-execute with PYTHONMALLOC=malloc: %s", exc)


GC_THRESHOLD0 = 10_000


def settle_gc(threshold0: int = GC_THRESHOLD0) -> None:
    """Call once, when the server has started (see the top of this module)."""
    gc.collect()
    gc.freeze()
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(threshold0, threshold1, threshold2)
    logger.info(
        "garbage collector settled",
        extra={"gc_frozen_objects": gc.get_freeze_count(), "gc_threshold0": threshold0},
    )


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Trimmer:
    def __init__(self, streams: Callable[[], int], *, delay: float = 1.0, minimum: int = 200) -> None:
        self._streams = streams
        self.delay = delay
        self.minimum = minimum  # departures worth a trim (below this, nothing worth giving back)
        self._peak = 0  # open streams at most since the last trim
        self._left = 0  # departures since the last trim
        self._pending: asyncio.TimerHandle | None = None
        self._trim = _load_trim()
        self.trims = 0

    def joined(self) -> None:
        self._peak = max(self._peak, self._streams())

    def left(self) -> None:
        self._left += 1
        if self._trim is None or self._pending is not None or self._left < self.minimum:
            return
        streams = self._streams()
        if streams <= self._peak // 2 or streams == 0:  # half of a crowd gone, or the last of it
            self._pending = asyncio.get_running_loop().call_later(self.delay, self._run)

    def _run(self) -> None:
        self._pending = None
        self._peak = self._streams()
        self._left = 0
        if self._trim is not None:
            gc.collect()  # what departed streams left in reference cycles (tasks, exceptions) first
            self._trim(0)
            self.trims += 1
            logger.debug("gave free memory back to the system", extra={"streams": self._peak})
