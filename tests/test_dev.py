"""``arcyou-trio dev`` as a newcomer runs it: local servers, banner, the client CLI, Ctrl-C,
data surviving a restart, ``--fresh``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import trio

from tests.helpers import free_port

PY = sys.executable
BANNER_END = "Ctrl-C stops everything."


def dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "PYTHONPATH"}}
    env["OUTBOX_POLL_MS"] = "50"
    return env


class Dev:
    """A running ``arcyou-trio dev`` process and what its banner said."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.api_port = free_port()
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "arcyou_trio.cli",
                "dev",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--api-port",
                str(self.api_port),
                *extra,
            ],
            env=dev_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []

    def read_banner(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if BANNER_END in line:
                return "".join(self.output)
        raise AssertionError("dev exited before its banner:\n" + "".join(self.output))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.output) + out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "arcyou_trio.cli", *args],
        env=dev_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def client(url: str, room: str, user: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PY,
            "-m",
            "arcyou_trio.cli",
            "client",
            "--url",
            url,
            "--room",
            room,
            "--user",
            user,
            "--send",
            text,
        ],
        env=dev_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def children_of(pid: int) -> dict[psutil.Process, str]:
    """The running descendants of ``pid`` and their names."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            found[child] = child.name()
    return found


@pytest.mark.timeout(240)
async def test_dev_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    def first_run() -> tuple[str, dict[psutil.Process, str], tuple[int, str]]:
        dev = Dev(data_dir)
        try:
            banner = dev.read_banner()
            servers = children_of(dev.proc.pid)
            url = re.search(r"WebSocket\s+(\S+)", banner)
            room = re.search(r"Sample room ([0-9a-f-]{36})", banner)
            users = re.search(r"members ([0-9a-f-]{36}), ([0-9a-f-]{36})", banner)
            assert url and room and users, banner
            sent = client(url[1], room[1], users[1], "hello from the dev test")
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "[live]" in sent.stdout and "hello from the dev test" in sent.stdout
            # The HTTP API runs too, at the URL the banner prints: the CLI reads the history.
            api = re.search(r"HTTP API\s+(\S+)", banner)
            assert api and api[1] == f"http://127.0.0.1:{dev.api_port}", banner
            history = cli("history", room[1], "--api", api[1], "--user", users[1])
            assert history.returncode == 0, history.stdout + history.stderr
            assert "hello from the dev test" in history.stdout
            return room[1], servers, dev.stop()
        finally:
            if dev.proc.poll() is None:
                dev.proc.kill()

    room, servers, (code, out) = await trio.to_thread.run_sync(first_run)
    assert code == 0, out
    assert "Traceback" not in out
    assert set(servers.values()) >= {"postgres", "redis-server"}
    # Ctrl-C stopped the local servers too: nothing is left running.
    assert not [name for p, name in servers.items() if p.is_running()]

    def second_run(*extra: str) -> str:
        dev = Dev(data_dir, *extra)
        try:
            banner = dev.read_banner()
            room_now = re.search(r"Sample room ([0-9a-f-]{36})", banner)
            assert room_now
            users = re.search(r"members ([0-9a-f-]{36}), ([0-9a-f-]{36})", banner)
            assert users
            result = client(f"ws://127.0.0.1:{dev.port}", room_now[1], users[2], "again")
            assert result.returncode == 0, result.stdout + result.stderr
            dev.stop()
            return room_now[1] + "\n" + result.stdout
        finally:
            if dev.proc.poll() is None:
                dev.proc.kill()

    # Data survives a restart: same sample room, and the first message comes back as backfill.
    again = await trio.to_thread.run_sync(second_run)
    assert again.startswith(room)
    assert "[backfill]" in again and "hello from the dev test" in again
    # --fresh starts empty: a new sample room, no backfill.
    fresh = await trio.to_thread.run_sync(second_run, "--fresh")
    assert not fresh.startswith(room)
    assert "[backfill]" not in fresh


async def test_dev_with_bad_setting_exits_2(tmp_path: Path) -> None:
    env = {
        **dev_env(),
        "RL_REFILL_MS": "soon",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [PY, "-m", "arcyou_trio.cli", "dev", "--data-dir", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert result.returncode == 2
    assert "RL_REFILL_MS" in result.stderr and "Traceback" not in result.stderr
