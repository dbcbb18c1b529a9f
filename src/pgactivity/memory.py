"""Memory back to the operating system after many clients leave.

Each stream allocates a few kilobytes (uvicorn's protocol, the request, the
session, its tasks). When thousands of clients leave, CPython frees those
objects, but glibc's allocator keeps the pages it got for them, and the
server's RSS stays where the crowd left it. `malloc_trim(0)` hands the free
pages back. It runs once the number of open streams has fallen to half its
peak since the last trim (a reconnect storm that is over, a deploy elsewhere),
a second later so that one trim covers a whole wave of departures. Elsewhere
than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


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
    def __init__(self, streams: Callable[[], int], *, delay: float = 1.0, minimum_peak: int = 200) -> None:
        self._streams = streams
        self.delay = delay
        self.minimum_peak = minimum_peak  # below this, nothing worth giving back
        self._peak = 0
        self._pending: asyncio.TimerHandle | None = None
        self._trim = _load_trim()
        self.trims = 0

    def joined(self) -> None:
        self._peak = max(self._peak, self._streams())

    def left(self) -> None:
        if self._trim is None or self._pending is not None or self._peak < self.minimum_peak:
            return
        if self._streams() <= self._peak // 2:
            self._pending = asyncio.get_running_loop().call_later(self.delay, self._run)

    def _run(self) -> None:
        self._pending = None
        self._peak = self._streams()
        if self._trim is not None:
            self._trim(0)
            self.trims += 1
            logger.debug("gave free memory back to the system", extra={"streams": self._peak})
