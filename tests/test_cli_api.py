"""The CLI's commands on the HTTP API, run as a user runs them: rooms, members, history."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest
import trio

from arcyou_trio.config import Settings
from arcyou_trio.store import Sent, Store
from tests.api_helpers import running_api
from tests.helpers import send_one
from tests.test_entrypoints import base_env

pytestmark = pytest.mark.timeout(120)


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "arcyou_trio.cli", *args],
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )


async def test_rooms_members_and_history_from_the_cli(settings: Settings, store: Store) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with running_api(settings, store) as api:
        created = await cli(
            "rooms", "create", "team", "--member", str(bob), "--api", api, "--user", str(alice)
        )
        assert created.returncode == 0, created.stderr
        match = re.search(r"created room ([0-9a-f-]{36})", created.stdout)
        assert match, created.stdout
        room = match[1]
        sent = await send_one(store, room_id=uuid.UUID(room), user_id=bob, content={"text": "hey"})
        assert isinstance(sent, Sent)
        listed = await cli("rooms", "list", "--api", api, "--user", str(bob))
        assert listed.returncode == 0 and f"{room}  team  [participant]" in listed.stdout
        as_json = await cli("rooms", "list", "--api", api, "--user", str(alice), "--json")
        assert json.loads(as_json.stdout)["items"][0]["unread_count"] == 1
        carol = uuid.uuid4()
        added = await cli(
            "members",
            "add",
            room,
            str(carol),
            "--role",
            "manager",
            "--api",
            api,
            "--user",
            str(alice),
        )
        assert added.returncode == 0 and "as manager" in added.stdout
        # bob is a participant: he may not remove alice. The API's reason, exit 1.
        refused = await cli("members", "remove", room, str(alice), "--api", api, "--user", str(bob))
        assert refused.returncode == 1
        assert "refused (403)" in refused.stderr and "owner role" in refused.stderr
        left = await cli("members", "remove", room, str(bob), "--api", api, "--user", str(bob))
        assert left.returncode == 0, left.stderr
        history = await cli("history", room, "--api", api, "--user", str(alice))
        assert history.returncode == 0
        lines = history.stdout.splitlines()
        assert lines[0].startswith("#1 ") and lines[0].endswith(": hey")
        assert "member.added" in lines[1] and "member.removed" in lines[2]
        gone = await cli("history", room, "--api", api, "--user", str(bob))
        assert gone.returncode == 1 and "refused (404)" in gone.stderr


async def test_cli_api_startup_errors() -> None:
    user = str(uuid.uuid4())
    down = await cli("rooms", "list", "--api", "http://127.0.0.1:1", "--user", user)
    assert down.returncode == 2 and "cannot reach the API" in down.stderr
    assert "Traceback" not in down.stderr
    bad = await cli("rooms", "list", "--api", "ftp://x", "--user", user)
    assert bad.returncode == 2 and "--api" in bad.stderr
