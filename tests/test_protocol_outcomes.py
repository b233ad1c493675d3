"""What a refused or failed request tells the client: exact strings and reason codes (pure)."""

from __future__ import annotations

import uuid

import pytest

from arcyou_trio.errors import (
    BusTimeout,
    BusUnavailable,
    MigrationError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from arcyou_trio.protocol import outcomes
from arcyou_trio.protocol.messages import error_reply
from arcyou_trio.protocol.outcomes import Refusal

ROOM = uuid.UUID("00000000-0000-0000-0000-000000000001")


def test_refusals_become_the_wire_errors() -> None:
    assert error_reply(outcomes.refused("send", Refusal.NOT_MEMBER, temp_id="t", room_id=ROOM)) == {
        "op": "send",
        "success": False,
        "error": "Forbidden: not a member",
        "room_id": str(ROOM),
        "temp_id": "t",
    }
    assert error_reply(outcomes.refused("send", Refusal.REPLY_NOT_FOUND, room_id=ROOM)) == {
        "op": "send",
        "success": False,
        "error": "reply_to_message_id not found in this room",
        "room_id": str(ROOM),
    }
    assert error_reply(outcomes.refused("ack", Refusal.AHEAD_OF_ROOM, room_id=ROOM)) == {
        "op": "ack",
        "success": False,
        "error": "last_read_message_id is ahead of the room's last message",
        "room_id": str(ROOM),
    }
    assert outcomes.refused("join", Refusal.NOT_MEMBER, room_id=ROOM).error == (
        "Forbidden: not a member"
    )


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (StoreTimeout("slow"), "timeout"),
        (BusTimeout("slow"), "timeout"),
        (StoreUnavailable("down"), "database_unavailable"),
        (BusUnavailable("down"), "pubsub_unavailable"),
        (StoreError("bad"), "database_error"),
        (MigrationError("bad"), "database_error"),
    ],
)
def test_failures_become_unavailable_with_a_reason(exc: Exception, reason: str) -> None:
    err = outcomes.unavailable("send", exc, temp_id="t")
    assert error_reply(err) == {
        "op": "send",
        "success": False,
        "error": "Service temporarily unavailable",
        "temp_id": "t",
        "reason": reason,
    }


def test_failed_auth_reply_carries_the_reason_only_when_given() -> None:
    assert outcomes.auth_failed(None) == {"op": "auth", "success": False, "error": "Unauthorized"}
    assert outcomes.auth_failed("token_expired") == {
        "op": "auth",
        "success": False,
        "error": "Unauthorized",
        "reason": "token_expired",
    }
