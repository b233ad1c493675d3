"""The chaos harness's verdict logic, without servers: given recorded sends, acks, deliveries and
the database's rows, :func:`arcyou_harness.chaos.check.check` computes the figures."""

from __future__ import annotations

import random

import pytest

from arcyou_harness.chaos import report
from arcyou_harness.chaos.check import ZERO_FIGURES, StoredRow, check
from arcyou_harness.chaos.cli import PROFILES, _options, _parser
from arcyou_harness.chaos.faults import KINDS, schedule
from arcyou_harness.chaos.model import Plan, Recorder

ROOM = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
MEMBERS = {"a": (ROOM,), "b": (ROOM, OTHER)}


def _sent(rec: Recorder, client: str, room: str, temp_id: str, *acked: int) -> None:
    rec.attempt(temp_id, client, room)
    for message_id in acked:
        rec.ack(temp_id, message_id, 0.0)


def _clean() -> tuple[Recorder, list[StoredRow]]:
    """a sends 1 and 2 in ROOM, b sends 3 in OTHER; everyone receives everything once."""
    rec = Recorder()
    _sent(rec, "a", ROOM, "a-0", 1)
    rec.attempt("a-1", "a", ROOM)  # a retry: two attempts, one ack
    _sent(rec, "a", ROOM, "a-1", 2)
    _sent(rec, "b", OTHER, "b-0", 3)
    a1 = rec.new_connection("a", 1)
    rec.deliver(a1, ROOM, (1, 1, "live"))
    a2 = rec.new_connection("a", 2)  # reconnected: resumed after 1
    rec.deliver(a2, ROOM, (2, 2, "backfill"))
    b1 = rec.new_connection("b", 1)
    rec.deliver(b1, ROOM, (1, 1, "live"))
    rec.deliver(b1, ROOM, (2, 2, "live"))
    rec.deliver(b1, OTHER, (3, 1, "live"))
    rows = [StoredRow(1, ROOM, "a-0"), StoredRow(2, ROOM, "a-1"), StoredRow(3, OTHER, "b-0")]
    return rec, rows


def _nonzero(rec: Recorder, rows: list[StoredRow], **outbox: int) -> dict[str, int]:
    figures = check(rec, MEMBERS, rows, {"published": len(rows), **outbox}, enqueued=3)
    return {k: v for k, v in figures.zero.items() if v}


def test_a_clean_run_passes_with_its_figures() -> None:
    rec, rows = _clean()
    figures = check(rec, MEMBERS, rows, {"published": 3}, enqueued=3)
    assert figures.ok
    assert set(figures.zero) == set(ZERO_FIGURES)
    info = figures.info
    assert (info["sends_attempted"], info["distinct_acked"], info["stored"]) == (4, 3, 3)
    assert (info["live"], info["backfill"], info["retried_messages"]) == (4, 1, 1)


def test_an_acked_message_missing_from_the_database_is_lost() -> None:
    rec, rows = _clean()
    rows = [r for r in rows if r.temp_id != "a-1"]
    assert _nonzero(rec, rows) == {"lost": 1}


def test_a_retry_stored_twice_is_reported() -> None:
    rec, rows = _clean()
    rec.ack("a-1", 4, 0.0)  # the retry was stored again and acked with another id
    rows.append(StoredRow(4, ROOM, "a-1"))
    for conn in ("a#2", "b#1"):
        rec.deliver(conn, ROOM, (4, 3, "live"))
    assert _nonzero(rec, rows) == {"stored_twice": 1, "ack_id_mismatch": 1}


def test_a_duplicate_delivery_on_one_connection_is_reported() -> None:
    rec, rows = _clean()
    rec.deliver("b#1", ROOM, (2, 2, "live"))  # a republished event delivered again
    assert _nonzero(rec, rows) == {"duplicates": 1}


def test_the_same_message_on_two_connections_is_not_a_duplicate() -> None:
    rec, rows = _clean()
    a3 = rec.new_connection("a", 3)
    rec.deliver(a3, ROOM, (1, 1, "backfill"))
    rec.deliver(a3, ROOM, (2, 2, "backfill"))
    assert _nonzero(rec, rows) == {}


def test_an_out_of_order_delivery_is_reported() -> None:
    rec, rows = _clean()
    b2 = rec.new_connection("b", 2)
    rec.deliver(b2, ROOM, (2, 2, "live"))
    rec.deliver(b2, ROOM, (1, 1, "live"))  # lower id after a higher one, same connection
    figures = check(rec, MEMBERS, rows, {"published": 3}, enqueued=3)
    assert {k: v for k, v in figures.zero.items() if v} == {"out_of_order": 1}
    assert "id 1 after 2" in figures.samples["out_of_order"][0]


