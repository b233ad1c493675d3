"""The real entry points as separate processes: migrate, gateway and worker with only the
environment set, an independent (Node.js) client speaking the seed protocol, config errors,
and SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from arcyou_trio.client import ChatClient
from tests.conftest import make_room
from tests.helpers import free_port, wait_healthy

HERE = Path(__file__).parent
PY = sys.executable


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def base_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "PYTHONPATH"}}
    return {**keep, **extra}


@contextmanager
def service(module: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [PY, "-m", module], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    return proc.returncode, out


@pytest.mark.parametrize("mode", ["global", "perconv"])
async def test_processes_from_env_serve_the_seed_protocol(
    database_url: str, redis_url: str, mode: str
) -> None:
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PORT=str(port),
        JWT_PUBLIC_KEY="dev-placeholder",
        PUBSUB_MODE=mode,
    )
    migrated = await trio.to_thread.run_sync(lambda: run_cli("arcyou_trio.migrate", env=env))
    assert migrated.returncode == 0, migrated.stderr
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(database_url, alice, bob)
    with service("arcyou_trio.gateway", env) as gateway, service("arcyou_trio.worker", env) as wk:
        await wait_healthy(port)
        url = f"ws://127.0.0.1:{port}"
        async with ChatClient.connect(url) as b:
            await b.auth(bob)
            assert (await b.join(room))["success"] is True
            node = shutil.which("node")
            if node is not None:
                script = str(HERE / "clients" / "seed_quicktest.mjs")
                result = await trio.to_thread.run_sync(
                    lambda: subprocess.run(
                        [node, "--experimental-websocket", script, url, str(alice), str(room)],
                        capture_output=True,
                        text=True,
                        timeout=30,
                        check=False,
                    )
                )
                assert result.returncode == 0, result.stdout + result.stderr
                assert "OK" in result.stdout
            else:
                async with ChatClient.connect(url) as a:
                    await a.auth(alice)
                    await a.join(room)
                    assert (await a.send(room, "hello from python"))["success"] is True
            # The other member got the independent client's message live.
            with trio.fail_after(10):
                event = await b.next_event()
            assert event["source"] == "live" and event["message"]["user_id"] == str(alice)
        code, out = stop(gateway)
        assert code == 0, out
        assert "Traceback" not in out
        code, out = stop(wk)
        assert code == 0, out
        assert "Traceback" not in out


@pytest.mark.parametrize(
    ("module", "env", "variable"),
    [
        ("arcyou_trio.gateway", {"PORT": "eighty"}, "PORT"),
        (
            "arcyou_trio.gateway",
            {"JWT_PUBLIC_KEY": "dev-placeholder", "MAX_BODY_BYTES": "0"},
            "MAX_BODY_BYTES",
        ),
        ("arcyou_trio.gateway", {}, "JWT_PUBLIC_KEY"),
        ("arcyou_trio.gateway", {"JWT_PUBLIC_KEY": "not a pem"}, "JWT_PUBLIC_KEY"),
        ("arcyou_trio.worker", {"PUBSUB_MODE": "sometimes"}, "PUBSUB_MODE"),
        ("arcyou_trio.worker", {"RL_REFILL_MS": "-5"}, "RL_REFILL_MS"),
        ("arcyou_trio.worker", {"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ("arcyou_trio.migrate", {"BACKOFF_BASE_MS": "1.5"}, "BACKOFF_BASE_MS"),
    ],
)
async def test_bad_configuration_exits_2_with_one_line(
    module: str, env: dict[str, str], variable: str
) -> None:
    result = await trio.to_thread.run_sync(lambda: run_cli(module, env=base_env(**env)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


async def test_migrate_reports_unreachable_database_in_one_line() -> None:
    env = base_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    result = await trio.to_thread.run_sync(lambda: run_cli("arcyou_trio.migrate", env=env))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach PostgreSQL" in result.stderr


async def test_console_script_lists_subcommands() -> None:
    result = await trio.to_thread.run_sync(
        lambda: run_cli("arcyou_trio.cli", "--help", env=base_env())
    )
    assert result.returncode == 0
    for sub in ("gateway", "worker", "migrate"):
        assert sub in result.stdout
