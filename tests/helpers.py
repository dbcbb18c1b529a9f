"""Small helpers shared by the tests."""

from __future__ import annotations

import subprocess

from pgactivity.embedded import bin_dir

# Lets the guard trigger store out-of-range timestamps, as writes before migration
# 20261201000002 could: for tests of rows from before the limits.
ALLOW_OUT_OF_RANGE_TIMESTAMPS = (
    "CREATE OR REPLACE FUNCTION agent_activities_check_violation(a agent_activities) RETURNS void"
    " LANGUAGE plpgsql AS 'BEGIN END';"
)


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
