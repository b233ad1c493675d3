"""The Redis adapter: Pub/Sub publish and subscribe (redis-py and its threads live only here).

- :mod:`~arcyou_trio.bus.channels`: which channel carries a room (:class:`Channels`);
- :mod:`~arcyou_trio.bus.publish`: the :class:`Bus` client: publish, ping, open a subscriber;
- :mod:`~arcyou_trio.bus.subscriber`: trio's side of a Pub/Sub connection (:class:`Subscriber`);
- :mod:`~arcyou_trio.bus.reader`: the thread that owns that connection and reads it;
- :mod:`~arcyou_trio.bus.handoff`: what the two share, and how each wakes the other;
- :mod:`~arcyou_trio.bus.redis_errors`: redis-py exceptions as ``BusUnavailable``/``BusError``.
"""

from arcyou_trio.bus.channels import GLOBAL_CHANNEL, Channels
from arcyou_trio.bus.publish import Bus
from arcyou_trio.bus.subscriber import Subscriber

__all__ = ["GLOBAL_CHANNEL", "Bus", "Channels", "Subscriber"]
