"""REPORT.md from results.json: the goals table, the figures per scenario, the sections.

Text only (standard library); ``markdown`` is called by report.py's ``render``. Each
section is a function of the summarised results, so the report can be re-rendered from a
committed results.json at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GOALS = {
    "streams": 10_000,
    "hold_s": 120,
    "lateness_p99_ms": 250,
    "kb_per_stream": 30,
    "ok_p50_ms": 5,
    "ok_ratio": 1.5,
    "reload_streams": 5_000,
    "restart_streams": 1_000,
}
HERD_PEAK_SHARE = 0.2  # a spread herd: no second holds more than this share of reconnects


def _v(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items()) or "none"


def _pct(stats: dict[str, Any], key: str) -> Any:
    return stats.get(key) if stats and stats.get("n") else None


def reconnects_per_second(series: list[list[float]]) -> list[list[float]]:
    """[t, reconnects in the second before t] from the summarised series (cumulative)."""
    out: list[list[float]] = []
    prev = 0.0
    for row in series:
        out.append([row[0], row[3] - prev])
        prev = row[3]
    return out


def herd(series: list[list[float]]) -> dict[str, Any]:
    """How bunched the reconnects were: the busiest second and the 10-90 % window."""
    per_s = [r for r in reconnects_per_second(series) if r[1] > 0]
    total = sum(r[1] for r in per_s)
    if not total:
        return {"reconnects": 0}
    seen, t10, t90 = 0.0, None, None
    for t, n in per_s:
        seen += n
        if t10 is None and seen >= 0.1 * total:
            t10 = t
        if t90 is None and seen >= 0.9 * total:
            t90 = t
    peak = max(per_s, key=lambda r: r[1])
    return {
        "reconnects": int(total),
        "peak_per_s": int(peak[1]),
        "peak_at_s": peak[0],
        "peak_share": round(peak[1] / total, 3),
        "window_10_90_s": round((t90 or 0) - (t10 or 0), 1),
    }


def _cpu(entry: dict[str, Any] | None) -> str:
    """nginx / backend / load generator CPU (% of a core) in the steady part of a run."""
    if not entry:
        return "-"
    res = entry["resources"]
    return " / ".join(
        _v(res.get(g, {}).get("cpu_pct"), "", 0) for g in ("nginx", "backend", "probe")
    )


def _bound(entry: dict[str, Any] | None) -> str:
    """Which process was busiest in the steady part: what bounded the run's latencies."""
    if not entry:
        return ""
    res = entry["resources"]
    cpu = {g: res.get(g, {}).get("cpu_pct") or 0.0 for g in ("nginx", "backend", "probe")}
    name = max(cpu, key=lambda g: cpu[g])
    label = {"nginx": "nginx", "backend": "the backend", "probe": "the load generator"}[name]
    return f"busiest: {label} ({cpu[name]:.0f}% of a core)"


Row = tuple[str, str, str, str, str, str]  # figure, goal, measured, CPU, verdict, bound/lever


def _verdict(met: bool, full_size: bool) -> str:
    if not met:
        return "**missed**"
    return "met" if full_size else "met at this size (not the goal's)"


def _goal_streams(hold: dict[str, Any], direct: dict[str, Any] | None) -> list[Row]:
    load = hold["load"]
    full = load["streams"] >= GOALS["streams"] and load["hold_s"] >= GOALS["hold_s"]
    held = load["open_at_end"] == load["streams"] and load["drops"] == 0
    limits = ", ".join(f"{k} {v['count']}" for k, v in (load.get("limits") or {}).items())
    rows: list[Row] = [
        (
            "streams held through nginx",
            "10,000 held 120 s, 0 dropped",
            f"{load['streams']:,} for {load['hold_s']:g} s: {load['open_at_end']:,} open at"
            f" the end, {load['drops']} dropped, {load['never_opened']} never opened"
            + (f"; limits hit: {limits}" if limits else ""),
            _cpu(hold),
            _verdict(held, full),
            ""
            if held
            else "open-files limits (a limit by name above), or the ramp's handshakes;"
            " next lever: see the failures in the figures table",
        )
    ]
    p99 = _pct(load["keepalive_lateness_ms"], "p99")
    d99 = _pct(direct["load"]["keepalive_lateness_ms"], "p99") if direct else None
    late_ok = p99 is not None and p99 <= GOALS["lateness_p99_ms"]
    rows.append(
        (
            "keepalive lateness p99",
            "<= 250 ms",
            f"{_v(p99, ' ms')} through nginx; {_v(d99, ' ms')} straight to the backend",
            _cpu(hold),
            _verdict(late_ok, full),
            ""
            if late_ok
            else f"{_bound(hold)}; late straight to the backend too, so the one Python"
            " worker writing the keepalives (beside the generator on the same cores) bounds it;"
            " (keepalives already go out by one sweep per worker); next lever:"
            " sse_backend_workers > 1 with the broker, the generator on its own cores",
        )
    )
    return rows


def split_kb(split: dict[str, Any] | None) -> dict[str, float]:
    """nginx's KB per stream by variant of bench/nginx_split.py (empty without its run)."""
    variants = (split or {}).get("variants") or {}
    return {
        name: v["resources"]["nginx"]["pss_per_stream_kb"]
        for name, v in variants.items()
        if (v.get("resources") or {}).get("nginx", {}).get("pss_per_stream_kb") is not None
    }


