"""The verdict of a chaos run, computed from what the clients recorded and the database's rows.

Pure: :func:`check` takes a :class:`~arcyou_harness.chaos.model.Recorder`, the membership (client ->
rooms), the stored messages and the outbox status counts, and returns :class:`Figures`. The
*zero-figures* must all be 0 for the run to pass:

- ``lost``: messages acked to the sender but not in the database;
- ``stored_twice``: extra rows for a ``temp_id`` stored more than once;
- ``stored_unacked``: rows whose ``temp_id`` was never acked (a phantom, or a retry given up);
- ``never_sent``: messages handed to a client that it never even tried to send (the run ended
  first);
- ``never_acked``: messages whose sending started but that were never acked;
- ``ack_id_mismatch``: a message whose acked ``message_id`` is not its stored id (or that was
  acked with two different ids);
- ``out_of_order``: deliveries on one connection whose id is below an id that connection already
  had in that room (within a connection and room, ids must strictly increase);
- ``duplicates``: deliveries of an id the same connection already had in that room;
- ``never_received``: stored messages that some member of their room never received on any of
  its connections (after the final resume);
- ``dead_outbox``: outbox rows given up by the worker;
- ``seq_conflicts``: one message seen with two different ``seq``, or two messages of a room with
  the same ``seq`` (only possible once events carry ``seq``).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import attrs

from arcyou_harness.chaos.model import Recorder

ZERO_FIGURES = (
    "lost",
    "stored_twice",
    "stored_unacked",
    "never_sent",
    "never_acked",
    "ack_id_mismatch",
    "out_of_order",
    "duplicates",
    "never_received",
    "dead_outbox",
    "seq_conflicts",
)
SAMPLES = 10


@attrs.frozen
class StoredRow:
    id: int
    room: str
    temp_id: str | None


@attrs.define
class Figures:
    zero: dict[str, int] = attrs.Factory(dict)
    info: dict[str, object] = attrs.Factory(dict)
    #: a few examples per non-zero figure, for the report
    samples: dict[str, list[str]] = attrs.Factory(dict)

    @property
    def ok(self) -> bool:
        return all(v == 0 for v in self.zero.values())

    def sample(self, figure: str, text: str) -> None:
        items = self.samples.setdefault(figure, [])
        if len(items) < SAMPLES:
            items.append(text)


def check(
    rec: Recorder,
    membership: Mapping[str, Sequence[str]],
    rows: Sequence[StoredRow],
    outbox: Mapping[str, int],
    *,
    enqueued: int | None = None,
) -> Figures:
    """``enqueued``: how many messages were handed to the clients to send (None: unknown)."""
    fig = Figures()
    zero = fig.zero = dict.fromkeys(ZERO_FIGURES, 0)
    if enqueued is not None:
        zero["never_sent"] = max(0, enqueued - len(rec.started))
        fig.info["messages_enqueued"] = enqueued
    _sends(fig, rec, rows)
    _order(fig, rec)
    _coverage(fig, rec, membership, rows)
    zero["dead_outbox"] = int(outbox.get("dead", 0))
    fig.info["outbox"] = dict(outbox)
    return fig


def _sends(fig: Figures, rec: Recorder, rows: Sequence[StoredRow]) -> None:
    zero = fig.zero
    stored: dict[str, list[int]] = collections.defaultdict(list)
    for row in rows:
        if row.temp_id is not None:
            stored[row.temp_id].append(row.id)
    for temp_id, ids in sorted(stored.items()):
        if len(ids) > 1:
            zero["stored_twice"] += len(ids) - 1
            fig.sample("stored_twice", f"{temp_id}: ids {sorted(ids)}")
        if temp_id not in rec.acks:
            zero["stored_unacked"] += len(ids)
            fig.sample("stored_unacked", f"{temp_id}: ids {sorted(ids)}")
    untagged = sum(1 for row in rows if row.temp_id is None)
    zero["stored_unacked"] += untagged
    if untagged:
        fig.sample("stored_unacked", f"{untagged} rows without temp_id")
    for temp_id, acked in sorted(rec.acks.items()):
        ids = stored.get(temp_id, [])
        if not ids:
            zero["lost"] += 1
            fig.sample("lost", f"{temp_id}: acked as {acked}, not stored")
        elif len(set(acked)) > 1 or not set(acked) <= set(ids):
            zero["ack_id_mismatch"] += 1
            fig.sample("ack_id_mismatch", f"{temp_id}: acked {acked}, stored {sorted(ids)}")
    for temp_id in sorted(set(rec.started) - set(rec.acks)):
        zero["never_acked"] += 1
        fig.sample(
            "never_acked", f"{temp_id}: {rec.attempts_by_temp[temp_id]} attempts, no success"
        )
    fig.info.update(
        sends_attempted=rec.attempts,
        messages_started=len(rec.started),
        distinct_acked=len(rec.acks),
        stored=len(rows),
        acked_more_than_once=sum(1 for ids in rec.acks.values() if len(ids) > 1),
        retried_messages=sum(1 for n in rec.attempts_by_temp.values() if n > 1),
    )


def _order(fig: Figures, rec: Recorder) -> None:
    zero = fig.zero
    seq_of: dict[tuple[str, int], int] = {}  # (room, id) -> seq
    id_of: dict[tuple[str, int], int] = {}  # (room, seq) -> id
    no_seq = seq_gaps = 0
    for conn, rooms in sorted(rec.deliveries.items()):
        for room, items in sorted(rooms.items()):
            seen: set[int] = set()
            top = 0
            last_seq: int | None = None
            for mid, seq, source in items:
                if mid in seen:
                    zero["duplicates"] += 1
                    fig.sample("duplicates", f"{conn} room {room[:8]}: id {mid} again ({source})")
                elif mid < top:
                    zero["out_of_order"] += 1
                    fig.sample(
                        "out_of_order", f"{conn} room {room[:8]}: id {mid} after {top} ({source})"
                    )
                seen.add(mid)
                top = max(top, mid)
                if seq is None:
                    no_seq += 1
                    continue
                if last_seq is not None and seq > last_seq + 1:
                    seq_gaps += 1
                last_seq = seq if last_seq is None else max(last_seq, seq)
                if seq_of.setdefault((room, mid), seq) != seq:
                    zero["seq_conflicts"] += 1
                    fig.sample("seq_conflicts", f"room {room[:8]}: id {mid} seq {seq}")
                if id_of.setdefault((room, seq), mid) != mid:
                    zero["seq_conflicts"] += 1
                    fig.sample("seq_conflicts", f"room {room[:8]}: seq {seq} ids {mid}")
    fig.info.update(
        events_without_seq=no_seq,
        seq_gaps_within_connection=seq_gaps,
        **rec.summary_counts(),
    )


def _coverage(
    fig: Figures, rec: Recorder, membership: Mapping[str, Sequence[str]], rows: Sequence[StoredRow]
) -> None:
    by_room: dict[str, set[int]] = collections.defaultdict(set)
    for row in rows:
        by_room[row.room].add(row.id)
    received = rec.received()
    missing_messages: set[int] = set()
    pairs = 0
    for client, rooms in sorted(membership.items()):
        for room in rooms:
            missing = by_room.get(room, set()) - received.get(client, {}).get(room, set())
            pairs += len(missing)
            missing_messages |= missing
            if missing:
                fig.sample(
                    "never_received",
                    f"{client} room {room[:8]}: {len(missing)} missing, e.g. {sorted(missing)[:5]}",
                )
    fig.zero["never_received"] = len(missing_messages)
    fig.info["missed_member_message_pairs"] = pairs
