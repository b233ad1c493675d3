"""The printed report: scenario rows, ceilings and ratios, targets, where the CPU went."""

from __future__ import annotations

from typing import Any

from arcyou_harness.common.stats import ms, rate

# The issue's targets.
TARGET_RATIO_PGBENCH = 1.0
TARGET_P99_MS_AT_HALF = 25.0
TARGET_FANOUT_1000_P99_MS = 100.0
TARGET_DELIVERIES_PER_GATEWAY = 30_000.0
TARGET_CONNECTIONS = 20_000
TARGET_KB_PER_CONNECTION = 30.0


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for k, r in enumerate([header, *rows]):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _gen(result: dict[str, Any]) -> str:
    gen = result.get("generator_cpu_of_core") or []
    if not gen:
        return "-"
    mark = " SAT" if result.get("generator_saturated") else ""
    return f"{max(gen):.0%}{mark}"


def _lat(summary: dict[str, Any] | None) -> list[str]:
    summary = summary or {}
    return [ms(summary.get(k)) for k in ("p50", "p95", "p99", "max")]


def _problems(result: dict[str, Any]) -> str:
    parts = []
    if result.get("connect_failures"):
        parts.append(f"connect failures {result['connect_failures']}")
    if result.get("closed_during_run"):
        parts.append(f"closed {result['closed_during_run']}")
    if result.get("send_errors"):
        parts.append(f"send errors {result['send_errors']}")
    if result.get("outbox_backlog_at_end"):
        parts.append(f"outbox backlog {result['outbox_backlog_at_end']:,} rows at window end")
    if result.get("redis_pubsub_backlog_bytes_at_end"):
        kib = result["redis_pubsub_backlog_bytes_at_end"] / 1024
        parts.append(f"Redis held {kib:,.0f} KiB for the gateways' subscriptions at window end")
    return "; ".join(parts)


