"""Small helpers shared by the tests."""

from __future__ import annotations

import subprocess

from pgactivity.embedded import bin_dir


def psql_binary() -> str:
    return str(bin_dir() / "psql")


def run_psql(url: str, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run SQL through plain psql, as a non-Python writer would."""
    return subprocess.run(
        [psql_binary(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=sql,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )
