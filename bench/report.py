"""Render bench/results/latest.json as docs/benchmarks.md and docs/benchmarks.png."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

LYNKR_STORES = ("lynkr-sqlite", "lynkr-redis", "lynkr-redis-pg")
ROLE_NAMES = {
    "envoy": "Envoy",
    "ext_proc": "ext_proc",
    "litellm": "LiteLLM",
    "upstream": "upstream",
    "redis": "Redis",
    "postgres": "PostgreSQL",
}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def json_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return medians and spreads over the rounds of one configuration."""
    requests = sum(r["requests"] for r in runs)
    roles = runs[0]["cpu_s"].keys()
    return {
        "rps": _median([r["rps"] for r in runs]),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "p50_ms": _median([r["p50_ms"] for r in runs]),
        "p50_min": min(r["p50_ms"] for r in runs),
        "p50_max": max(r["p50_ms"] for r in runs),
        "p99_ms": _median([r["p99_ms"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "requests": requests,
        "cpu_us": {
            role: 1e6 * sum(r["cpu_s"][role] for r in runs) / max(requests, 1)
            for role in roles
        },
        "rss_mib": {
            role: max(r["rss_kib"][role] for r in runs) / 1024 for role in roles
        },
        "store_thread_us": 1e6
        * sum(r.get("store_thread_cpu_s", 0.0) for r in runs)
        / max(requests, 1),
    }


def sse_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    delays = [d / 1000 for r in runs for d in r["delays_us"]]
    per_round = [
        _median([d / 1000 for d in r["delays_us"]]) for r in runs if r["delays_us"]
    ]
    return {
        "p50_ms": _median(delays),
        "p99_ms": _percentile(delays, 0.99),
        "round_min": min(per_round) if per_round else float("nan"),
        "round_max": max(per_round) if per_round else float("nan"),
        "events": len(delays),
        "failed": sum(r["failed"] for r in runs),
    }


def derive(results: dict[str, Any]) -> dict[str, Any]:
    measurements = results["measurements"]
    json_rows = {
        name: {c: json_summary(runs) for c, runs in entry["json"].items()}
        for name, entry in measurements.items()
    }
    sse_rows = {
        name: {c: sse_summary(runs) for c, runs in entry["sse"].items()}
        for name, entry in measurements.items()
    }
    return {"json": json_rows, "sse": sse_rows}


# -- Markdown -----------------------------------------------------------------------


def _cpu_cell(summary: dict[str, Any]) -> str:
    parts = [
        f"{ROLE_NAMES.get(role, role)} {us:.0f}"
        for role, us in summary["cpu_us"].items()
    ]
    return ", ".join(parts)


def _rss_cell(summary: dict[str, Any], roles: dict[str, int]) -> str:
    parts = []
    for role, mib in summary["rss_mib"].items():
        if role in ("redis", "postgres", "upstream"):
            continue
        count = roles.get(role, 1)
        suffix = f" ({count} processes)" if count > 1 else ""
        parts.append(f"{ROLE_NAMES.get(role, role)} {mib:.0f}{suffix}")
    return ", ".join(parts)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def json_table(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    lines = [
        (
            "| configuration | connections | req/s (median, min–max) | p50 ms (min–max) | p99 ms "
            "| CPU µs per request, by process | RSS MiB | errors |"
        ),
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for name, per_connections in derived["json"].items():
        config = results["configurations"][name]
        for connections, s in per_connections.items():
            lines.append(
                f"| {config['label']} | {connections} | {s['rps']:,.0f} "
                f"({s['rps_min']:,.0f}–{s['rps_max']:,.0f}) | {s['p50_ms']:.2f} "
                f"({s['p50_min']:.2f}–{s['p50_max']:.2f}) | {s['p99_ms']:.2f} | {_cpu_cell(s)} "
                f"| {_rss_cell(s, config['roles'])} | {s['errors']} |"
            )
    return lines


def sse_table(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    concurrent = str(settings["sse_concurrent"])
    alone = derived["sse"].get("alone")
    lines = [
        (
            f"| configuration | 1 stream: p50 ms per event (rounds min–max) | added vs Envoy alone "
            f"| p99 ms | {concurrent} streams: p50 ms | added vs Envoy alone | p99 ms | failed streams |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in derived["sse"].items():
        serial, wide = rows["1"], rows[concurrent]
        added_serial = (
            serial["p50_ms"] - alone["1"]["p50_ms"] if alone else float("nan")
        )
        added_wide = (
            wide["p50_ms"] - alone[concurrent]["p50_ms"] if alone else float("nan")
        )
        lines.append(
            f"| {results['configurations'][name]['label']} | {serial['p50_ms']:.2f} "
            f"({serial['round_min']:.2f}–{serial['round_max']:.2f}) | {added_serial:+.2f} "
            f"| {serial['p99_ms']:.2f} | {wide['p50_ms']:.2f} | {added_wide:+.2f} "
            f"| {wide['p99_ms']:.2f} | {serial['failed'] + wide['failed']} |"
        )
    return lines


def targets(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    json_rows, sse_rows = derived["json"], derived["sse"]
    rows = []

    def add(
        target: str, goal: str, measured: float | None, ok: bool | None, unit: str = ""
    ) -> None:
        if measured is None:
            value = "not measured"
        elif isinstance(measured, int):
            value = f"{measured:,}{unit}"
        else:
            value = f"{measured:.2f}{unit}"
        if ok is None:
            verdict = "n/a"
        elif ok:
            verdict = "met"
        else:
            verdict = "**missed**"
        rows.append(f"| {target} | {goal} | {value} | {verdict} |")

    floor = json_rows.get("floor", {}).get("32")
    for name, label in (("lynkr-sqlite", "SQLite"), ("lynkr-redis", "Redis")):
        row = json_rows.get(name, {}).get("32")
        ratio = row["rps"] / floor["rps"] if row and floor else None
        add(
            f"full path ({label}) / floor, req/s at 32 connections",
            "≥ 0.9",
            ratio,
            None if ratio is None else ratio >= 0.9,
            "×",
        )
    litellm = json_rows.get("litellm", {}).get("32")
    for name, label in (("lynkr-sqlite", "SQLite"), ("lynkr-redis", "Redis")):
        row = json_rows.get(name, {}).get("32")
        ratio = row["rps"] / litellm["rps"] if row and litellm else None
        add(
            f"full path ({label}) / LiteLLM, req/s at 32 connections",
            "≥ 10",
            ratio,
            None if ratio is None else ratio >= 10,
            "×",
        )
    alone = json_rows.get("alone", {}).get("1")
    for name, label in (("lynkr-sqlite", "SQLite"), ("lynkr-redis", "Redis")):
        row = json_rows.get(name, {}).get("1")
        added = row["p50_ms"] - alone["p50_ms"] if row and alone else None
        add(
            f"serial added latency ({label}), p50 over Envoy alone",
            "≤ 1.0 ms",
            added,
            None if added is None else added <= 1.0,
            " ms",
        )
    sse_alone = sse_rows.get("alone", {}).get("1")
    for name, label in (("lynkr-sqlite", "SQLite"), ("lynkr-redis", "Redis")):
        row = sse_rows.get(name, {}).get("1")
        added = row["p50_ms"] - sse_alone["p50_ms"] if row and sse_alone else None
        add(
            f"SSE added delay per event ({label}), p50 over Envoy alone",
            "≤ 0.5 ms",
            added,
            None if added is None else added <= 0.5,
            " ms",
        )
    slow = results.get("slow_streams")
    if slow and "error" not in slow:
        for step in slow["steps"]:
            per_stream = (
                (step["ext_proc_kib"] - slow["before_kib"])
                * 1.024
                / max(step["open"], 1)
            )
            add(
                f"ext_proc RSS per open stream at {step['target']:,} streams",
                "≤ 40 KB",
                per_stream,
                per_stream <= 40,
                " KB",
            )
        last = slow["steps"][-1]
        logged = sum(
            group["count"]
            for name, groups in (results.get("log_problems") or {}).items()
            if name.startswith("slow.")
            for group in groups
        )
        errors = last["failed"] + last.get("ended_early", 0) + logged
        add(
            f"{last['target']:,} concurrent slow streams on one ext_proc process: failed or "
            "rejected streams, WARNING and ERROR log lines",
            "0",
            errors,
            errors == 0,
        )
    return ["| target | goal | measured | |", "|---|---|---:|---|", *rows]


SCALING = (
    ("lynkr, SQLite", ("lynkr-sqlite", "lynkr-sqlite-x2", "lynkr-sqlite-x3", "lynkr-sqlite-x4")),
    ("lynkr, Redis", ("lynkr-redis", "lynkr-redis-x2")),
    ("LiteLLM", ("litellm", "litellm-x2")),
)


def why_missed(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """Explain the throughput and latency targets with the measured costs."""
    json_rows = derived["json"]
    floor, alone = json_rows.get("floor", {}), json_rows.get("alone", {})
    if "32" not in floor or "1" not in alone or "1" not in floor:
        return []
    floor_cpu = floor["32"]["cpu_us"]["ext_proc"]
    allowance = floor_cpu / 0.9 - floor_cpu
    floor_added = floor["1"]["p50_ms"] - alone["1"]["p50_ms"]
    lines = [
        "Why the throughput and latency targets are missed, in numbers:",
        "",
        (
            f"- At 32 connections the ext_proc process is the bottleneck: it runs on one core "
            f"and the floor's does nothing but spend {floor_cpu:,.0f} µs of CPU per request on "
            f"gRPC and asyncio. Reaching 0.9× the floor leaves lynkr {allowance:,.0f} µs per "
            "request for its own work."
        ),
    ]
    for name in LYNKR_STORES:
        row = json_rows.get(name, {}).get("32")
        if row:
            extra = row["cpu_us"]["ext_proc"] - floor_cpu
            lines.append(
                f"  - {results['configurations'][name]['label']} spends {extra:,.0f} µs more "
                f"than the floor, {extra / allowance:.0f}× that allowance."
            )
    lines += [
        (
            "- Those µs go to the key lookup, scoring, the session lookup, pricing, the spend "
            "record and its log line, and to the reserve and settle round trips to the store. "
            "Each round trip is a hand-off to the store's thread or client and back. *Where "
            "lynkr's time goes* shows the profile."
        ),
        (
            f"- Serially, the floor's four round trips alone add {floor_added:.2f} ms p50 over "
            "Envoy alone, out of the 1.0 ms allowed. lynkr adds its store round trips and the "
            "settle's durable write before the last body chunk leaves. On SQLite a round trip "
            "is a local transaction on a worker thread, on Redis a network round trip and a Lua "
            "script."
        ),
        "",
    ]
    return lines


def scaling_table(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    cores = results["environment"].get("cores", 2)
    lines = [
        (
            "| configuration | processes | req/s at 32 connections | vs 1 process "
            "| CPU µs per request, all processes | machine bound, req/s |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, names in SCALING:
        first = derived["json"].get(names[0], {}).get("32")
        for count, name in enumerate(names, start=1):
            row = derived["json"].get(name, {}).get("32")
            if not row or not first:
                continue
            total = sum(row["cpu_us"].values())
            lines.append(
                f"| {label} | {count} | {row['rps']:,.0f} | {_ratio(row['rps'], first['rps'])}× "
                f"| {total:,.0f} | {cores * 1e6 / total:,.0f} |"
            )
    lines += [
        "",
        (
            f"*Machine bound* is {cores} cores × 10⁶ µs divided by the CPU all measured "
            "processes (ext_proc, Envoy, upstream, Redis, PostgreSQL) spend per request: the "
            "rate at which this machine runs out of CPU, with wrk's own share left out."
        ),
        "",
        *prediction(results, derived),
    ]
    return lines


def prediction(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """Say what the measured costs predict for a 16-core host."""
    cores = results["environment"].get("cores", 2)
    lines = ["### What this predicts for a 16-core host", ""]
    for name in ("lynkr-sqlite", "lynkr-redis"):
        row = derived["json"].get(name, {}).get("32")
        if not row:
            continue
        label = results["configurations"][name]["label"]
        ext_proc, envoy = row["cpu_us"]["ext_proc"], row["cpu_us"]["envoy"]
        per_process = 1e6 / ext_proc
        processes = 16 * ext_proc / (ext_proc + envoy)
        cpu_bound = 16e6 / (ext_proc + envoy)
        text = (
            f"- **{label}**: one ext_proc process uses {ext_proc:,.0f} µs of CPU per request, "
            f"so it serves at most {per_process:,.0f} req/s on its core; Envoy adds "
            f"{envoy:,.0f} µs. With the upstream elsewhere, 16 cores split as about "
            f"{processes:.0f} `serve` workers and {16 - processes:.0f} Envoy cores give about "
            f"{cpu_bound:,.0f} req/s, if nothing serial caps it first."
        )
        if name == "lynkr-sqlite":
            store = row["store_thread_us"]
            text += (
                " The cap here is SQLite's one write lock per file, which every process "
                "takes for each reserve and each settle batch. The store thread spends "
                f"{store:,.0f} µs of CPU per request inside it, plus the fsync of each batch, "
                f"so the file stops scaling near {1e6 / store:,.0f} req/s at best. Past that, "
                "use Redis and PostgreSQL."
                if store
                else ""
            )
        else:
            redis = row["cpu_us"].get("redis")
            if redis:
                text += (
                    f" Redis runs its scripts on one thread and spends {redis:,.0f} µs per "
                    f"request, which caps one Redis at about {1e6 / redis:,.0f} req/s; the "
                    "ledger writes go to PostgreSQL in batches through the outbox."
                )
        lines.append(text)
    curve = [
        (count, derived["json"][name]["32"]["rps"])
        for count, name in enumerate(SCALING[0][1], start=1)
        if "32" in derived["json"].get(name, {})
    ]
    if curve:
        best = max(curve, key=lambda point: point[1])
        shape = ", ".join(f"{count}: {rps:,.0f}" for count, rps in curve)
        lines.append(
            f"- On this {cores}-core machine the SQLite curve (processes: req/s) is {shape}, "
            f"best at {best[0]}. Envoy's {results['settings']['envoy_workers']} workers, the "
            "upstream and wrk already share the two cores, so another `serve` process takes CPU "
            "from them (the machine bound column) and contention raises the CPU per request. "
            "The prediction above assumes the per-request CPU measured here stays the same with "
            "more cores, which holds for the ext_proc processes (they share nothing but the "
            "store) and is optimistic for Envoy."
        )
    lines.append("")
    return lines


def slow_table(results: dict[str, Any]) -> list[str]:
    slow = results.get("slow_streams")
    if not slow:
        return ["Not run."]
    if "error" in slow:
        return [f"The test failed: `{slow['error']}`."]
    before = slow["before_kib"]
    lines = [
        (
            f"ext_proc RSS with no stream open: {before / 1024:.1f} MiB; after closing all: "
            f"{slow.get('after_close_kib', 0) / 1024:.1f} MiB."
        ),
        "",
        (
            "| streams requested | open while held | never opened | ended after opening "
            "| seconds to open | ext_proc RSS MiB (max while held) | growth per open stream "
            "| Envoy RSS MiB | upstream RSS MiB | Envoy ext_proc counters |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in slow["steps"]:
        per_stream = (step["ext_proc_kib"] - before) * 1.024 / max(step["open"], 1)
        counters = ", ".join(
            f"{name} {value:,}"
            for name, value in sorted(step.get("ext_proc_stats", {}).items())
            if name
            in (
                "immediate_responses_sent",
                "message_timeouts",
                "streams_failed",
                "stream_msgs_sent",
            )
        )
        lines.append(
            f"| {step['target']:,} | {step['open']:,} | {step['failed']:,} "
            f"| {step.get('ended_early', 'n/a')} | {step['open_seconds']} "
            f"| {step['ext_proc_kib'] / 1024:.1f} | {per_stream:.1f} KB "
            f"| {step['envoy_kib'] / 1024:.1f} | {step['upstream_kib'] / 1024:.1f} | {counters} |"
        )
    lines += [
        "",
        "Growth per open stream is (RSS while held − RSS before) / streams open while held.",
    ]
    if "records_added" in slow and slow["steps"]:
        admitted = slow["steps"][-1]["open"]
        lines += [
            "",
            f"Spend records the `serve` process wrote for these streams once they were closed "
            f"and it had drained: {slow['records_added']:,}, for {admitted:,} streams admitted.",
        ]
    return lines


PROFILE_MODES = {
    "cpu": "Python CPU: only the thread holding the GIL, with C frames (py-spy `--gil "
    "--native`, which pauses the process per sample)",
    "wall": "wall time of every thread py-spy counts as busy (`--threads --nonblocking`; "
    "an event loop waiting in `EpollSelector.select` counts as busy here)",
}


def profile_section(results: dict[str, Any]) -> list[str]:
    lines = []
    for key, profile in results.get("profiles", {}).items():
        name, _, mode = key.partition("/")
        label = f"{results['configurations'][name]['label']}, {PROFILE_MODES.get(mode, mode)}"
        if "error" in profile:
            lines += [f"**{label}**: py-spy failed: `{profile['error'].strip()}`", ""]
            continue
        lines += [
            (
                f"**{label}**: {profile['samples']:,} samples at 200 Hz while serving "
                f"{profile['rps_while_sampled']:,.0f} req/s at 32 connections."
            ),
            "",
        ]
        if profile["threads"]:
            threads = ", ".join(f"{n} {p:.0f} %" for n, p in profile["threads"])
            lines += [f"Samples per thread: {threads}.", ""]
        lines += [
            "| where the innermost frame is | share of samples |",
            "|---|---:|",
            *[f"| {n} | {p:.1f} % |" for n, p in profile["areas"] if p >= 0.5],
            "",
            "| busiest functions (self time) | share |",
            "|---|---:|",
            *[f"| `{n}` | {p:.1f} % |" for n, p in profile["self"][:10]],
            "",
        ]
    return lines


def render(results: dict[str, Any], markdown: Path, chart: Path) -> None:
    derived = derive(results)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(document(results, derived)) + "\n")
    draw(results, derived, chart)


def document(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    env, settings = results["environment"], results["settings"]
    text = [
        "# Benchmarks",
        "",
        (
            "lynkr-extproc's full path (key, budgets, routing, spend record) against Envoy "
            "alone, Envoy with an ext_proc that does nothing, and the LiteLLM proxy, all in "
            "front of the same local upstream on one 2-core machine. `bench/run.sh` "
            "regenerates this page, the chart and `bench/results/latest.json`."
        ),
        "",
        f"Measured {env['date']} with `{results['command']}` ({results.get('elapsed_s', '?')} s).",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {env['machine']} |",
        f"| lynkr-extproc | {env['lynkr']} |",
        f"| Envoy | {env['envoy']} (`--concurrency {settings['envoy_workers']}`) |",
        f"| Python, grpcio, protobuf | {env['python']}, {env['grpcio']}, {env['protobuf']} |",
        f"| LiteLLM | {env['litellm']} |",
        f"| Redis, PostgreSQL | {env['redis']}, {env['postgresql']} (shared with other work on this host) |",
        f"| load generator | wrk {env['wrk']}, one thread; SSE: bench/load.py |",
        f"| other work on the machine | {background_load(results)} |",
        "",
        "![throughput, latency and stream delay per configuration](benchmarks.png)",
        "",
    ]
    headline = [
        "## Targets",
        "",
        "Ratios compare req/s at 32 connections. Latencies are p50 over Envoy alone.",
        "",
        *targets(results, derived),
        "",
        *why_missed(results, derived),
    ]
    return text + headline + methods(results) + results_sections(results, derived)


def background_load(results: dict[str, Any]) -> str:
    """Describe the CPU that processes outside the benchmark used during the wrk runs."""
    duration = results["settings"]["duration_s"]
    cores = [
        run["other_cpu_s"] / duration
        for entry in results["measurements"].values()
        for runs in entry["json"].values()
        for run in runs
        if "other_cpu_s" in run
    ]
    if not cores:
        return "not measured"
    return (
        f"{statistics.median(cores):.2f} cores busy on median during the wrk runs "
        f"(min {max(0.0, min(cores)):.2f}, max {max(cores):.2f}), from /proc/stat less the measured "
        "processes and wrk"
    )


def methods(results: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    events, gap = settings["sse_events"], settings["sse_gap_ms"]
    return [
        "## What runs",
        "",
        (
            "Every configuration forwards the same request to the same upstream, "
            "`bench/fast_upstream.py`. It is an asyncio HTTP/1.1 server on 127.0.0.1 that "
            "returns a fixed OpenAI chat completion (JSON with `usage`). For "
            f'`"stream": true` it sends {events} SSE content events {gap:g} ms apart, a usage '
            f"event and `[DONE]`. The request is a {settings['request_bytes']:,}-byte chat "
            "completion (system and user message, `max_tokens` 256)."
        ),
        "",
        (
            "- **Envoy alone**: the bootstrap `lynkr-extproc envoy-config` generates (listener, "
            "buffer limits, compressor filters) with the ext_proc filter removed and one route "
            "straight to the upstream."
        ),
        (
            "- **Envoy + echo ext_proc (floor)**: the same bootstrap with the ext_proc filter "
            "and its settings unchanged, pointing at `bench/echo_extproc.py`. That grpc.aio "
            'server replies "continue" to every phase and sends the same `mode_override` as '
            "lynkr-extproc (STREAMED for event streams). Its route goes straight to the upstream."
        ),
        (
            "- **Envoy + echo ext_proc, response in observability_mode**: the floor with the "
            "response moved to a second ext_proc filter in `observability_mode` (see *Reading "
            "usage in observability_mode*)."
        ),
        (
            "- **lynkr**: `python -m lynkr_extproc serve` processes behind the generated "
            "bootstrap. The config has one virtual key, a day budget on the key and a month "
            "budget on its team, and four tiers chosen by the complexity score (no alias). Every "
            "request is scored, routed by its session's pinned tier (read from the store, then "
            "reused for 5 s), reserved, recorded, and logged at the default INFO level. Stores: SQLite (WAL, `synchronous=FULL`), Redis with a SQLite "
            "ledger, and Redis with the PostgreSQL ledger. Each run uses its own Redis key prefix "
            "and PostgreSQL schema and deletes them at the end. The rows with several "
            "processes list every `serve` address in `envoy.ext_proc_address`."
        ),
        (
            "- **LiteLLM proxy**: `litellm --config … --num_workers N` from its own virtual "
            "environment (`bench/.venv-litellm`), one model `openai/gpt-4o-mini` with `api_base` "
            "on the same upstream, a `master_key`, no database. See *LiteLLM setup* below."
        ),
        "",
        "## How it is measured",
        "",
        (
            f"- {settings['rounds']} rounds. In each round every configuration runs in turn, "
            "and the order rotates by one each round. A configuration's turn is wrk with 1 "
            f"connection and wrk with 32 connections, each for {settings['duration_s']:g} s, "
            f"then {settings['sse_streams']} streams one at a time and "
            f"{settings['sse_concurrent']} streams at once. Before the rounds, each "
            "configuration gets one JSON request and one stream that must succeed, and 2 s of "
            "warm-up load."
        ),
        (
            "- req/s and wrk's p50/p99 are per run. The tables show the median over rounds and "
            "the spread (min–max) of the rounds."
        ),
        (
            "- CPU µs per request: utime + stime from `/proc/PID/stat` of each process (all its "
            "threads and child processes) before and after each wrk run, summed over the rounds "
            "and divided by the requests wrk completed. Redis is the shared server on "
            "127.0.0.1:6379, PostgreSQL the backend processes serving lynkr's connections. RSS "
            "is the largest `/proc/PID/statm` resident size after a run."
        ),
        (
            "- SSE delay per event: the upstream writes `ts=<CLOCK_MONOTONIC ns>` into each "
            "event's text when it sends it. The client reads the same clock when the read that "
            "completes the event returns. The delay includes the Python client's own time, "
            'which is the same in every configuration, and "added" subtracts Envoy alone.'
        ),
        (
            "- Slow streams: a separate Envoy and one `serve` process (SQLite) in front of an "
            f"upstream that sends one event every {settings['slow_gap_ms'] / 1000:g} s. The "
            "client opens streams over HTTP/2, 100 per connection, so that Envoy stays below "
            "this machine's limit of 20,000 open files. It holds each step for several seconds "
            "and reads the ext_proc's RSS each second. For this test the bench sets every "
            "cluster's circuit breakers to 100,000, whatever the generated bootstrap sets. A "
            "second probe opens 1,100 slow streams through the generated bootstrap unchanged "
            "(see Findings)."
        ),
        "",
    ]


def results_sections(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    lines = ["## JSON requests", "", *json_table(results, derived), ""]
    lines += ["Ratios at 32 connections (req/s):", "", *ratios(results, derived), ""]
    lines += ["## Streams (SSE)", "", *sse_table(results, derived), ""]
    lines += event_loop_section(results, derived)
    lines += observer_section(results, derived)
    lines += [
        "## Several processes behind one Envoy",
        "",
        *scaling_table(results, derived),
        "",
    ]
    lines += ["## Memory per open stream", "", *slow_table(results), ""]

    lines += ["## Spend records", ""]
    for name, counts in results.get("spend_records", {}).items():
        lines.append(
            f"- {results['configurations'][name]['label']}: {counts['records']:,} records for "
            f"{counts['completed']:,} completed requests (requests cut when wrk stops are "
            "recorded too)."
        )

    lines += ["", "## Where lynkr's time goes", "", *observations(results, derived), ""]
    lines += profile_section(results)
    lines += ["## LiteLLM setup", "", *litellm_section(results), ""]
    lines += ["## Findings", "", *findings(results), ""]
    lines += ["## Warnings and errors in lynkr's logs", "", *log_section(results), ""]
    return lines


def event_loop_section(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """Compare `server.event_loop` uvloop (the default) with asyncio's own loop."""
    rows = [derived["json"].get(n, {}) for n in ("lynkr-sqlite", "lynkr-sqlite-asyncio")]
    if not all("32" in row for row in rows):
        return []
    uvloop, plain = rows
    lines = [
        "## Event loop",
        "",
        "| `server.event_loop` | req/s, 32 connections | ext_proc CPU µs per request | p50 ms, 1 connection |",
        "|---|---:|---:|---:|",
    ]
    for label, row in (("uvloop (default)", uvloop), ("asyncio", plain)):
        lines.append(
            f"| {label} | {row['32']['rps']:,.0f} | {row['32']['cpu_us']['ext_proc']:,.0f} "
            f"| {row['1']['p50_ms']:.2f} |"
        )
    saved = 1 - uvloop["32"]["cpu_us"]["ext_proc"] / plain["32"]["cpu_us"]["ext_proc"]
    lines += ["", f"uvloop spends {saved:.0%} less ext_proc CPU per request than asyncio's loop.", ""]
    return lines


def observer_section(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """Compare reading the response in the request path with an observer filter."""
    pairs = (("in the request path (floor)", "floor"), ("observability_mode", "floor-observe"))
    json_rows, sse_rows = derived["json"], derived["sse"]
    if not all(name in json_rows for _, name in pairs):
        return []
    concurrent = str(results["settings"]["sse_concurrent"])
    alone = sse_rows.get("alone")

    lines = [
        "## Reading usage in observability_mode instead of in the request path",
        "",
        (
            "Both rows run the echo ext_proc, so they show what the mode costs, not lynkr's "
            "logic. *In the request path* is the floor above: one filter, and Envoy waits for "
            "the reply to each of request headers, request body, response headers and "
            "response body (each event's chunk when streamed). *observability_mode* keeps the "
            "request phases in the request path and moves the response to a second ext_proc "
            "filter with `observability_mode: true`: Envoy sends it the response headers and "
            "the streamed body and never waits (`bench/stacks.py`, `observe_bootstrap`)."
        ),
        "",
        (
            "| response read | req/s, 1 connection | req/s, 32 connections | p50 ms, 1 connection "
            "| CPU µs per request (ext_proc, Envoy) | SSE: added ms per event, 1 stream "
            f"| added ms per event, {concurrent} streams |"
        ),
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for label, name in pairs:
        one, wide = json_rows[name]["1"], json_rows[name]["32"]
        sse = sse_rows.get(name, {})
        serial = sse.get("1", {}).get("p50_ms", float("nan"))
        many = sse.get(concurrent, {}).get("p50_ms", float("nan"))
        if alone:
            serial -= alone["1"]["p50_ms"]
            many -= alone[concurrent]["p50_ms"]
        lines.append(
            f"| {label} | {one['rps']:,.0f} | {wide['rps']:,.0f} | {one['p50_ms']:.2f} "
            f"| {wide['cpu_us']['ext_proc']:,.0f}, {wide['cpu_us']['envoy']:,.0f} "
            f"| {serial:+.2f} | {many:+.2f} |"
        )

    lines += [
        "",
        "What each risks for billing when the ext_proc process dies:",
        "",
        (
            "- **In the request path** (what lynkr-extproc does): Envoy holds each response "
            "chunk until the ext_proc answers, and the filter has `failure_mode_allow: false`. "
            "If the process dies mid-stream, Envoy resets the client's stream and the upstream "
            "request, so generation stops where the client stops reading. That stream's spend "
            "is not recorded, its hold expires, and every settled request stays recorded "
            "exactly once (`tests/test_faults.py::test_extproc_killed_mid_stream` prints the "
            "figures). The same path is what lets lynkr translate a stream, strip the usage "
            "chunk it asked for, and end a stream with the client API's error event."
        ),
        (
            "- **observability_mode**: the client is never held, so the response finishes "
            "even when the observer is dead or slow, and the whole response goes unbilled: "
            "the usage is in the last events, which never reach a dead process. Envoy also "
            "closes an observer stream `deferred_close_timeout` (5 s by default) after the "
            "response ends, so an observer lagging by more than that under load loses the "
            "usage of healthy requests too. The observer cannot change the response, so "
            "translated and reframed responses (Claude Code on a chat tier, Bedrock streams) "
            "still need the request path. Admission (key, budget reserve, routing) needs the "
            "request path in both designs, so a dead ext_proc still fails new requests "
            "with 503."
        ),
    ]

    floor, observe = json_rows["floor"], json_rows["floor-observe"]
    sse_floor = sse_rows.get("floor", {}).get("1", {}).get("p50_ms", float("nan"))
    sse_observe = sse_rows.get("floor-observe", {}).get("1", {}).get("p50_ms", float("nan"))
    cpu_floor = floor["32"]["cpu_us"]["ext_proc"] + floor["32"]["cpu_us"]["envoy"]
    cpu_observe = observe["32"]["cpu_us"]["ext_proc"] + observe["32"]["cpu_us"]["envoy"]
    lines += [
        (
            f"- In numbers: the observer takes {sse_floor - sse_observe:.2f} ms off each "
            "event of a stream, because Envoy no longer waits for a reply per chunk. It costs "
            f"{cpu_observe - cpu_floor:+,.0f} µs of ext_proc and Envoy CPU per JSON request at "
            f"32 connections ({observe['32']['rps']:,.0f} against {floor['32']['rps']:,.0f} "
            "req/s), because the second filter opens a second gRPC stream per request."
        ),
        (
            "- lynkr keeps the response in the request path. There a dead process stops a "
            "response instead of letting it finish unbilled, and translation and error events "
            "need that path anyway."
        ),
        "",
    ]
    return lines


def log_section(results: dict[str, Any]) -> list[str]:
    problems = results.get("log_problems")
    if problems is None:
        return ["Not collected."]
    if not problems:
        return ["None: no lynkr process logged a WARNING or ERROR line."]
    lines = []
    for name, groups in problems.items():
        for group in groups:
            lines.append(f"- `{name}`: {group['count']:,} × `{group['example']}`")
    return lines


def ratios(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    json_rows = derived["json"]
    floor = json_rows.get("floor", {}).get("32")
    litellm = json_rows.get("litellm", {}).get("32")
    lines = []
    for name in LYNKR_STORES:
        row = json_rows.get(name, {}).get("32")
        if row is None:
            continue
        parts = []
        if floor:
            parts.append(f"{_ratio(row['rps'], floor['rps'])}× the floor")
        if litellm:
            parts.append(f"{_ratio(row['rps'], litellm['rps'])}× LiteLLM")
        lines.append(
            f"- {results['configurations'][name]['label']}: " + ", ".join(parts)
        )
    return lines


def observations(results: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """State the per-request CPU split that the JSON table implies."""
    json_rows = derived["json"]
    floor, alone = (
        json_rows.get("floor", {}).get("32"),
        json_rows.get("alone", {}).get("32"),
    )
    lines = []
    if floor and alone:
        lines.append(
            f"- The echo floor's Python ext_proc spends {floor['cpu_us']['ext_proc']:.0f} µs of CPU "
            f"per request on four gRPC messages, and Envoy {floor['cpu_us']['envoy']:.0f} µs "
            f"against {alone['cpu_us']['envoy']:.0f} µs without ext_proc."
        )
    for name in LYNKR_STORES:
        row = json_rows.get(name, {}).get("32")
        if not row or not floor:
            continue
        extra = row["cpu_us"]["ext_proc"] - floor["cpu_us"]["ext_proc"]
        shared = ", ".join(
            f"{ROLE_NAMES[r]} {row['cpu_us'][r]:.0f} µs"
            for r in ("redis", "postgres")
            if r in row["cpu_us"]
        )
        lines.append(
            f"- {results['configurations'][name]['label']}: the ext_proc process spends "
            f"{row['cpu_us']['ext_proc']:.0f} µs per request, {extra:.0f} µs more than the floor"
            + (f"; {shared}" if shared else "")
            + f". At 32 connections it serves {row['rps']:,.0f} req/s, "
            f"one request every {1e6 / row['rps']:.0f} µs."
        )
    return lines


def litellm_section(results: dict[str, Any]) -> list[str]:
    env = results["environment"]
    probe = results.get("litellm_budget_probe")
    lines = [
        (
            f"LiteLLM {env['litellm']} runs from `bench/.venv-litellm` with `--num_workers 1` and "
            "`--num_workers 2`, `LITELLM_LOG=ERROR` (errors only) and the "
            "`LITELLM_LOCAL_*` variables that make it read its bundled model price map and "
            "other files instead of fetching them at start. Its config has one model and a "
            "`master_key`; clients authenticate with the master key."
        ),
        "",
        (
            "What it could enable here: request routing to the one model, master-key "
            "authentication, and the per-request cost it computes (the `x-litellm-response-cost` "
            "header)."
        ),
        "",
        (
            "What it could not enable: virtual keys, key and team budgets and the spend log. "
            "They need LiteLLM's database, which it reaches through Prisma Client Python "
            "(0.15.0). When a database URL is set, the proxy runs `prisma generate` and its "
            "migrations at start. Prisma Client Python installs the Prisma CLI 5.17.0 with npm, "
            "and the CLI's `@prisma/fetch-engine` package downloads the native query and schema "
            "engines from Prisma's own server (or a `PRISMA_ENGINES_MIRROR`), which is not a "
            "package registry. This machine reaches only the package registries, so no "
            "PostgreSQL schema for LiteLLM was set up, and the LiteLLM rows run with no budget "
            "check and no spend record."
        ),
    ]
    if probe:
        statuses = ", ".join(str(s) for s in probe["statuses"])
        lines += [
            "",
            (
                f"Without a database, LiteLLM accepts `litellm_settings.max_budget` but does not enforce "
                f"it: with `max_budget: {probe['max_budget_usd']}` and a cost of "
                f"${float(probe['cost_per_request_usd'] or 0):.6f} per request, six requests got "
                f"statuses {statuses}. LiteLLM's own start-up warning says the same "
                "(`warn_budget_without_db` in `litellm/proxy/proxy_server.py`)."
            ),
        ]
    return lines


def findings(results: dict[str, Any]) -> list[str]:
    lines = []
    breakers = (results.get("slow_streams") or {}).get("default_breakers")
    if breakers:
        outcomes = ", ".join(
            f"{n:,} {k}" for k, n in sorted(breakers["outcomes"].items())
        )
        stats = ", ".join(
            f"`{k}` {v:,}" for k, v in sorted(breakers["stats"].items()) if v
        )
        refused = sum(n for k, n in breakers["outcomes"].items() if k != "status 200")
        if refused:
            headline = (
                "- **The generated bootstrap stops at Envoy's default of 1,024 concurrent "
                "requests per cluster.** "
            )
        else:
            headline = (
                "- **The generated bootstrap admits more than 1,024 concurrent streams** "
                "(Envoy's default circuit-breaker threshold per cluster). "
            )
        lines.append(
            headline
            + f"Opening {breakers['requested']:,} slow streams through it gave: {outcomes}. "
            f"Envoy counters: {stats}."
        )
    slow = [
        group
        for name, groups in (results.get("log_problems") or {}).items()
        if name.startswith("slow.")
        for group in groups
    ]
    retried = [g for g in slow if "spend record failed, retrying" in g["example"]]
    lost = [g for g in slow if "spend record failed" in g["example"] and g not in retried]
    rejected = [g for g in slow if "budget store failed" in g["example"]]
    if lost:
        count = sum(group["count"] for group in lost)
        lines.append(
            "- **Spend records lost when many streams end at once.** Closing the slow streams "
            f"made the `serve` process log {count:,} × `{lost[0]['example']}`. The SQLite store "
            "has no outbox, so a record whose every retry timed out is not charged."
        )
    elif retried:
        count = sum(group["count"] for group in retried)
        lines.append(
            "- **Spend writes retried when many streams end at once.** Closing the slow streams "
            f"made {count:,} settles wait past the `server.store_timeout_ms` deadline (1 s by "
            "default) behind the SQLite store's one thread; each was written on a later try "
            "(`SETTLE_RETRIES` in `lynkr_extproc/processor.py`), and no record was lost (no "
            "\"failed N times\" line in the log)."
        )
    if rejected:
        count = sum(group["count"] for group in rejected)
        lines.append(
            f"- **Reserves timed out while thousands of streams opened.** {count:,} requests were "
            "rejected with 503 because the store's thread was behind by more than "
            "`server.store_timeout_ms`. Raise that setting, or run more `server.workers`, for "
            "bursts of this size."
        )
    return lines or ["None beyond the tables."]


# -- chart ----------------------------------------------------------------------


def draw(results: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(derived["json"])
    labels = [
        results["configurations"][n]["label"].replace(", ", "\n", 1) for n in names
    ]
    figure, axes = plt.subplots(1, 3, figsize=(17, max(6.5, 0.55 * len(names))))

    wide = [derived["json"][n]["32"] for n in names]
    bars = axes[0].barh(
        labels,
        [s["rps"] for s in wide],
        color="#4477aa",
        xerr=[
            [s["rps"] - s["rps_min"] for s in wide],
            [s["rps_max"] - s["rps"] for s in wide],
        ],
    )
    axes[0].bar_label(
        bars, labels=[f"{s['rps']:,.0f}" for s in wide], padding=4, fontsize=8
    )
    axes[0].set_xscale("log")
    axes[0].set_title("JSON req/s, 32 connections (log scale)")

    serial = [derived["json"][n]["1"] for n in names]
    bars = axes[1].barh(
        labels,
        [s["p50_ms"] for s in serial],
        color="#ee7733",
        xerr=[
            [s["p50_ms"] - s["p50_min"] for s in serial],
            [s["p50_max"] - s["p50_ms"] for s in serial],
        ],
    )
    axes[1].bar_label(
        bars, labels=[f"{s['p50_ms']:.2f}" for s in serial], padding=4, fontsize=8
    )
    axes[1].set_xscale("log")
    axes[1].set_title("JSON p50 latency ms, 1 connection (log scale)")
    axes[1].set_yticklabels([])

    alone = derived["sse"]["alone"]["1"]["p50_ms"] if "alone" in derived["sse"] else 0.0
    added = [derived["sse"][n]["1"]["p50_ms"] - alone for n in names]
    bars = axes[2].barh(labels, added, color="#228833")
    axes[2].bar_label(bars, labels=[f"{a:+.2f}" for a in added], padding=4, fontsize=8)
    axes[2].set_title("SSE added delay per event, ms p50 (1 stream)")
    axes[2].set_yticklabels([])

    for axis in axes:
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
        axis.margins(x=0.15)
    env = results["environment"]
    figure.suptitle(
        f"lynkr-extproc benchmark, {env['date']}, {env['machine']}. "
        "Bars: median over rounds; black lines: min–max of the rounds.",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
