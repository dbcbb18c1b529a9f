"""The JavaScript client (clients/js) built and tested from the Python suite.

`npm ci` (when node_modules is missing or older than the lock file), then the package's own
tests (`npm test`: the parser on every split of its input, the store, the stream's rules, and the
client against a real `pgactivity serve` that the JS tests start and restart themselves on the
database given here, one of them with a small snapshot budget so that activities come
truncated), then a check that the committed dashboard bundle is what the build makes.
Skipped only where Node.js is missing (CI installs it: .ci/system-packages nodejs npm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import SECRET, pgactivity_command
from tests.helpers import psql_binary

JS = Path(__file__).resolve().parents[2] / "clients" / "js"
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="Node.js and npm are not installed (apt-get install nodejs npm)"
)


def npm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    return subprocess.run(
        [NPM, *args],
        cwd=JS,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def node_modules() -> None:
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        proc = npm("ci", "--no-audit", "--no-fund")
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_js_client_tests_pass_against_the_real_server(node_modules: None, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")}
    env |= {
        "PGACTIVITY_TEST_DATABASE_URL": db_url,
        "PGACTIVITY_TEST_COMMAND": json.dumps(pgactivity_command()),
        "PGACTIVITY_TEST_JWT_SECRET": SECRET,
        "PGACTIVITY_TEST_PSQL": psql_binary(),
    }
    proc = npm("test", env=env)
    output = proc.stdout + proc.stderr
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.M)}
    report = _failures(output) + f"\ncounts: {counts}"
    assert proc.returncode == 0, report
    assert counts.get("fail") == 0, report
    assert counts.get("skipped") == 0, report  # the server tests ran, not skipped
    assert counts.get("pass", 0) >= 25, report  # a run that ran nothing fails
    print(f"JS tests: {counts}")


def _failures(output: str) -> str:
    """The TAP blocks of failed tests (and the compiler's errors), not 30 pages of passes."""
    blocks = re.findall(r"^ *not ok .*?(?=^ *(?:ok|not ok) |\Z)", output, re.M | re.S)
    return "\n".join(blocks)[-20000:] if blocks else output[-20000:]


def test_committed_dashboard_bundle_is_what_the_build_produces(node_modules: None) -> None:
    proc = npm("run", "--silent", "check:dashboard", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
