"""Channel names: which Redis Pub/Sub channel carries a room's events."""

from __future__ import annotations

import attrs

from arcyou_trio.config import PubSubMode

GLOBAL_CHANNEL = "chat:message"


@attrs.frozen
class Channels:
    """The seed's channel naming (§6): ``chat:message`` for every room, or ``conv:{roomId}``.

    ``prefix`` (``REDIS_CHANNEL_PREFIX``, empty by default) lets several deployments, or test
    runs, share one Redis without hearing each other.
    """

    mode: PubSubMode
    prefix: str = ""

    @property
    def global_channel(self) -> str:
        return f"{self.prefix}{GLOBAL_CHANNEL}"

    def for_room(self, room_id: str) -> str:
        if self.mode is PubSubMode.GLOBAL:
            return self.global_channel
        return f"{self.prefix}conv:{room_id}"
