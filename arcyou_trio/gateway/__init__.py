"""The WebSocket gateway (trio): HTTP front with /health, connections, room fan-out."""

from arcyou_trio.gateway.server import run_gateway, serve_gateway

__all__ = ["run_gateway", "serve_gateway"]
