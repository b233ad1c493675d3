"""The chaos run's report: one plain-text table (faults, figures, verdict) and the JSON document
written with ``--out``."""

from __future__ import annotations

from typing import Any

from arcyou_harness.chaos.check import ZERO_FIGURES, Figures

LABELS = {
    "sends_attempted": "sends attempted (incl. retries)",
    "messages_enqueued": "messages to send (load + probe)",
    "messages_started": "messages whose sending began",
    "distinct_acked": "distinct messages acked",
    "stored": "messages stored",
    "retried_messages": "messages sent more than once",
    "acked_more_than_once": "messages acked more than once",
    "live": "deliveries: live",
    "backfill": "deliveries: backfill",
    "connections": "connections opened",
    "reconnects": "reconnects of load clients",
    "pauses": "client read pauses",
    "probe_rounds_completed": "probe rounds completed",
    "probe_rounds": "probe rounds",
    "events_without_seq": "events without seq",
    "seq_gaps_within_connection": "seq gaps within a connection",
    "missed_member_message_pairs": "(member, message) pairs never received",
    "lost": "lost (acked, not stored)",
    "stored_twice": "stored twice (extra rows)",
    "stored_unacked": "stored but never acked",
    "never_sent": "never sent",
    "never_acked": "begun, never acked",
    "ack_id_mismatch": "acked id != stored id",
    "out_of_order": "deliveries out of order (per connection)",
    "duplicates": "duplicates within a connection",
    "never_received": "messages some member never received",
    "dead_outbox": "dead outbox rows",
    "seq_conflicts": "seq conflicts",
}
COUNTERS = ("send_errors", "join_errors", "connection_ends", "connect_failures", "outbox")


def _fmt_s(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.2f} s"


def render(doc: dict[str, Any]) -> str:
    fig: dict[str, Any] = doc["figures"]
    opts = doc["options"]
    lines = [
        f"arcyou-trio chaos ({doc['profile']}): {opts['clients']} clients in {opts['rooms']} "
        f"rooms, 2 gateways, 2 workers, {opts['messages']} messages over "
        f"{opts['duration_s']:.0f} s, seed {opts['seed']}",
        "",
        f"{'fault':<14} {'target':<30} {'at':>8} {'down':>9} {'recovery':>14} {'reconn':>6}",
    ]
    for f in doc["faults"]:
        recovery = "NOT RECOVERED" if f["recovery_s"] is None else _fmt_s(f["recovery_s"])
        lines.append(
            f"{f['kind']:<14} {f['target'][:30]:<30} {f['at_s']:>6.1f} s {_fmt_s(f['down_s']):>9}"
            f" {recovery:>14} {f['reconnects']:>6}"
        )
        if f.get("note"):
            lines.append(f"{'':<14} {f['note']}")
    for f in doc.get("skipped_faults", []):
        lines.append(f"{f['kind']:<14} (skipped: planned at {f['at_s']:.1f} s, after sending)")
    lines += ["", f"{'figure':<44} {'value':>9}"]
    info = fig["info"]
    for key in LABELS:
        if key in info:
            lines.append(f"{LABELS[key]:<44} {info[key]:>9}")
    for key in COUNTERS:
        if info.get(key):
            pairs = ", ".join(f"{k}: {v}" for k, v in info[key].items())
            lines.append(f"{key.replace('_', ' '):<44} {pairs}")
    lines += ["", f"{'must be 0':<44} {'value':>9}"]
    for key in ZERO_FIGURES:
        value = fig["zero"][key]
        lines.append(f"{LABELS[key]:<44} {value:>9}  {'ok' if value == 0 else 'FAIL'}")
    for key, samples in fig["samples"].items():
        if fig["zero"].get(key):
            lines.append(f"  {key}, e.g.: " + "; ".join(samples[:3]))
    if doc.get("final_incomplete"):
        lines.append("final resume incomplete: " + "; ".join(doc["final_incomplete"][:6]))
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in doc["phases_s"].items())
    lines += ["", f"phases: {phases}"]
    failed = [k for k in ZERO_FIGURES if fig["zero"][k]]
    verdict = "PASS" if not failed else f"FAIL ({len(failed)} figures not 0: {', '.join(failed)})"
    lines.append(f"result: {verdict}")
    return "\n".join(lines)


def document(
    profile: str, options: dict[str, Any], figures: Figures, rest: dict[str, Any]
) -> dict[str, Any]:
    return {
        "profile": profile,
        "options": options,
        "ok": figures.ok,
        "figures": {"zero": figures.zero, "info": figures.info, "samples": figures.samples},
        **rest,
    }