def scenario_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per scenario (and ceiling); the last cell is a free-text note."""
    rows: list[list[str]] = []
    if sat := results.get("saturation"):
        ack = sat["send_to_ack_ms"]
        note = f"{sat['senders']} senders; send->ack p50 {ms(ack['p50'])} p99 {ms(ack['p99'])}"
        rows.append(
            [
                "1 saturation",
                sat["load"],
                rate(sat["durable_sends_per_s"]),
                rate(sat["deliveries_per_s"]),
                *_lat(sat["send_to_live_ms"]),
                _gen(sat),
                "; ".join(x for x in (note, _problems(sat)) if x),
            ]
        )
    if pac := results.get("paced"):
        note = f"rate = {pac.get('offered_basis', '?')}"
        note += f"; send->ack p50 {ms(pac['send_to_ack_ms']['p50'])}"
        note += f" p99 {ms(pac['send_to_ack_ms']['p99'])}"
        note += f"; generator lag max {ms(pac['generator_max_lag_ms'])}"
        rows.append(
            [
                "2 fixed load",
                pac["load"],
                rate(pac["durable_sends_per_s"]),
                rate(pac["deliveries_per_s"]),
                *_lat(pac["send_to_live_ms"]),
                _gen(pac),
                "; ".join(x for x in (note, _problems(pac)) if x),
            ]
        )
    for fan in results.get("fanout", []):
        acked = fan.get("messages_acked", fan["messages_sent"])
        note = (
            f"latency = send -> last member's receipt; {fan['messages_sent']} sent,"
            f" {acked} acknowledged; {fan['messages_complete']}"
            f"/{fan['messages_sent']} reached all {fan['receivers']:,} members;"
            f" offered {rate(fan['offered_deliveries_per_s'])} deliveries/s;"
            f" first receipt p50 {ms(fan['first_receipt_ms']['p50'])};"
            f" per-delivery p50 {ms(fan['per_delivery_ms']['p50'])}"
        )
        rows.append(
            [
                f"3 fan-out {fan['members']:,}",
                fan["load"],
                rate(fan.get("messages_acked", fan["messages_sent"]) / fan["duration_s"]),
                rate(fan["deliveries_per_s"]),
                *_lat(fan["last_receipt_ms"]),
                _gen(fan),
                "; ".join(x for x in (note, _problems(fan)) if x),
            ]
        )
    if con := results.get("connections"):
        rss = con["gateway_rss_bytes"]
        kb = con["kb_per_connection"]
        note = (
            f"{con['connected']:,} connected in {con['setup_s']:.0f} s"
            f" ({rate(con['connections_per_s'])}/s); gateway RSS"
            f" {(rss['before'] or 0) / 2**20:.0f} -> {(rss['connected'] or 0) / 2**20:.0f} MiB"
            f" = {'-' if kb is None else f'{kb:.1f}'} KB per connection;"
            f" the message: {con['message_receipts']:,} receipts, the last after"
            f" {ms(con['last_receipt_ms'])}"
        )
        for extra in con["notes"]:
            note += f"; {extra}"
        rows.append(
            [
                "4 connections",
                con["load"],
                "-",
                "-",
                "-",
                "-",
                "-",
                ms(con["last_receipt_ms"]),
                _gen(con),
                "; ".join(x for x in (note, _problems(con)) if x),
            ]
        )
    ceil = results.get("ceilings") or {}
    for pg in ceil.get("pgbench", []):
        rows.append(
            [
                "5 pgbench",
                f"send statement, -M prepared -c {pg['clients']}",
                rate(pg["tps"]),
                "-",
                *_lat(pg["latency_ms"]),
                "-",
                f"-c = {pg['concurrency_of']}; {pg['transactions']:,} tx,"
                f" {pg['failed']} failed; workers paused",
            ]
        )
    for rb in ceil.get("redis_benchmark", []):
        rows.append(
            [
                "5 redis-bench",
                f"PUBLISH -c {rb['clients']} -P {rb['pipeline']}",
                rate(rb["rps"]),
                "-",
                ms(rb["p50_ms"]),
                "-",
                ms(rb["p99_ms"]),
                "-",
                "-",
                f"messages/s: {rb['command']}; nobody subscribed",
            ]
        )
    return rows


SCENARIO_HEADER = ["scenario", "load", "sends/s", "deliv/s", "p50", "p95", "p99", "max", "gen CPU"]


def scenario_table(rows: list[list[str]]) -> str:
    """The rows as a table, their notes below it."""
    out = table(SCENARIO_HEADER, [r[:-1] for r in rows], right={2, 3, 4, 5, 6, 7, 8})
    notes = [f"  {r[0]}: {r[-1]}" for r in rows if r[-1]]
    return out + ("\n" + "\n".join(notes) if notes else "")


def ratios(results: dict[str, Any]) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    sat = results.get("saturation")
    ceil = results.get("ceilings") or {}
    if sat is None:
        return out
    ours = float(sat["durable_sends_per_s"])
    for pg in ceil.get("pgbench", []):
        out.append(
            (
                f"durable sends/s / pgbench tps at -c {pg['clients']} ({pg['concurrency_of']})",
                ours / pg["tps"] if pg["tps"] else None,
            )
        )
    for rb in ceil.get("redis_benchmark", []):
        out.append(
            (
                f"published events/s (= durable sends/s) / redis-benchmark PUBLISH"
                f" -c {rb['clients']} -P {rb['pipeline']}",
                ours / rb["rps"] if rb["rps"] else None,
            )
        )
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: str, met: bool | None) -> None:
        out.append({"target": name, "goal": goal, "measured": measured, "met": met})

    sat = results.get("saturation")
    pgs = (results.get("ceilings") or {}).get("pgbench", [])
    if sat and pgs:
        pg = pgs[0]
        r = sat["durable_sends_per_s"] / pg["tps"]
        measured = (
            f"{r:.2f}x ({rate(sat['durable_sends_per_s'])} vs {rate(pg['tps'])} tx/s at"
            f" -c {pg['clients']})"
        )
        for other in pgs[1:]:
            measured += (
                f"; {sat['durable_sends_per_s'] / other['tps']:.2f}x vs -c {other['clients']}"
                f" ({rate(other['tps'])} tx/s)"
            )
        add(
            "durable sends/s vs pgbench, same concurrency",
            f">= {TARGET_RATIO_PGBENCH:.1f}x",
            measured,
            r >= TARGET_RATIO_PGBENCH,
        )
    else:
        add("durable sends/s vs pgbench, same concurrency", ">= 1.0x", "not measured", None)
    pac = results.get("paced")
    if pac:
        p99 = pac["send_to_live_ms"]["p99"]
        add(
            "p99 send->live at 50% load",
            f"<= {TARGET_P99_MS_AT_HALF:.0f} ms",
            f"{ms(p99)} at {rate(pac['offered_per_s'])} msg/s",
            p99 is not None and p99 <= TARGET_P99_MS_AT_HALF,
        )
    else:
        add("p99 send->live at 50% load", "<= 25 ms", "not measured", None)
    fan1000 = [f for f in results.get("fanout", []) if f["members"] == 1000]
    if fan1000:
        f = fan1000[0]
        p99 = f["last_receipt_ms"]["p99"]
        complete = f["messages_complete"] == f["messages_sent"]
        add(
            "fan-out to 1,000 members: last receipt p99",
            f"<= {TARGET_FANOUT_1000_P99_MS:.0f} ms",
            f"{ms(p99)} ({f['messages_complete']}/{f['messages_sent']} complete)",
            p99 is not None and p99 <= TARGET_FANOUT_1000_P99_MS and complete,
        )
    else:
        add("fan-out to 1,000 members: last receipt p99", "<= 100 ms", "not measured", None)
    best: tuple[float, str] | None = None
    if sat:
        best = (sat["deliveries_per_s_per_gateway"], "saturation")
    for f in results.get("fanout", []):
        v = f.get("deliveries_per_s_per_gateway")
        if v is not None and (best is None or v > best[0]):
            best = (v, f"fan-out {f['members']:,}")
    if best is not None:
        add(
            "deliveries/s per gateway process (best scenario)",
            f">= {TARGET_DELIVERIES_PER_GATEWAY:,.0f}",
            f"{rate(best[0])} ({best[1]})",
            best[0] >= TARGET_DELIVERIES_PER_GATEWAY,
        )
    else:
        add("deliveries/s per gateway process", ">= 30,000", "not measured", None)
    con = results.get("connections")
    if con:
        kb = con["kb_per_connection"]
        capped = con["attempted"] < con["target"]
        add(
            "idle connections per gateway process",
            f">= {TARGET_CONNECTIONS:,}",
            f"{con['connected']:,} of {con['target']:,}"
            + (f" (fd limit {con['gateway_nofile_limit']:,})" if capped else ""),
            con["connected"] >= TARGET_CONNECTIONS
            if con["target"] >= TARGET_CONNECTIONS
            else None,  # a smaller run (--quick) does not test this target
        )
        add(
            "memory per idle connection",
            f"<= {TARGET_KB_PER_CONNECTION:.0f} KB",
            "-" if kb is None else f"{kb:.1f} KB (at {con['connected']:,} connections)",
            kb is not None and kb <= TARGET_KB_PER_CONNECTION,
        )
    else:
        add("20,000 idle connections at <= 30 KB each", "", "not measured", None)
    return out


def cpu_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each scenario's CPU per part of the system, in % of one core, over its window."""
    named: list[tuple[str, dict[str, Any]]] = []
    if sat := results.get("saturation"):
        named.append(("1 saturation", sat))
    if pac := results.get("paced"):
        named.append(("2 fixed load", pac))
    for fan in results.get("fanout", []):
        named.append((f"3 fan-out {fan['members']:,}", fan))
    parts: list[str] = []
    for _, r in named:
        for part in r.get("system_cpu_of_core", {}):
            if part not in parts and part not in ("generators", "irq", "other", "machine"):
                parts.append(part)
    parts += ["generators", "irq", "other", "machine"]
    header = ["scenario", *parts]
    rows = []
    for name, r in named:
        shares = r.get("system_cpu_of_core", {})
        cells = [f"{shares[p]:.0%}" if p in shares else "-" for p in parts]
        gen = r.get("generator_cpu_of_core") or []
        cells[-4] += f" ({len(gen)})"
        rows.append([name, *cells])
    return header, rows


