"""`pgactivity tail` as a subprocess against the real server, with psql writing the events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.conftest import SECRET, ServerProcess, pgactivity_command
from tests.helpers import run_psql


@dataclass
class TailProcess:
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            reader = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            reader.start()
            self.readers.append(reader)

    @staticmethod
    def _read(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.stdout):
                return
            time.sleep(0.05)
        raise TimeoutError("tail did not print what was expected:\n" + "\n".join([*self.stdout, "--", *self.stderr]))

    def wait_exit(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        for reader in self.readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait_exit()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.stdout if text in line]


@pytest.fixture
def run_tail() -> Iterator[Callable[..., TailProcess]]:
    started: list[TailProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> TailProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_") and k != "DATABASE_URL"}
        proc = subprocess.Popen(
            [*pgactivity_command(), "tail", *args],
            env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        tail = TailProcess(proc)
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.close()


def test_tail_prints_events_written_by_psql(server: ServerProcess, run_tail: Callable[..., TailProcess]) -> None:
    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'planner');")
    tail = run_tail("--url", server.base_url, "--token", server.token("org-a"))
    token_env = {"PGACTIVITY_TOKEN": server.token("org-a")}
    planners = run_tail("--url", server.base_url, "--json", "--agent-type", "planner", env=token_env)
    tail.wait_for(lambda out: any("snapshot" in line for line in out))
    assert "org-a: 1 activity (1 running)" in tail.lines_with("snapshot")[0]
    planners.wait_for(lambda out: len(out) >= 1)

    run_psql(
        server.db_url,
        r"""
        SELECT agent_activity_start(organization_id => 'org-b', agent_type => 'intruder');
        SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor',
               agent_name => E'evil\u001b[31mred', session_id => 'ses-1');
        SELECT agent_activity_progress(id, message => 'Analyzing codebase...', progress => 30)
          FROM agent_activities WHERE agent_type = 'executor';
        SELECT agent_activity_complete(id) FROM agent_activities WHERE agent_type = 'executor';
        SELECT agent_activity_fail(id, error => 'boom') FROM agent_activities WHERE agent_type = 'planner';
        """,
    )
    tail.wait_for(lambda out: any("failed" in line and "boom" in line for line in out))
    assert re.search(r"planner +running", tail.stdout[1])  # the snapshot lists what is running
    events = tail.stdout[2:]
    assert [re.findall(r"#(\d+) ", line) for line in events] == [["2"], ["3"], ["4"], ["5"]]
    started, progress, completed, failed = events
    assert "started" in started
    assert "executor/evil\\x1b[31mred" in started  # escaped, never a raw terminal escape
    assert "session ses-1" in started
    assert re.search(r"progress .* running 30% +Analyzing codebase\.\.\.$", progress)
    assert "completed" in completed
    assert re.search(r"failed .*planner +failed +boom$", failed)
    assert not any("\x1b" in line or "intruder" in line for line in tail.stdout)

    planners.wait_for(lambda out: len(out) >= 2)
    assert [json.loads(line)["type"] for line in planners.stdout] == ["snapshot", "agent_failed"]
    assert json.loads(planners.stdout[1])["agentType"] == "planner"

    rejected = run_tail("--url", server.base_url, "--token", "not-a-jwt")
    assert rejected.wait_exit() == 2
    assert any("HTTP 401" in line for line in rejected.stderr)


def test_tail_reconnects_with_last_event_id_across_a_restart(
    server: ServerProcess, run_tail: Callable[..., TailProcess]
) -> None:
    tail = run_tail("--url", server.base_url, "--org", "org-a", env={"PGACTIVITY_JWT_SECRET": SECRET})
    tail.wait_for(lambda out: any("snapshot" in line for line in out))
    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor');")
    tail.wait_for(lambda out: any("#1 " in line for line in out))

    server.stop()
    run_psql(server.db_url, "SELECT agent_activity_progress(id, progress => 50) FROM agent_activities;")  # missed
    server.start()
    tail.wait_for(lambda out: any("#2 " in line for line in out), timeout=40)
    run_psql(server.db_url, "SELECT agent_activity_complete(id) FROM agent_activities;")
    tail.wait_for(lambda out: any("#3 " in line for line in out))

    assert len(tail.lines_with("snapshot")) == 1  # the reconnect replayed, it did not start over
    assert [len(tail.lines_with(f"#{seq} ")) for seq in (1, 2, 3)] == [1, 1, 1]
    assert "running 50%" in tail.lines_with("#2 ")[0]
    assert any("resuming after #1" in line for line in tail.stderr)
    assert any("the server ended the stream: shutdown" in line for line in tail.stderr), tail.stderr
