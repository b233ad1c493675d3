"""A newcomer's mistakes, as separate processes: every startup problem of every entry point is
one line on stderr naming what is wrong (the variable, the port, the URL) and what to do, exit
code 2, no traceback. (Bad settings of each entry point: tests/test_entrypoints.py.)
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from tests.helpers import free_port
from tests.test_entrypoints import base_env, run_cli


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def closed_port() -> int:
    return free_port()  # nothing listens there


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def run(*args: str, env: dict[str, str]) -> str:
    # INFO and WARNING lines (e.g. "dev-placeholder accepts any UUID") are not the error; an
    # ERROR record or a traceback would be a second line and fail the test.
    env = {"LOG_LEVEL": "ERROR", **env}
    result = await trio.to_thread.run_sync(lambda: run_cli(*args, env=env, timeout=30))
    return one_line(result)


def gateway_env(database_url: str, redis_url: str, port: int) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        HOST="127.0.0.1",
        PORT=str(port),
        JWT_PUBLIC_KEY="dev-placeholder",
    )


async def test_gateway_on_a_taken_port(database_url: str, redis_url: str) -> None:
    with taken_port() as port:
        env = gateway_env(database_url, redis_url, port)
        line = await run("arcyou_trio.gateway", env=env)
    assert f"127.0.0.1:{port}" in line and "already in use" in line and "PORT" in line


async def test_console_script_gateway_on_a_taken_port(database_url: str, redis_url: str) -> None:
    with taken_port() as port:
        env = gateway_env(database_url, redis_url, port)
        line = await run("arcyou_trio", "gateway", env=env)
    assert line.startswith("arcyou-trio gateway:") and str(port) in line


async def test_migrate_with_database_down_names_the_address() -> None:
    port = closed_port()
    env = base_env(DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{port}/x")
    line = await run("arcyou_trio", "migrate", env=env)
    assert f"127.0.0.1:{port}" in line and "DATABASE_URL" in line
    assert "secret" not in line


async def test_dev_on_a_taken_port(database_url: str, redis_url: str, tmp_path: Path) -> None:
    with taken_port() as port:
        env = base_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
        line = await run(
            "arcyou_trio", "dev", "--data-dir", str(tmp_path), "--port", str(port), env=env
        )
    assert str(port) in line and "already in use" in line


async def test_dev_with_database_down(tmp_path: Path) -> None:
    env = base_env(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_port()}/x",
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
    )
    line = await run("arcyou_trio", "dev", "--data-dir", str(tmp_path), env=env)
    assert "cannot reach PostgreSQL" in line and "DATABASE_URL" in line


async def test_client_refuses_a_url_that_is_not_websocket() -> None:
    for url in ("http://127.0.0.1:8080", "nonsense", "ws://127.0.0.1:port"):
        line = await run(
            "arcyou_trio", "client", "--url", url, "--user", "u", "--room", "r", env=base_env()
        )
        assert "--url must be a ws:// or wss:// URL" in line and repr(url) in line


async def test_client_with_no_gateway_there() -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    line = await run(
        "arcyou_trio",
        "client",
        *("--url", url, "--user", "u", "--room", "r", "--send", "hi"),
        env=base_env(),
    )
    assert f"cannot connect to {url}" in line


async def test_module_is_the_cli() -> None:
    result = await trio.to_thread.run_sync(lambda: run_cli("arcyou_trio", "--help", env=base_env()))
    assert result.returncode == 0, result.stderr
    for sub in ("gateway", "worker", "migrate", "dev", "client"):
        assert sub in result.stdout
