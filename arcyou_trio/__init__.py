"""arcyou-trio: a real-time chat backend on Trio (WebSocket gateway + outbox worker)."""

__version__ = "0.1.0"
