"""Actors: spawned processes that the coordinator drives over a pipe.

An actor sends ("ready", info) when it is set up, then answers commands
(a command's reply is tagged with the command's name); an exception inside it
comes back as ("error", repr). The writer and the SSE client fleets are actors;
the coordinator only starts and stops them and reads /proc, so its own work
never lands in a measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

MP = multiprocessing.get_context("spawn")


class Actor:
    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def expect(self, kind: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no {kind!r} from {self.proc.name} after {timeout}s")
        got, payload = self.conn.recv()
        if got == "error":
            raise RuntimeError(f"{self.proc.name} failed: {payload}")
        if got != kind:
            raise RuntimeError(f"expected {kind!r}, got {got!r}")
        return payload

    def send(self, command: str) -> None:
        self.conn.send(command)

    def ask(self, command: str, timeout: float = 120) -> Any:
        self.conn.send(command)
        return self.expect(command, timeout)

    def join(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_actor(conn: Connection, body: Callable[[], None]) -> None:
    """The body of an actor process: any exception is reported to the coordinator, then raised."""
    try:
        body()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
        raise


def uvloop_runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


async def commands(conn: Connection) -> asyncio.Queue[str]:
    """The coordinator's commands as an asyncio queue; a closed pipe reads as "stop"."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def readable() -> None:
        try:
            queue.put_nowait(conn.recv())
        except EOFError:
            loop.remove_reader(conn.fileno())
            queue.put_nowait("stop")

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # the event loop made it non-blocking; replies can be large
    return queue