def test_order_is_per_room_and_per_connection() -> None:
    rec, rows = _clean()
    # b#1 got 1, 2 in ROOM and 3 in OTHER; a lower id in OTHER after ROOM's 2 is in order.
    assert rec.deliveries["b#1"][OTHER] == [(3, 1, "live")]
    assert _nonzero(rec, rows) == {}


def test_a_message_a_member_never_received_is_reported() -> None:
    rec, rows = _clean()
    rec.deliveries["b#1"][ROOM] = [(1, 1, "live")]  # b never got 2 on any connection
    figures = check(rec, MEMBERS, rows, {"published": 3}, enqueued=3)
    assert {k: v for k, v in figures.zero.items() if v} == {"never_received": 1}
    assert figures.info["missed_member_message_pairs"] == 1


def test_unacked_sends_and_phantom_rows_are_reported() -> None:
    rec, rows = _clean()
    rec.attempt("b-1", "b", OTHER)  # begun, never acked, not stored
    rows.append(StoredRow(9, OTHER, "ghost"))  # stored, never acked by anyone
    rows.append(StoredRow(10, OTHER, None))
    for conn in ("b#1",):
        rec.deliver(conn, OTHER, (9, 2, "live"))
        rec.deliver(conn, OTHER, (10, 3, "live"))
    assert _nonzero(rec, rows) == {"never_acked": 1, "stored_unacked": 2}


def test_messages_never_sent_dead_outbox_rows_and_seq_conflicts() -> None:
    rec, rows = _clean()
    rec.deliver("a#2", ROOM, (5, 2, "live"))  # seq 2 was already message 2
    rows.append(StoredRow(5, ROOM, "a-0"))
    figures = check(rec, MEMBERS, rows, {"published": 3, "dead": 2}, enqueued=5)
    nonzero = {k: v for k, v in figures.zero.items() if v}
    assert nonzero == {
        "never_sent": 2,
        "dead_outbox": 2,
        "seq_conflicts": 1,
        "stored_twice": 1,
        "never_received": 1,  # b never got 5
    }


def test_events_without_seq_are_counted_not_failed() -> None:
    rec, rows = _clean()
    for conn, rooms in rec.deliveries.items():
        rec.deliveries[conn] = {r: [(m, None, s) for m, _, s in d] for r, d in rooms.items()}
    figures = check(rec, MEMBERS, rows, {"published": 3}, enqueued=3)
    assert figures.ok
    assert figures.info["events_without_seq"] == 5


def test_plan_puts_every_client_in_one_or_two_rooms_and_fills_every_room() -> None:
    plan = Plan.build(clients=24, rooms=6, messages=10_001, seed=3)
    assert len(plan.members) == 24
    assert sum(m.messages for m in plan.members) == 10_001
    assert all(1 <= len(m.rooms) <= 2 and len(set(m.rooms)) == len(m.rooms) for m in plan.members)
    assert {r for m in plan.members for r in m.rooms} == set(plan.rooms)
    assert 1 <= sum(m.pauser for m in plan.members) <= 3
    assert len({m.user for m in plan.members}) == 24
    assert plan == Plan.build(clients=24, rooms=6, messages=10_001, seed=3)
    membership = plan.membership()
    assert membership["probe-0"] == membership["probe-1"] == (plan.probe_room,)


def test_schedule_has_every_fault_kind_within_the_sending_phase() -> None:
    planned = schedule(40.0, 3, random.Random(1))
    assert len(planned) == len(KINDS) + 3
    assert {f.kind for f in planned if f.origin == "schedule"} == set(KINDS)
    assert [f.at_s for f in planned] == sorted(f.at_s for f in planned)
    assert all(0 < f.at_s < 40.0 for f in planned)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_and_report(profile: str) -> None:
    opts = _options(_parser().parse_args(["--profile", profile, "--seed", "5"]))
    if profile == "full":
        assert opts.messages >= 10_000
    rec, rows = _clean()
    rec.deliver("b#1", ROOM, (2, 2, "live"))
    figures = check(rec, MEMBERS, rows, {"published": 3}, enqueued=3)
    doc = report.document(
        profile,
        {"clients": 2, "rooms": 2, "messages": 3, "duration_s": 1.0, "seed": 5},
        figures,
        {
            "faults": [
                {
                    "kind": "pg_fast",
                    "target": "postgres",
                    "at_s": 1.0,
                    "down_s": 1.2,
                    "recovery_s": None,
                    "reconnects": 2,
                    "note": "",
                }
            ],
            "phases_s": {"total_s": 3.0},
        },
    )
    text = report.render(doc)
    assert "NOT RECOVERED" in text
    assert "duplicates within a connection" in text
    assert text.endswith("result: FAIL (1 figures not 0: duplicates)")
    assert doc["ok"] is False
