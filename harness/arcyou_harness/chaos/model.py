"""What a chaos run is made of (the plan) and what it records, as plain data.

The :class:`Plan` names the rooms, the simulated clients, which rooms each belongs to and how many
messages each sends; it is derived from the seed alone. The :class:`Recorder` collects every send
attempt, every successful send reply (ack), every delivered event per connection and room, and
how connections ended. :mod:`arcyou_harness.chaos.check` turns a recorder plus the database's rows
into the figures; nothing here does I/O.
"""

from __future__ import annotations

import collections
import random
import uuid
from collections.abc import Mapping

import attrs

#: A delivered event: (message id, seq or None, source).
Delivery = tuple[int, int | None, str]

PROBE_PREFIX = "probe"
#: Padding of every message's text: events of about 600 bytes.
TEXT_PAD = "x" * 300


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@attrs.frozen
class Member:
    """One simulated client: a user of its own, its rooms, its share of the messages."""

    name: str
    user: str
    rooms: tuple[str, ...]
    messages: int
    pauser: bool = False


@attrs.frozen
class Plan:
    rooms: tuple[str, ...]
    members: tuple[Member, ...]
    probe_user: str
    probe_room: str

    @classmethod
    def build(cls, *, clients: int, rooms: int, messages: int, seed: int) -> Plan:
        """``clients`` clients in ``rooms`` rooms, each member of one or two rooms (every room
        has at least one member), ``messages`` spread evenly; about one client in eight pauses
        its reading now and then."""
        if clients < 1 or rooms < 1 or messages < 0:
            raise ValueError("clients and rooms must be >= 1, messages >= 0")
        rng = random.Random(seed)
        room_ids = tuple(_uuid(rng) for _ in range(rooms))
        pausers = set(rng.sample(range(clients), max(1, clients // 8)))
        share, extra = divmod(messages, clients)
        members = []
        for i in range(clients):
            own = [room_ids[i % rooms]]
            if rooms > 1 and rng.random() < 0.5:
                own.append(rng.choice([r for r in room_ids if r != own[0]]))
            members.append(
                Member(
                    name=f"c{i:02d}",
                    user=_uuid(rng),
                    rooms=tuple(own),
                    messages=share + (1 if i < extra else 0),
                    pauser=i in pausers,
                )
            )
        return cls(room_ids, tuple(members), _uuid(rng), _uuid(rng))

    def membership(self, probe_clients: int = 2) -> dict[str, tuple[str, ...]]:
        """Client name -> rooms, probe clients included (they share the probe user)."""
        out = {m.name: m.rooms for m in self.members}
        for i in range(probe_clients):
            out[f"{PROBE_PREFIX}-{i}"] = (self.probe_room,)
        return out


@attrs.define
class Recorder:
    """Everything the clients saw. Connection keys are ``<client>#<n>`` (n counts from 1)."""

    attempts: int = 0
    #: temp_id -> (client, room) for every message whose first attempt was made
    started: dict[str, tuple[str, str]] = attrs.Factory(dict)
    attempts_by_temp: collections.Counter[str] = attrs.Factory(collections.Counter)
    #: temp_id -> message ids of every successful send reply for it (more than one: a retry
    #: was stored again and acked again)
    acks: dict[str, list[int]] = attrs.Factory(dict)
    #: (trio time, room, message id) of every first ack, in order
    ack_log: list[tuple[float, str, int]] = attrs.Factory(list)
    #: connection -> room -> deliveries in arrival order
    deliveries: dict[str, dict[str, list[Delivery]]] = attrs.Factory(dict)
    conn_owner: dict[str, str] = attrs.Factory(dict)
    send_errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    join_errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    closes: collections.Counter[str] = attrs.Factory(collections.Counter)
    connect_failures: collections.Counter[str] = attrs.Factory(collections.Counter)
    malformed: int = 0
    pauses: int = 0

    def new_connection(self, client: str, n: int) -> str:
        key = f"{client}#{n}"
        self.conn_owner[key] = client
        self.deliveries[key] = {}
        return key

    def attempt(self, temp_id: str, client: str, room: str) -> None:
        self.attempts += 1
        self.attempts_by_temp[temp_id] += 1
        self.started.setdefault(temp_id, (client, room))

    def ack(self, temp_id: str, message_id: int, now: float) -> bool:
        """Record a successful send reply; True if it is the first for this temp_id."""
        ids = self.acks.setdefault(temp_id, [])
        ids.append(message_id)
        if len(ids) > 1:
            return False
        started = self.started.get(temp_id)
        if started is not None:
            self.ack_log.append((now, started[1], message_id))
        return True

    def deliver(self, conn: str, room: str, delivery: Delivery) -> None:
        self.deliveries[conn].setdefault(room, []).append(delivery)

    def received(self) -> dict[str, dict[str, set[int]]]:
        """Client -> room -> every message id any of its connections received."""
        out: dict[str, dict[str, set[int]]] = {}
        for conn, rooms in self.deliveries.items():
            mine = out.setdefault(self.conn_owner[conn], {})
            for room, items in rooms.items():
                mine.setdefault(room, set()).update(d[0] for d in items)
        return out

    def summary_counts(self) -> Mapping[str, int]:
        live = backfill = 0
        for rooms in self.deliveries.values():
            for items in rooms.values():
                for _mid, _seq, source in items:
                    if source == "live":
                        live += 1
                    else:
                        backfill += 1
        return {"live": live, "backfill": backfill, "connections": len(self.deliveries)}
