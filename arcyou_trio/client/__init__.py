"""A small trio client for the arcyou chat protocol (used by the CLI and by the tests)."""

from arcyou_trio.client.chat import ChatClient, ClientClosed, open_websocket

__all__ = ["ChatClient", "ClientClosed", "open_websocket"]
