"""The Redis adapter: Pub/Sub publish and subscribe (redis-py and its threads live only here)."""

from arcyou_trio.bus.redis_bus import GLOBAL_CHANNEL, Bus, Channels, Subscriber

__all__ = ["GLOBAL_CHANNEL", "Bus", "Channels", "Subscriber"]