def _split_text(split: dict[str, Any] | None) -> str:
    """The measured split of nginx's share, when nginx_split.json is beside the results."""
    kb = split_kb(split)
    if not {"h1-tls", "h1-plain"} <= kb.keys():
        return "its split into TLS and HTTP/upstream state: `bench/nginx_split.py`"
    tls = kb["h1-tls"] - kb["h1-plain"]
    text = (
        f"nginx_split.md (2,000 streams): of nginx's {kb['h1-tls']:.1f} KB the TLS connection"
        f" is {tls:.1f}, HTTP and upstream state {kb['h1-plain']:.1f}"
    )
    # many streams per connection; c2000 is one stream per connection (not multiplexed)
    muxed = [kb[n] for n in kb if n.startswith("h2-tls-c") and n != "h2-tls-c2000"]
    if muxed:
        text += f"; HTTP/2 with many streams per connection {min(muxed):.1f}-{max(muxed):.1f}"
    return text


def _goal_memory(hold: dict[str, Any], split: dict[str, Any] | None = None) -> list[Row]:
    res, load = hold["resources"], hold["load"]
    per = res.get("nginx_plus_backend_pss_per_stream_kb")
    if per is None:
        return []
    met = per <= GOALS["kb_per_stream"]
    nginx_kb, backend_kb = res["nginx"]["pss_per_stream_kb"], res["backend"]["pss_per_stream_kb"]
    return [
        (
            "memory per stream, nginx + backend",
            "<= 30 KB",
            f"{per:.1f} KB: nginx {nginx_kb:.1f} + backend {backend_kb:.1f} (PSS growth /"
            " streams open)",
            _cpu(hold),
            _verdict(met, load["streams"] >= GOALS["streams"]),
            ""
            if met
            else f"the larger share is {'nginx' if nginx_kb >= backend_kb else 'the backend'};"
            f" {_split_text(split)}; nginx's buffers are at their best measured sizes"
            " (LEVERS.md), so without TLS nginx + backend would be at the goal, with no margin."
            " Next levers, by size: the TLS connection's state (shared only where one client"
            " holds several streams over HTTP/2), the backend's per-connection objects in"
            " Uvicorn (app_streams.md), nginx's HTTP/upstream state",
        )
    ]


def _goal_ok(hold: dict[str, Any], direct: dict[str, Any]) -> list[Row]:
    hl, dl = hold["load"], direct["load"]
    resumed = hl.get("tls_resume") and (hl.get("resumed_ok_ms") or {}).get("n")
    ok_key = "resumed_ok_ms" if resumed else "ok_ms"
    fb_key = "resumed_first_byte_ms" if resumed else "first_byte_ms"
    ok_n, ok_d = _pct(hl[ok_key], "p50"), _pct(dl["ok_ms"], "p50")
    fb_n, fb_d = _pct(hl[fb_key], "p50"), _pct(dl["first_byte_ms"], "p50")
    if ok_n is None or not ok_d or fb_n is None or not fb_d:
        return []
    how = (
        f"TLS resumed ({hl['tls']['resumed']:,} of {hl['opened']:,} first connections)"
        if resumed
        else "full TLS handshakes"
    )
    full = hl["streams"] >= GOALS["streams"]
    p50_ok = ok_n <= GOALS["ok_p50_ms"]
    ratio, fb_ratio = ok_n / ok_d, fb_n / fb_d
    lever = (
        "the TLS handshake on both ends of one host and the extra hop; next lever: HTTP/2"
        " (a returning browser's EventSource rides an open connection: request -> :ok is"
        " then the whole cost)"
    )
    return [
        (
            ":ok p50 from connect start",
            "<= 5 ms, TLS resumed",
            f"{ok_n:.1f} ms ({how})",
            _cpu(hold),
            _verdict(p50_ok, full),
            "" if p50_ok else lever,
        ),
        (
            ":ok ratio nginx+TLS / direct, from connect start",
            "<= 1.5x",
            f"{ratio:.1f}x ({ok_n:.1f} vs {ok_d:.1f} ms)",
            _cpu(hold),
            _verdict(ratio <= GOALS["ok_ratio"], full),
            "" if ratio <= GOALS["ok_ratio"] else lever,
        ),
        (
            ":ok ratio nginx+TLS / direct, from request",
            "<= 1.5x",
            f"{fb_ratio:.1f}x ({fb_n:.1f} vs {fb_d:.1f} ms)",
            _cpu(hold),
            _verdict(fb_ratio <= GOALS["ok_ratio"], full),
            ""
            if fb_ratio <= GOALS["ok_ratio"]
            else "the extra hop through nginx and its TLS record on one busy host; next lever:"
            " the generator on its own cores (it shares them with both servers here)",
        ),
    ]


def _jittered(load: dict[str, Any]) -> bool:
    """The clients got different retry: values (the server jitters them)."""
    low_high = load.get("retry_range_ms") or []
    return len(low_high) == 2 and low_high[0] != low_high[1]


def _retries(load: dict[str, Any]) -> str:
    """The retry: values the clients got (a range when the server jitters them)."""
    if _jittered(load):
        low, high = load["retry_range_ms"]
        return f"{low:,}-{high:,} ms"
    return f"{load.get('retry_ms')} ms"


