"""The sans-IO protocol core: requests, replies/events, codec, session state and rate limit.

Nothing in this package imports trio or touches a socket; time comes in as an argument.
"""

from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import (
    Ack,
    Auth,
    Join,
    Limits,
    MessageType,
    Request,
    RequestError,
    Send,
)
from arcyou_trio.protocol.session import Phase, Session

__all__ = [
    "Ack",
    "Auth",
    "ChatMessage",
    "Join",
    "Limits",
    "MessageType",
    "Phase",
    "Request",
    "RequestError",
    "Send",
    "Session",
    "TokenBucket",
]