def other_processes(results: dict[str, Any]) -> list[str]:
    """Lines naming the busiest processes that were not ours, per scenario."""
    out = []
    named = [("1 saturation", results.get("saturation")), ("2 fixed load", results.get("paced"))]
    named += [(f"3 fan-out {f['members']:,}", f) for f in results.get("fanout", [])]
    if con := results.get("connections"):
        named.append(
            (
                "4 connections (while connecting)",
                {"busiest_other_processes": con.get("setup_busiest_other_processes", [])},
            )
        )
    for name, r in named:
        if r and r.get("busiest_other_processes"):
            out.append(f"  {name}: {'; '.join(r['busiest_other_processes'])}")
    return out


def render(report: dict[str, Any]) -> str:
    results = report["results"]
    machine = report["machine"]
    lines = [
        "arcyou-trio end-to-end benchmark",
        "  machine: "
        + ", ".join(
            f"{k} {machine[k]}"
            for k in ("nproc", "ram_gib", "cpu", "kernel", "python", "nofile_limit")
            if k in machine
        ),
        "  servers: " + ", ".join(f"{k} {v}" for k, v in report["servers"].items()),
        "  system: " + ", ".join(f"{k}={v}" for k, v in report["config"].items()),
        f"  command: {report['command']}; total {report['elapsed_s']:.0f} s; load average"
        f" {report['loadavg']['start']} at start, {report['loadavg']['end']} at end",
        f"  code: {report['code']}",
        "",
        scenario_table(scenario_rows(results)),
        "",
        "latency: 1-2 = send -> live event at each other member (sender's clock stamped in the"
        " message); 3 = send -> the last member's receipt, per message; 4 = the one message's"
        " last receipt. gen CPU: busiest load generator, % of one core (SAT: > 90 %).",
    ]
    rat = ratios(results)
    if rat:
        lines += ["", "ratios to the ceilings:"]
        lines += [f"  {name}: {'-' if v is None else f'{v:.3g}x'}" for name, v in rat]
    lines += ["", "targets:"]
    lines.append(
        table(
            ["target", "goal", "measured", "met"],
            [
                [
                    t["target"],
                    t["goal"],
                    t["measured"],
                    "-" if t["met"] is None else ("MET" if t["met"] else "MISSED"),
                ]
                for t in report["targets"]
            ],
        )
    )
    header, rows = cpu_rows(results)
    if rows:
        lines += [
            "",
            "CPU over each measurement window, % of one core (generators: their processes;"
            " irq: kernel interrupts/softirq, where loopback TCP is processed; other: every"
            " other process on the machine; machine: all busy CPU, of"
            f" {report['machine'].get('nproc', '?')} cores):",
            table(header, rows),
        ]
    if others := other_processes(results):
        lines += ["busiest processes that were not the benchmark's:", *others]
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