def _goal_restart(restart: dict[str, Any]) -> Row:
    load, rs = restart["load"], restart["restart"]
    retry = (load.get("retry_ms") or 0) / 1000.0
    back = _pct(load["time_back_ms"], "max")
    # beyond each client's own retry: (jittered retries differ per stream); older results
    # have only the time back, against the one retry: they saw
    over = _pct(load.get("back_over_retry_ms") or {}, "max")
    if over is None and back is not None:
        over = back - retry * 1000
    met = (
        load["non_200"] == 0
        and rs["publish_not_202"] == 0
        and load["open_at_end"] == load["streams"]
        and load["events_lost"] == 0
        and (over is None or over <= 1000)
    )
    gap = None
    if rs.get("restart_seen_s") is not None and rs.get("drops_window_s"):
        gap = rs["restart_seen_s"] - rs["drops_window_s"][0]
    return (
        "restart: time back, answers, events",
        "1,000 streams back within retry + 1 s, 0 non-200, 0 lost",
        f"{load['streams']:,} streams: back max {_v(back, ' ms', 0)}, at most"
        f" {_v(over, ' ms', 0)} beyond the client's own retry: ({_retries(load)}),"
        f" {load['non_200']} non-200, {rs['publish_not_202']} failed publishes,"
        f" {load['events_lost']} lost, {load['open_at_end']:,} open at the end",
        _cpu(restart),
        _verdict(met, load["streams"] >= GOALS["restart_streams"]),
        ""
        if met
        else "the herd of reconnects served by one worker"
        + (f" (new Gunicorn seen {gap:.1f} s after the drops)" if gap is not None else "")
        + "; stop + boot fit within the retry (restart_gap.md); next levers: a wider"
        " SSE_RETRY_JITTER_MS, sse_backend_workers > 1 with the broker",
    )


def _goal_reload(reload: dict[str, Any], meta: dict[str, Any]) -> list[Row]:
    load, rl = reload["load"], reload["reload"]
    full = load["streams"] >= GOALS["reload_streams"]
    met = (
        rl.get("drops_before_shutdown_timeout") == 0
        and rl.get("drops_before_reload") == 0
        and load["open_at_end"] == load["streams"]
        and load["events_lost"] == 0
        and rl.get("old_workers_at_end") == 0
    )
    rows: list[Row] = [
        (
            "reload: nothing dropped early",
            "5,000 streams: 0 dropped before worker_shutdown_timeout, all resume, 0 lost,"
            " no old worker left",
            f"{load['streams']:,} streams: {rl.get('drops_before_shutdown_timeout')} dropped"
            f" before the {meta['worker_shutdown_timeout_s']:g} s timeout,"
            f" {rl.get('drops_after_shutdown_timeout')} at it; {load['open_at_end']:,} open at"
            f" the end; {load['events_lost']} lost; old workers left"
            f" {rl.get('old_workers_at_end')}",
            _cpu(reload),
            _verdict(met, full),
            "" if met else "see the Reload section",
        )
    ]
    h = reload.get("herd") or herd(load["series"])
    if h.get("reconnects"):
        flat = h["peak_share"] <= HERD_PEAK_SHARE and (reload.get("listen_overflows") or 0) == 0
        jitter = meta.get("retry_jitter_ms")
        rows.append(
            (
                "reload: the reconnect herd",
                f"spread: the busiest second <= {HERD_PEAK_SHARE:.0%} of the reconnects, 0"
                " listen-queue overflows",
                f"busiest second {h['peak_per_s']:,} of {h['reconnects']:,}"
                f" ({h['peak_share']:.0%}), 10-90 % of them within {h['window_10_90_s']:g} s;"
                f" overflows {_v(reload.get('listen_overflows'))}; time back p50"
                f" {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)}"
                + f"; retry: {_retries(load)}"
                + (f" (SSE_RETRY_JITTER_MS {jitter}" if jitter else "")
                + (
                    ": one retry: seen, the app does not jitter)"
                    if jitter and len(set(load.get("retry_range_ms") or [0])) < 2
                    else (")" if jitter else "")
                ),
                _cpu(reload),
                _verdict(flat, full),
                ""
                if flat
                else "nginx cuts every old worker's stream at the timeout and every client"
                " waits the same retry:; next lever: jittered retry: values"
                " (SSE_RETRY_JITTER_MS, `bench.py --retry-jitter-ms`) or the backend"
                " ending streams gradually before the timeout",
            )
        )
    return rows


def goal_rows(r: dict[str, Any]) -> list[Row]:
    """One row per figure of issue 20 this run can speak to."""
    runs, meta = r["runs"], r["meta"]
    hold, direct = runs.get("hold"), runs.get("direct")
    rows: list[Row] = []
    if hold:
        rows += _goal_streams(hold, direct) + _goal_memory(hold, r.get("nginx_split"))
    if hold and direct:
        rows += _goal_ok(hold, direct)
    if runs.get("restart"):
        rows.append(_goal_restart(runs["restart"]))
    reload = runs.get("reload")
    if reload and "reload" in reload:
        rows += _goal_reload(reload, meta)
    return rows


def fanout_table(r: dict[str, Any]) -> list[str]:
    """Issue 17's fan-out figures: with the broker beside the single process."""
    names = [n for n in ("fanout", "fanout-broker") if n in r["runs"]]
    if not names:
        return []
    label = {"fanout": "single process (no broker)", "fanout-broker": "with the broker"}
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        (
            "streams open at the end / opened",
            lambda e: f"{e['load']['open_at_end']:,} / {e['load']['opened']:,}",
        ),
        ("backend workers", lambda e: _v(e.get("fanout", {}).get("workers", 1))),
        ("publish rate asked (events/s)", lambda e: _v(e.get("fanout", {}).get("rate_per_s"))),
        (
            "events/s published (acknowledged)",
            lambda e: _v((e["load"].get("published") or {}).get("events_per_s")),
        ),
        (
            "publish answers",
            lambda e: _counts((e["load"].get("published") or {}).get("answers", {})),
        ),
        (
            "delivery latency p50 / p95 / p99 / max ms (publish sent -> received)",
            lambda e: " / ".join(
                _v(_pct(e["load"]["delivery_ms"], k)) for k in ("p50", "p95", "p99", "max")
            ),
        ),
        ("deliveries measured", lambda e: _v(e["load"]["delivery_ms"]["n"])),
        ("events lost", lambda e: _v(e["load"]["events_lost"])),
        (
            "CPU nginx / backend / generator / broker (% of a core)",
            lambda e: " / ".join(
                _v(e["resources"].get(g, {}).get("cpu_pct"), "", 0)
                for g in ("nginx", "backend", "probe", "broker")
            ),
        ),
        (
            "host load average at start / end",
            lambda e: " / ".join(f"{v:.1f}" for v in e["load"].get("host_loadavg", [])),
        ),
    ]
    out = [
        "## Fan-out (issue 17): events published to every stream, with and without the broker",
        "",
        "Streams through nginx (TLS resumed); the load publishes at a fixed rate straight to"
        " the backend (POST /notify/publish) and times each event from the moment its publish"
        " request is sent to its arrival on each stream, on one clock (the load's own"
        " process). With the broker, roles/sse_broker's redis-server runs in the same"
        " container and the backend gets `sse_backend_broker_url`.",
        "",
        "| | " + " | ".join(label[n] for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for title, fn in rows:
        cells = []
        for n in names:
            try:
                cells.append(fn(r["runs"][n]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _groups(entry: dict[str, Any]) -> tuple[str, str]:
    """The nginx and backend process groups a run loaded."""
    if entry["name"] == "baseline":
        return "naive_nginx", "naive_backend"
    return "nginx", "backend"


def _per_stream(entry: dict[str, Any], which: int) -> str:
    if entry["name"] != "hold" and entry["name"] != "direct" and entry["name"] != "baseline":
        return "-"  # not a fresh process: see the holds
    group = _groups(entry)[which]
    return _v(entry["resources"].get(group, {}).get("pss_per_stream_kb"), "", 1)


_LABELS = {
    "hold": "hold: nginx (TLS)",
    "direct": "hold: direct to backend",
    "baseline": "hold: naive deployment",
    "fanout": "fan-out: single process",
    "reload": "reload (nginx)",
    "restart": "restart (nginx)",
    "fanout-broker": "fan-out: broker",
}
_ORDER = ("hold", "direct", "baseline", "fanout", "reload", "restart", "fanout-broker")

# One row of the figures table: its title and its cell from (load, entry) of a run.
_RUN_ROWS: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]] = [
    ("streams", lambda L, E: _v(L["streams"])),
    (
        "host load average at start / end (2 cores)",
        lambda L, E: " / ".join(f"{v:.1f}" for v in L.get("host_loadavg", [])) or "-",
    ),
    ("ramp + hold (s)", lambda L, E: f"{L['ramp_s']:g} + {L['elapsed_s'] - L['ramp_s']:.0f}"),
    ("opened", lambda L, E: _v(L["opened"])),
    ("held to the end (no drop)", lambda L, E: _v(L["held"])),
    ("dropped (drops)", lambda L, E: f"{L['dropped']:,} ({L['drops']:,})"),
    (
        "reconnected / open at the end",
        lambda L, E: f"{L['reconnects']:,} / {L['open_at_end']:,}",
    ),
    ("never opened", lambda L, E: _v(L["never_opened"])),
    (
        "non-200 answers",
        lambda L, E: ", ".join(f"{k} x{v}" for k, v in L["statuses"].items()) or "0",
    ),
    (
        "other failed attempts",
        lambda L, E: (
            ", ".join(f"{k} x{v}" for k, v in L["attempt_failures"].items() if k != "status") or "0"
        ),
    ),
    (
        "connect (TCP+TLS) p50 / p99 ms",
        lambda L, E: f"{_v(_pct(L['connect_ms'], 'p50'))} / {_v(_pct(L['connect_ms'], 'p99'))}",
    ),
    (
        "request -> :ok p50 / p95 / p99 ms",
        lambda L, E: " / ".join(_v(_pct(L["first_byte_ms"], k)) for k in ("p50", "p95", "p99")),
    ),
    (
        "connect start -> :ok p50 / p95 / p99 ms",
        lambda L, E: " / ".join(_v(_pct(L["ok_ms"], k)) for k in ("p50", "p95", "p99")),
    ),
    (
        "TLS resumed / full handshakes (first connections)",
        lambda L, E: (
            f"{L['tls']['resumed']:,} / {L['tls']['full_handshakes']:,}"
            if L.get("tls_resume")
            else "-"
        ),
    ),
    (
        "resumed: connect / connect start -> :ok p50 ms",
        lambda L, E: (
            f"{_v(_pct(L['resumed_connect_ms'], 'p50'))} / {_v(_pct(L['resumed_ok_ms'], 'p50'))}"
        ),
    ),
    (
        "keepalive lateness p50 / p99 / max ms",
        lambda L, E: (
            " / ".join(_v(_pct(L["keepalive_lateness_ms"], k)) for k in ("p50", "p99", "max"))
            + (f" ({L['keepalives_bunched']:,} bunched)" if L["keepalives_bunched"] else "")
        ),
    ),
    (
        "events received / lost (method)",
        lambda L, E: f"{L['events']:,} / {L['events_lost']:,} ({L['loss_method']})",
    ),
    (
        "time back after a drop p50 / p99 / max ms",
        lambda L, E: " / ".join(
            _v(_pct(L["time_back_ms"], k), "", 0) for k in ("p50", "p99", "max")
        ),
    ),
    (
        "reconnects: busiest second / 10-90 % window (s)",
        lambda L, E: (
            f"{E['herd']['peak_per_s']:,} / {E['herd']['window_10_90_s']:g}"
            if E.get("herd", {}).get("reconnects")
            else "-"
        ),
    ),
    (
        "delivery p50 / p99 ms (publish -> stream)",
        lambda L, E: " / ".join(_v(_pct(L["delivery_ms"], k)) for k in ("p50", "p99")),
    ),
    (
        "load generator limits hit",
        lambda L, E: ", ".join(f"{k} x{v['count']}" for k, v in L["limits"].items()) or "none",
    ),
    ("nginx PSS growth per stream (KB)", lambda L, E: _per_stream(E, 0)),
    ("backend PSS growth per stream (KB)", lambda L, E: _per_stream(E, 1)),
    (
        "CPU during the steady hold: nginx / backend / probe (% of a core)",
        lambda L, E: " / ".join(
            _v(E["resources"].get(g, {}).get("cpu_pct"), "", 0) for g in (*_groups(E), "probe")
        ),
    ),
    (
        "listen queue overflows (kernel, whole run)",
        lambda L, E: _v(E.get("listen_overflows")),
    ),
    (
        "nginx worker descriptors (max, per worker)",
        lambda L, E: (
            " / ".join(f"{n:,}" for n in E["resources"].get("nginx_worker_fds_max", [])) or "-"
        ),
    ),
]


def run_table(r: dict[str, Any]) -> list[str]:
    """The figures of every run, one column a run."""
    names = [n for n in _ORDER if n in r["runs"]]
    out = ["| | " + " | ".join(_LABELS[n] for n in names) + " |", "| --- |" + " --- |" * len(names)]
    for title, fn in _RUN_ROWS:
        cells = []
        for n in names:
            try:
                cells.append(fn(r["runs"][n]["load"], r["runs"][n]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return out


def _intro(r: dict[str, Any]) -> list[str]:
    meta = r["meta"]
    host = meta["host"]
    return [
        "# Benchmark: streams held through nginx, reload and restart under load,"
        " the naive deployment beside ours",
        "",
        f"Generated by `make bench` ({host['date']}); raw figures in `results.json`, plot in"
        " `bench.png`. Every figure below comes from this one run on one machine:"
        f" {host['cpus']} cores, {host['memory_gib']} GiB, kernel {host['kernel']},"
        f" {host['nginx']}, {host['container_python']} in the container, open-files hard limit"
        f" {host['nofile_hard']:,}. Load generator, nginx and backend share the same 2 cores"
        f" (and {host['other_containers']} other container(s) of concurrent sessions were"
        " running), so latencies include the generator's own CPU time.",
        "",
        f"Sizes: hold/direct {meta['streams']:,} streams, ramp {meta['ramp_s']:g} s, hold"
        f" {meta['hold_s']:g} s; baseline {meta.get('baseline_streams', meta['streams']):,}"
        f" streams; reload {meta['reload_streams']:,} streams; restart"
        f" {meta['restart_streams']:,} streams; keepalive every {meta['keepalive_interval_s']:g} s;"
        f" worker_shutdown_timeout {meta['worker_shutdown_timeout_s']:g} s; fan-out"
        f" {meta.get('fanout_streams', 0):,} streams, {meta.get('fanout_rate_per_s', 0):g}"
        " events/s. Size knob (molecule/bench/molecule.yml; every open-files limit is the"
        " roles' default or derived from it): "
        + ", ".join(f"`{k}: {v}`" for k, v in meta["limits"].items())
        + "."
        + (
            " Set for this run (`--set`): "
            + ", ".join(f"`{k}: {v}`" for k, v in meta["settings"].items())
            + "."
            if meta.get("settings")
            else ""
        )
        + (
            " TLS: every load through nginx resumes sessions after its first stream"
            " (`sseprobe load --tls-resume`), as returning browsers do."
            if meta.get("tls_resume")
            else ""
        ),
        "",
        "## Goals (issue 20) and what this run reached",
        "",
        "CPU: nginx / backend / load generator, % of a core in the steady part of the run that"
        " measured the figure: the busiest side is what bounded it.",
        "",
        "| figure | goal | measured | CPU | verdict | bound and next lever (missed) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]


def _reload_section(rl: dict[str, Any], load: dict[str, Any]) -> list[str]:
    return [
        "## Reload",
        "",
        f"`playbooks/proxy.yml` with one changed harmless variable (an `add_header` in"
        f" `sse_nginx_extra_directives`) ran from t={rl['playbook_s'][0]:g} s to"
        f" t={rl['playbook_s'][1]:g} s (its handler: `nginx -t`, then `systemctl reload"
        f" nginx`); new workers were first seen at t={_v(rl.get('reload_seen_s'))} s."
        f" Drops before the playbook: {rl.get('drops_before_reload')}; between the reload"
        f" and worker_shutdown_timeout: {rl.get('drops_before_shutdown_timeout')}; at the"
        f" timeout: {rl.get('drops_after_shutdown_timeout')}"
        + (
            f" (between t={rl['drops_window_s'][0]:g} and {rl['drops_window_s'][1]:g} s)"
            if rl.get("drops_window_s")
            else ""
        )
        + f". They resumed with Last-Event-ID after their own retry: ({_retries(load)}),"
        f" at most {_v(_pct(load.get('back_over_retry_ms') or {}, 'max'), ' ms', 0)} beyond"
        f" it: time back p50"
        f" {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)},"
        f" max {_v(_pct(load['time_back_ms'], 'max'), ' ms', 0)}; {load['open_at_end']:,} of"
        f" {load['streams']:,} open at the end, {load['events_lost']} of the events published"
        f" once a second lost ({load['events']:,} received). Old workers shutting down: at"
        f" most {rl.get('old_workers_max')}, last seen"
        f" t={_v(rl.get('old_workers_last_seen_s'))} s,"
        f" {rl.get('old_workers_at_end')} left at the end.",
        "",
    ]


def _restart_section(rs: dict[str, Any], load: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    pub = load.get("published") or {}
    return [
        "## Restart",
        "",
        f"`playbooks/backend.yml` with `sse_backend_version: {meta['restart_version']}` (a new"
        f" release: venv from the wheelhouse, then the role's restart handler) ran from"
        f" t={rs['playbook_s'][0]:g} s to t={rs['playbook_s'][1]:g} s; the new Gunicorn was"
        f" first seen at t={_v(rs.get('restart_seen_s'))} s."
        f" {load['drops']:,} stream drops"
        + (
            f" (t={rs['drops_window_s'][0]:g} to {rs['drops_window_s'][1]:g} s)"
            if rs.get("drops_window_s")
            else ""
        )
        + f", {load['reconnects']:,} reconnects, non-200 answers to streams:"
        f" {load['non_200']} ({_counts(load['statuses'])});"
        f" publishes: {_counts(pub.get('answers', {}))}."
        f" Time back p50 {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)}, p99"
        f" {_v(_pct(load['time_back_ms'], 'p99'), ' ms', 0)}, max"
        f" {_v(_pct(load['time_back_ms'], 'max'), ' ms', 0)}; beyond each client's own"
        f" retry: ({_retries(load)}) p50"
        f" {_v(_pct(load.get('back_over_retry_ms') or {}, 'p50'), ' ms', 0)}, max"
        f" {_v(_pct(load.get('back_over_retry_ms') or {}, 'max'), ' ms', 0)} (goal: within"
        f" 1 s). Events lost: {load['events_lost']}"
        f" ({load['loss_method']}; id-gap count {load['gap_lost']}, id space resets"
        f" {load['id_resets']}: the reference app numbers events from its boot time).",
        "",
    ]


def _baseline_section(b: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    return [
        "## Baseline: the naive deployment",
        "",
        "A second nginx with Debian's stock nginx.conf (worker_connections 768, the unit's"
        " default 1024 open files) and a plain `proxy_pass` (so proxy_buffering on, HTTP/1.0"
        " to the backend, proxy_read_timeout 60 s), in front of Gunicorn with 5 sync"
        " workers (timeout 30 s) running `bench/naive/naive_app.py`: a WSGI generator that"
        " speaks the same protocol (`:ok`, `retry:`, a keepalive every 5 s) because a sync"
        " worker cannot serve the ASGI reference app. The same hold as the other"
        " holds (at most 2,000 streams: it serves about 10), but a patient client (first-byte"
        " timeout"
        f" {meta['naive_first_byte_timeout_s']:g} s,"
        " as EventSource has none). Result: "
        f"{b['opened']:,} of {b['streams']:,} streams ever got a first byte"
        + (
            f" (request -> :ok p50 {_v(_pct(b['first_byte_ms'], 'p50'), ' ms', 0)})"
            if b["first_byte_ms"]["n"]
            else ""
        )
        + f", {b['open_at_end']:,} were open at the end; answers: "
        + (", ".join(f"{k} x{v}" for k, v in b["statuses"].items()) or "no non-200")
        + "; failed attempts: "
        + (", ".join(f"{k} x{v}" for k, v in b["attempt_failures"].items()) or "none")
        + f"; {b['keepalives_bunched']:,} keepalives arrived bunched"
        " (held back by nginx's buffer).",
        "",
    ]


def _method_and_wall_time(meta: dict[str, Any]) -> list[str]:
    lines = [
        "## Method",
        "",
        "- Load: `sseprobe load` (standard library asyncio, the same HTTPResponseParser and"
        " SSEParser as `check`) runs inside the container against loopback only; the figures"
        " it reports are defined in the docstring of `load()` in"
        " `collections/ansible_collections/sse/stack/plugins/module_utils/sseprobe_load.py`."
        " First byte: request sent -> first body"
        " byte (`:ok`); connect start -> `:ok` adds the TCP and TLS handshakes. Keepalive"
        " lateness: gap since the stream's previous bytes minus the 5 s interval.",
        "- TLS: every load through nginx runs with `--tls-resume`: the first stream does a"
        " full handshake, every later connection offers the newest session an earlier one got"
        " (nginx's shared session cache), as a browser returning to the site does; the"
        " resumed first connections have their own figures (the goal table uses them), the"
        " full handshakes are counted beside them. HTTP/2 multiplexing is not measured:"
        " `sseprobe load` speaks HTTP/1.1 on its own asyncio parser, and the container's"
        " python3 has no `h2` (the `check --http2` path needs it); an HTTP/2 load is a"
        " framing layer of its own, left for later.",
        "- Reconnect herd: reconnects per second from the load's per-second series; the"
        " busiest second's share of all reconnects and the seconds that hold 10-90 % of"
        " them (plot: reconnects per second).",
        "- Fan-out: one event every 1/rate s published straight to the backend; each event's"
        " data carries its sequence number, so every delivery is timed from its publish"
        " request being sent to its arrival on the stream (one clock, the load's process).",
        "- Events lost (reload, restart): the load publishes one event a second itself (POST"
        " /notify/publish straight to the backend) and knows each event's id, so a stream"
        " loses an event it was subscribed for and never received, across reconnects.",
        "- Memory: `bench/runner.py` sums PSS (`/proc/PID/smaps_rollup`) and RSS of the nginx"
        " master + workers and of the Gunicorn master + worker once a second; per stream ="
        " (median during the steady hold - idle before the load) / streams open. CPU: process"
        " CPU time over the same window. The hold through nginx runs first after the"
        " deployment, so its growth is the per-stream cost; the direct hold runs after it,"
        " when the backend (Python, glibc) reuses memory the first hold's streams freed, so"
        " its backend growth reads low.",
        "- Reload and restart go through the roles (`ansible-playbook playbooks/proxy.yml` /"
        " `playbooks/backend.yml` against the molecule inventory); their moments are seen in"
        " the /proc samples (new worker or Gunicorn pids), to within 1 s.",
        "",
        "## Wall time",
        "",
        "| phase | seconds |",
        "| --- | --- |",
    ]
    for phase, took in meta["phases_s"].items():
        lines.append(f"| {phase} | {took:,.0f} |")
    lines.append("")
    return lines


def markdown(r: dict[str, Any]) -> str:
    """The whole REPORT.md."""
    meta, runs = r["meta"], r["runs"]
    lines = _intro(r)
    for row in goal_rows(r):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *fanout_table(r)]
    lines += ["", "## Figures per scenario", "", *run_table(r)]
    lines += ["", "![streams held over time; first-byte distribution](bench.png)", ""]
    if "reload" in runs and "reload" in runs["reload"]:
        lines += _reload_section(runs["reload"]["reload"], runs["reload"]["load"])
    if "restart" in runs:
        lines += _restart_section(runs["restart"]["restart"], runs["restart"]["load"], meta)
    if "baseline" in runs:
        lines += _baseline_section(runs["baseline"]["load"], meta)
    lines += _bounds(r)
    lines += _method_and_wall_time(meta)
    return "\n".join(lines)


def _bounds_files(meta: dict[str, Any]) -> list[str]:
    hard = meta["host"]["nofile_hard"]
    per_worker = hard // 2 - 100
    return [
        "## What bounds it, and what would move it",
        "",
        f"- Open files: {hard:,} per process here (containers get nofile={hard}:{hard} and no"
        " CAP_SYS_RESOURCE to go above it). A proxied stream holds two descriptors in one"
        f" nginx worker (client + upstream), so one worker carries at most about {per_worker:,}"
        f" streams and the two workers about {2 * per_worker:,}, if the kernel spreads the"
        " connections evenly (nothing makes it: the role's listen socket has no `reuseport`)."
        " The backend's one Uvicorn worker holds one descriptor per stream (LimitNOFILE"
        " 16384, the role's default), and so does the load generator. So"
        " 10,000 streams fit the descriptors of every process here; twice that would not.",
    ]


def _bounds_hold(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    fds = res.get("nginx_worker_fds_max", [])
    if fds:
        lines.append(
            "- Spread over the nginx workers in the hold: "
            + " / ".join(f"{n:,}" for n in fds)
            + " descriptors at most per worker."
        )
    if res.get("nginx_plus_backend_pss_per_stream_kb") is not None:
        nginx_kb = res["nginx"]["pss_per_stream_kb"]
        backend_kb = res["backend"]["pss_per_stream_kb"]
        lines.append(
            f"- Memory: nginx grew {nginx_kb:.1f} KB per stream (a TLS client connection"
            " with its OpenSSL state and its `ssl_buffer_size` write buffer, plus the HTTP"
            " request and an upstream connection with its `proxy_buffer_size` buffer), the"
            f" backend {backend_kb:.1f} KB (per stream one asyncio task, a cursor into the"
            " worker's shared event log, Uvicorn's h11 connection and its transport). The"
            " buffer levers (`sse_nginx_ssl_buffer_size`, `sse_nginx_proxy_buffer_size`)"
            " are measured one at a time in LEVERS.md, the backend's in app_streams.md;"
            " nginx's share split into TLS and HTTP/upstream state, and HTTP/2 with many"
            " streams on one connection, in nginx_split.md (`sseprobe load` speaks HTTP/1.1"
            " only, so this run does not load HTTP/2)."
        )
    lines.append(
        "- CPU and the host: load generator, nginx and backend share 2 cores with the"
        " other sessions' containers (host load average in the table). In the steady hold"
        f" the generator used {_v(res.get('probe', {}).get('cpu_pct'), '%', 0)} of a core,"
        f" nginx {_v(res.get('nginx', {}).get('cpu_pct'), '%', 0)}, the backend"
        f" {_v(res.get('backend', {}).get('cpu_pct'), '%', 0)}; the ramp and every"
        " reconnect herd (TLS handshakes on both ends, the client's in one Python"
        " process) are the busy parts, and the latency tails come from them."
    )
    return lines


def _bounds_direct(hold: dict[str, Any], direct: dict[str, Any]) -> str:
    c_n = _pct(hold["load"]["connect_ms"], "p50")
    c_d = _pct(direct["load"]["connect_ms"], "p50")
    return (
        f"- First byte: connecting costs {_v(c_n, ' ms')} (p50) through nginx against"
        f" {_v(c_d, ' ms')} straight to the backend: the TLS handshake, computed on both"
        " ends of this host. Request -> `:ok` is the fairer comparison of the data path"
        " (one extra hop); the handshake is what a browser pays once per connection."
    )


def _bounds_reload(reload: dict[str, Any]) -> str:
    load = reload["load"]
    over = _pct(load.get("back_over_retry_ms") or {}, "max")
    h = reload.get("herd") or herd(load["series"])
    if _jittered(load):
        return (
            "- Reload: nginx closes every stream of the old workers at once when"
            f" worker_shutdown_timeout ends ({load['drops']:,} here); each client waits its"
            f" own `retry:` ({_retries(load)}, SSE_RETRY_JITTER_MS), so the reconnects"
            f" spread: the busiest second held {h.get('peak_share', 0):.0%} of them, 10-90 %"
            f" came within {h.get('window_10_90_s')} s, and a client was back at most"
            f" {_v(over, ' ms', 0)} after its own retry (listen queue overflows:"
            f" {_v(reload.get('listen_overflows'))}). The cost: a client waits its retry,"
            " up to the jitter's top, for a stream nginx ended; a longer"
            " worker_shutdown_timeout moves the cut, the jitter spreads it."
        )
    return (
        f"- Reload: nginx closes every stream of the old workers at once when"
        f" worker_shutdown_timeout ends, so {load['drops']:,} clients come back in the same"
        f" second after `retry` ({load.get('retry_ms')} ms): time back p50"
        f" {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)} is the retry plus that herd of"
        " TLS handshakes (listen queue overflows:"
        f" {_v(reload.get('listen_overflows'))}). A longer worker_shutdown_timeout only"
        " moves the herd; spreading it needs the clients to jitter their reconnect"
        " (SSE_RETRY_JITTER_MS) or the server to end streams gradually before the timeout."
    )


def _bounds_restart(restart: dict[str, Any]) -> str:
    rs, load = restart["restart"], restart["load"]
    gap = (rs.get("restart_seen_s") or 0) - rs["drops_window_s"][0]
    back = (_pct(load["time_back_ms"], "p50") or 0) / 1000.0
    retry = (load.get("retry_ms") or 0) / 1000.0
    seen = (f" ~{gap:.0f} s after" if gap >= 1 else " within a second of") + " the streams ending"
    if _jittered(load):
        over = load.get("back_over_retry_ms") or {}
        return (
            "- Restart: the app ends its streams as soon as SIGTERM arrives and each client"
            f" reconnects after its own `retry:` ({_retries(load)}); the new Gunicorn master"
            f" was seen{seen}, and clients were back"
            f" {_v(_pct(over, 'p50'), ' ms', 0)} (p50), at most {_v(_pct(over, 'max'), ' ms', 0)}"
            " after their retry: the old release's stop and the new one's boot fit inside the"
            " shortest retry (restart_gap.md measures both), and the socket unit's backlog"
            " holds any early client (hence no refusals and no 502). What is left above the"
            " retry is the reconnects served by one worker; more workers (with the broker)"
            " or a wider jitter move it. The playbook's own duration is the release build"
            " and install, during which the streams stay open."
        )
    return (
        "- Restart: the app ends its streams as soon as SIGTERM arrives; the clients"
        f" reconnect after `retry` ({retry:g} s) but were back only after {back:.1f} s (p50):"
        f" the new Gunicorn master was seen{seen}, but its worker accepts only once it has"
        " imported the app, so the clients waited in the socket unit's backlog (hence no"
        " refusals and no 502). Time back is the stop + boot time, not the retry. What"
        " would move it: SSE_RETRY_JITTER_MS, so the reconnects do not all meet the boot."
        " The playbook's own duration is the release build and install, during which the"
        " streams stay open."
    )


def _bounds(r: dict[str, Any]) -> list[str]:
    meta, runs = r["meta"], r["runs"]
    lines = _bounds_files(meta)
    hold, direct = runs.get("hold"), runs.get("direct")
    if hold:
        lines += _bounds_hold(hold["resources"])
    if hold and direct:
        lines.append(_bounds_direct(hold, direct))
    reload = runs.get("reload")
    if reload and reload["load"]["time_back_ms"]["n"]:
        lines.append(_bounds_reload(reload))
    restart = runs.get("restart")
    if restart and restart["restart"].get("drops_window_s"):
        lines.append(_bounds_restart(restart))
    if hold and hold["load"]["streams"] < GOALS["streams"]:
        lines.append(
            f"- Size: this run held {hold['load']['streams']:,} streams for"
            f" {hold['load']['hold_s']:g} s so that `make bench` finishes in about 10 minutes;"
            " the goals' sizes are `make bench BENCH_STREAMS=10000 BENCH_HOLD=120"
            " BENCH_RELOAD_STREAMS=5000` (not run here)."
        )
    lines.append("")
    return lines
