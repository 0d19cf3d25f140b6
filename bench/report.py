#!/usr/bin/env python3
"""Turn the bench's raw runs into results.json, REPORT.md and bench.png.

    python bench/report.py [bench/results]   # re-render REPORT.md and bench.png

``summarise`` keeps what the report needs (small enough to commit): each run's load
summary without its per-drop list, a compact per-second series, the first-byte CDFs, and
memory/CPU/descriptor figures derived from runner.py's /proc samples. ``render`` writes the
report from that alone.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
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


# --------------------------------------------------------------------------------------------
# summarise
# --------------------------------------------------------------------------------------------


def _window(samples: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start <= s["t"] <= end]


def _group(sample: dict[str, Any], name: str, key: str) -> float:
    return float(sample["groups"].get(name, {}).get(key, 0))


def _memory(run: dict[str, Any], plateau: tuple[float, float]) -> dict[str, Any]:
    """Idle vs steady figures per process group; per stream = growth / streams open."""
    load, samples = run["load"], run["samples"]
    t0 = load["t0_monotonic"]
    idle = [s for s in samples if s["t"] < t0] or samples[:1]
    steady = _window(samples, t0 + plateau[0], t0 + plateau[1])
    opens = [row["open"] for row in load["series"] if plateau[0] <= row["t"] <= plateau[1]]
    open_streams = statistics.median(opens) if opens else 0
    out: dict[str, Any] = {"open_streams": open_streams, "window_s": list(plateau)}
    if not steady or not idle:
        return out
    seconds = max(steady[-1]["t"] - steady[0]["t"], 1e-9)
    for name in ("nginx", "backend", "naive_nginx", "naive_backend", "probe"):
        if not any(name in s["groups"] for s in steady):
            continue
        g: dict[str, Any] = {}
        for key in ("pss_kb", "rss_kb"):
            before = _group(idle[-1], name, key)
            during = statistics.median(_group(s, name, key) for s in steady)
            g[f"idle_{key}"] = round(before)
            g[f"steady_{key}"] = round(during)
            if open_streams:
                g[f"{key.split('_')[0]}_per_stream_kb"] = round((during - before) / open_streams, 2)
        g["fds_max"] = max(_group(s, name, "fds") for s in steady)
        # a process that exits takes its CPU time out of the sum: never below 0
        cpu = _group(steady[-1], name, "cpu_s") - _group(steady[0], name, "cpu_s")
        g["cpu_pct"] = round(max(0.0, 100 * cpu / seconds), 1)
        out[name] = g
    if "nginx" in out and "backend" in out and open_streams:
        out["nginx_plus_backend_pss_per_stream_kb"] = round(
            out["nginx"]["pss_per_stream_kb"] + out["backend"]["pss_per_stream_kb"], 2
        )
    workers: dict[int, int] = {}
    for s in steady:
        for w in s["nginx_workers"]:
            workers[w["pid"]] = max(workers.get(w["pid"], 0), w["fds"])
    out["nginx_worker_fds_max"] = sorted(workers.values(), reverse=True)
    return out


def _first_change(samples: list[dict[str, Any]], group: str, after: float) -> float | None:
    """When the pids of ``group`` first differ from before ``after`` (monotonic)."""
    before = [s for s in samples if s["t"] < after]
    if not before:
        return None
    known = set(before[-1]["groups"].get(group, {}).get("pids", []))
    for s in samples:
        if s["t"] >= after and set(s["groups"].get(group, {}).get("pids", [])) - known:
            return s["t"]
    return None


def _reload(run: dict[str, Any], shutdown_timeout: float) -> dict[str, Any]:
    load, samples, act = run["load"], run["samples"], run["actions"]
    t0 = load["t0_monotonic"]
    seen = _first_change(samples, "nginx", act["start"])
    drops = load.get("drops_at_s", [])
    out: dict[str, Any] = {
        "playbook_s": [round(act["start"] - t0, 1), round(act["end"] - t0, 1)],
        "reload_seen_s": None if seen is None else round(seen - t0, 1),
    }
    if seen is None:
        return out
    # the reload happened in the second before the sample that saw new workers
    reload_at = seen - t0 - 1.0
    grace_end = reload_at + shutdown_timeout - 0.5
    out["drops_before_reload"] = sum(1 for d in drops if d < act["start"] - t0)
    out["drops_before_shutdown_timeout"] = sum(
        1 for d in drops if act["start"] - t0 <= d < grace_end
    )
    out["drops_after_shutdown_timeout"] = sum(1 for d in drops if d >= grace_end)
    old = [(s["t"] - t0, sum(1 for w in s["nginx_workers"] if w["shutting_down"])) for s in samples]
    out["old_workers_max"] = max(n for _, n in old)
    still = [t for t, n in old if n]
    out["old_workers_last_seen_s"] = round(max(still), 1) if still else None
    out["old_workers_at_end"] = old[-1][1]
    if drops:
        late = [d for d in drops if d >= grace_end]
        if late:
            out["drops_window_s"] = [round(min(late), 2), round(max(late), 2)]
    return out


def _restart(run: dict[str, Any]) -> dict[str, Any]:
    load, samples, act = run["load"], run["samples"], run["actions"]
    t0 = load["t0_monotonic"]
    seen = _first_change(samples, "backend", act["start"])
    drops = load.get("drops_at_s", [])
    out: dict[str, Any] = {
        "playbook_s": [round(act["start"] - t0, 1), round(act["end"] - t0, 1)],
        "restart_seen_s": None if seen is None else round(seen - t0, 1),
    }
    if drops:
        out["drops_window_s"] = [round(min(drops), 2), round(max(drops), 2)]
    answers = (load.get("published") or {}).get("answers", {})
    out["publish_not_202"] = sum(v for k, v in answers.items() if k != "202")
    return out


def _tcp_delta(samples: list[dict[str, Any]], name: str) -> int | None:
    values = [s["tcp"][name] for s in samples if name in s.get("tcp", {})]
    return values[-1] - values[0] if values else None


def summarise(runs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": meta, "runs": {}}
    for name, run in runs.items():
        load = dict(run["load"])
        load["series"] = [
            [row["t"], row["open"], row["dropped"], row["reconnected"], row["events"]]
            for row in load["series"]
        ]
        drops = load.pop("drops_at_s", [])
        ramp = run["ramp"]
        if run["actions"]:
            # steady state: between the end of the ramp and the playbook
            plateau = (ramp + 2.0, run["actions"]["start"] - load["t0_monotonic"] - 0.5)
        else:
            plateau = (ramp + 2.0, load["elapsed_s"] - 1.0)
        entry = {
            "name": name,
            "target": run["target"],
            "streams": run["streams"],
            "ramp_s": ramp,
            "load": load,
            "resources": _memory(run, plateau),
            "memory_series": [
                [
                    round(s["t"] - load["t0_monotonic"], 1),
                    *(
                        round(_group(s, g, "pss_kb") / 1024, 1)
                        for g in ("nginx", "backend", "naive_nginx", "naive_backend")
                    ),
                ]
                for s in run["samples"]
            ],
            "drops": len(drops),
            "listen_overflows": _tcp_delta(run["samples"], "ListenOverflows"),
        }
        if name == "reload":
            entry["reload"] = _reload(run, meta["worker_shutdown_timeout_s"])
        if name == "restart":
            entry["restart"] = _restart(run)
        results["runs"][name] = entry
    return results


# --------------------------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------------------------


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


def _goal_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    runs, meta = r["runs"], r["meta"]
    rows: list[tuple[str, str, str]] = []
    hold = runs.get("hold")
    if hold:
        load = hold["load"]
        p99 = _pct(load["keepalive_lateness_ms"], "p99")
        met = (
            load["open_at_end"] == load["streams"]
            and load["drops"] == 0
            and p99 is not None
            and p99 <= GOALS["lateness_p99_ms"]
        )
        scale = load["streams"] >= GOALS["streams"] and load["hold_s"] >= GOALS["hold_s"]
        verdict = (
            ("met" if scale else "met at this size (not at the goal's size)") if met else "missed"
        )
        rows.append(
            (
                "10,000 streams through nginx held 120 s, 0 dropped,"
                " keepalive lateness p99 <= 250 ms",
                f"{load['streams']:,} streams held {load['hold_s']:g} s:"
                f" {load['open_at_end']:,} open"
                f" at the end, {load['drops']} dropped, lateness p99 {_v(p99, ' ms')}",
                verdict,
            )
        )
        res = hold["resources"]
        per = res.get("nginx_plus_backend_pss_per_stream_kb")
        if per is not None:
            rows.append(
                (
                    "nginx + backend memory <= 30 KB per stream",
                    f"{per:.1f} KB (nginx {res['nginx']['pss_per_stream_kb']:.1f} + backend"
                    f" {res['backend']['pss_per_stream_kb']:.1f}, PSS growth / streams open)",
                    "met" if per <= GOALS["kb_per_stream"] else "missed",
                )
            )
    direct = runs.get("direct")
    if hold and direct:
        ok_n, ok_d = _pct(hold["load"]["ok_ms"], "p50"), _pct(direct["load"]["ok_ms"], "p50")
        fb_n = _pct(hold["load"]["first_byte_ms"], "p50")
        fb_d = _pct(direct["load"]["first_byte_ms"], "p50")
        if ok_n is not None and ok_d:
            ratio = ok_n / ok_d
            rows.append(
                (
                    ":ok through nginx with TLS: p50 <= 5 ms and <= 1.5x direct (same run)",
                    f"connect start -> :ok p50 {ok_n:.1f} ms vs direct {ok_d:.1f} ms"
                    f" ({ratio:.1f}x); request -> :ok p50 {_v(fb_n, ' ms')} vs {_v(fb_d, ' ms')}"
                    f" ({(fb_n or 0) / fb_d:.1f}x)"
                    if fb_d
                    else "",
                    "met"
                    if ok_n <= GOALS["ok_p50_ms"] and ratio <= GOALS["ok_ratio"]
                    else ("p50 met, ratio missed" if ok_n <= GOALS["ok_p50_ms"] else "missed"),
                )
            )
    reload = runs.get("reload")
    if reload and "reload" in reload:
        load, rl = reload["load"], reload["reload"]
        met = (
            rl.get("drops_before_shutdown_timeout") == 0
            and rl.get("drops_before_reload") == 0
            and load["open_at_end"] == load["streams"]
            and load["events_lost"] == 0
            and rl.get("old_workers_at_end") == 0
        )
        rows.append(
            (
                "reload with 5,000 streams: 0 dropped before worker_shutdown_timeout, all resume,"
                " 0 events lost, no old worker left",
                f"{load['streams']:,} streams: {rl.get('drops_before_shutdown_timeout')} dropped"
                f" before the {meta['worker_shutdown_timeout_s']:g} s timeout,"
                f" {rl.get('drops_after_shutdown_timeout')} at it; {load['open_at_end']:,} open at"
                f" the end; {load['events_lost']} events lost; old workers left"
                f" {rl.get('old_workers_at_end')}",
                ("met" if load["streams"] >= GOALS["reload_streams"] else "met at this size")
                if met
                else "missed",
            )
        )
    restart = runs.get("restart")
    if restart:
        load, rs = restart["load"], restart["restart"]
        retry = (load.get("retry_ms") or 0) / 1000.0
        back = _pct(load["time_back_ms"], "max")
        met = (
            load["non_200"] == 0
            and rs["publish_not_202"] == 0
            and load["open_at_end"] == load["streams"]
            and load["events_lost"] == 0
            and (back is None or back <= (retry + 1.0) * 1000)
        )
        rows.append(
            (
                "restart with 1,000 streams: 0 non-200, every client back within retry + 1 s,"
                " 0 events lost",
                f"{load['streams']:,} streams: {load['non_200']} non-200 answers to streams,"
                f" {rs['publish_not_202']} failed publishes; back in max {_v(back, ' ms', 0)}"
                f" (retry {retry:g} s); {load['open_at_end']:,} open at the end;"
                f" {load['events_lost']} events lost",
                ("met" if load["streams"] >= GOALS["restart_streams"] else "met at this size")
                if met
                else "missed",
            )
        )
    return rows


def _groups(entry: dict[str, Any]) -> tuple[str, str]:
    """The nginx and backend process groups a run loaded."""
    if entry["name"] == "baseline":
        return "naive_nginx", "naive_backend"
    return "nginx", "backend"


def _per_stream(entry: dict[str, Any], which: int) -> str:
    if entry["name"] in ("reload", "restart"):
        return "-"  # not a fresh process: see the holds
    group = _groups(entry)[which]
    return _v(entry["resources"].get(group, {}).get("pss_per_stream_kb"), "", 1)


def _run_table(r: dict[str, Any]) -> list[str]:
    names = [n for n in ("hold", "direct", "baseline", "reload", "restart") if n in r["runs"]]
    label = {
        "hold": "hold: nginx (TLS)",
        "direct": "hold: direct to backend",
        "baseline": "hold: naive deployment",
        "reload": "reload (nginx)",
        "restart": "restart (nginx)",
    }
    rows = [
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
                ", ".join(f"{k} x{v}" for k, v in L["attempt_failures"].items() if k != "status")
                or "0"
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
    out = ["| | " + " | ".join(label[n] for n in names) + " |", "| --- |" + " --- |" * len(names)]
    for title, fn in rows:
        cells = []
        for n in names:
            try:
                cells.append(fn(r["runs"][n]["load"], r["runs"][n]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return out


def render(r: dict[str, Any], out: Path) -> None:
    meta, runs = r["meta"], r["runs"]
    host = meta["host"]
    lines = [
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
        f"Sizes: hold/direct/baseline {meta['streams']:,} streams, ramp {meta['ramp_s']:g} s, hold"
        f" {meta['hold_s']:g} s; reload {meta['reload_streams']:,} streams; restart"
        f" {meta['restart_streams']:,} streams; keepalive every {meta['keepalive_interval_s']:g} s;"
        f" worker_shutdown_timeout {meta['worker_shutdown_timeout_s']:g} s. Limits (role"
        " variables, molecule/bench/molecule.yml): "
        + ", ".join(f"`{k}: {v}`" for k, v in meta["limits"].items())
        + ".",
        "",
        "## Goals (issue 9) and what this run reached",
        "",
        "| goal | measured | verdict |",
        "| --- | --- | --- |",
    ]
    for goal, measured, verdict in _goal_rows(r):
        lines.append(f"| {goal} | {measured} | {verdict} |")
    lines += ["", "## Figures per scenario", "", *_run_table(r)]
    lines += ["", "![streams held over time; first-byte distribution](bench.png)", ""]
    if "reload" in runs and "reload" in runs["reload"]:
        rl, load = runs["reload"]["reload"], runs["reload"]["load"]
        lines += [
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
            + f". They resumed with Last-Event-ID after the server's retry"
            f" ({load.get('retry_ms')} ms): time back p50"
            f" {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)},"
            f" max {_v(_pct(load['time_back_ms'], 'max'), ' ms', 0)}; {load['open_at_end']:,} of"
            f" {load['streams']:,} open at the end, {load['events_lost']} of the events published"
            f" once a second lost ({load['events']:,} received). Old workers shutting down: at"
            f" most {rl.get('old_workers_max')}, last seen"
            f" t={_v(rl.get('old_workers_last_seen_s'))} s,"
            f" {rl.get('old_workers_at_end')} left at the end.",
            "",
        ]
    if "restart" in runs:
        rs, load = runs["restart"]["restart"], runs["restart"]["load"]
        pub = load.get("published") or {}
        lines += [
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
            f" {_v(_pct(load['time_back_ms'], 'max'), ' ms', 0)} against retry"
            f" {load.get('retry_ms')} ms + 1 s. Events lost: {load['events_lost']}"
            f" ({load['loss_method']}; id-gap count {load['gap_lost']}, id space resets"
            f" {load['id_resets']}: the reference app numbers events from its boot time).",
            "",
        ]
    if "baseline" in runs:
        b = runs["baseline"]["load"]
        lines += [
            "## Baseline: the naive deployment",
            "",
            "A second nginx with Debian's stock nginx.conf (worker_connections 768, the unit's"
            " default 1024 open files) and a plain `proxy_pass` (so proxy_buffering on, HTTP/1.0"
            " to the backend, proxy_read_timeout 60 s), in front of Gunicorn with 5 sync"
            " workers (timeout 30 s) running `bench/naive/naive_app.py`: a WSGI generator that"
            " speaks the same protocol (`:ok`, `retry:`, a keepalive every 5 s) because a sync"
            " worker cannot serve the ASGI reference app. Same streams and hold as the other"
            " holds, but a patient client (first-byte timeout"
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
    lines += _bounds(r)
    lines += [
        "## Method",
        "",
        "- Load: `bin/sseprobe load` (standard library asyncio, the same HTTPResponseParser and"
        " SSEParser as `check`) runs inside the container against loopback only; the figures"
        " it reports are defined in the docstring of `load()` in"
        " `roles/sse_verify/module_utils/sseprobe.py`. First byte: request sent -> first body"
        " byte (`:ok`); connect start -> `:ok` adds the TCP and TLS handshakes. Keepalive"
        " lateness: gap since the stream's previous bytes minus the 5 s interval.",
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
    (out / "REPORT.md").write_text("\n".join(lines))
    plot(r, out / "bench.png")


def _bounds(r: dict[str, Any]) -> list[str]:
    meta, runs = r["meta"], r["runs"]
    hard = meta["host"]["nofile_hard"]
    per_worker = hard // 2 - 100
    lines = [
        "## What bounds it, and what would move it",
        "",
        f"- Open files: {hard:,} per process here (containers get nofile={hard}:{hard} and no"
        " CAP_SYS_RESOURCE to go above it). A proxied stream holds two descriptors in one"
        f" nginx worker (client + upstream), so one worker carries at most about {per_worker:,}"
        f" streams and the two workers about {2 * per_worker:,}, if the kernel spreads the"
        " connections evenly (nothing makes it: the role's listen socket has no `reuseport`)."
        " The backend's one Uvicorn worker holds one descriptor per stream (LimitNOFILE"
        f" {meta['limits']['sse_backend_limit_nofile']}), and so does the load generator. So"
        " 10,000 streams fit the descriptors of every process here; twice that would not.",
    ]
    hold = runs.get("hold")
    if hold:
        res = hold["resources"]
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
                " with its OpenSSL state and nginx's per-connection TLS write buffer,"
                " `ssl_buffer_size` 16k by default, plus an upstream connection with its"
                f" `proxy_buffer_size` buffer), the backend {backend_kb:.1f} KB (per stream"
                " three asyncio tasks, a queue and an h11 connection in one Python process)."
                " Not measured here, but the obvious levers: `ssl_buffer_size 4k` (a stream's"
                " writes are tiny), a smaller `proxy_buffer_size`, and HTTP/2, which the role"
                " enables, so that a browser's streams share one TLS connection."
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
    direct = runs.get("direct")
    if hold and direct:
        c_n = _pct(hold["load"]["connect_ms"], "p50")
        c_d = _pct(direct["load"]["connect_ms"], "p50")
        lines.append(
            f"- First byte: connecting costs {_v(c_n, ' ms')} (p50) through nginx against"
            f" {_v(c_d, ' ms')} straight to the backend: the TLS handshake, computed on both"
            " ends of this host. Request -> `:ok` is the fairer comparison of the data path"
            " (one extra hop); the handshake is what a browser pays once per connection."
        )
    reload = runs.get("reload")
    if reload and reload["load"]["time_back_ms"]["n"]:
        load = reload["load"]
        lines.append(
            f"- Reload: nginx closes every stream of the old workers at once when"
            f" worker_shutdown_timeout ends, so {load['drops']:,} clients come back in the same"
            f" second after `retry` ({load.get('retry_ms')} ms): time back p50"
            f" {_v(_pct(load['time_back_ms'], 'p50'), ' ms', 0)} is the retry plus that herd of"
            " TLS handshakes (listen queue overflows:"
            f" {_v(reload.get('listen_overflows'))}). A longer worker_shutdown_timeout only"
            " moves the herd; spreading it needs the clients to jitter their reconnect or the"
            " server to end streams gradually before the timeout."
        )
    restart = runs.get("restart")
    if restart and restart["restart"].get("drops_window_s"):
        rs, load = restart["restart"], restart["load"]
        gap = (rs.get("restart_seen_s") or 0) - rs["drops_window_s"][0]
        back = (_pct(load["time_back_ms"], "p50") or 0) / 1000.0
        retry = (load.get("retry_ms") or 0) / 1000.0
        lines.append(
            "- Restart: the app ends its streams as soon as SIGTERM arrives; the clients"
            f" reconnect after `retry` ({retry:g} s) but were back only after {back:.1f} s (p50):"
            " the new Gunicorn master was seen"
            + (f" ~{gap:.0f} s after" if gap >= 1 else " within a second of")
            + " the streams ending, but its worker accepts only once it has imported the app,"
            " so the clients waited in the"
            " socket unit's backlog (hence no refusals and no 502). Time back is the stop +"
            " boot time, not the retry. What would move it: start the new release before the"
            " old one stops (Gunicorn's USR2 re-exec on the same socket; preloading the app),"
            " or a `retry:` sent at shutdown that covers the boot. The playbook's own duration"
            " is the release build and install, during which the streams stay open."
        )
    if hold and hold["load"]["streams"] < GOALS["streams"]:
        lines.append(
            f"- Size: this run held {hold['load']['streams']:,} streams for"
            f" {hold['load']['hold_s']:g} s so that `make bench` finishes in about 10 minutes;"
            " the goals' sizes are `make bench BENCH_STREAMS=10000 BENCH_HOLD=120"
            " BENCH_RELOAD_STREAMS=5000` (not run here)."
        )
    lines.append("")
    return lines


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = r["runs"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    for name, label in (
        ("hold", "nginx (TLS)"),
        ("direct", "direct to backend"),
        ("baseline", "naive deployment"),
    ):
        if name in runs:
            s = runs[name]["load"]["series"]
            ax.plot([row[0] for row in s], [row[1] for row in s], label=label)
    ax.set_title("Streams open over time (hold)")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("streams open")
    ax.legend()
    ax.grid(alpha=0.3)

    ax = axes[0][1]
    for name, label in (
        ("hold", "nginx (TLS)"),
        ("direct", "direct to backend"),
        ("baseline", "naive deployment"),
    ):
        if name in runs and runs[name]["load"]["ok_cdf_ms"]:
            cdf = runs[name]["load"]["ok_cdf_ms"]
            ax.plot(cdf, range(len(cdf)), label=f"{label}: connect start -> :ok")
            fb = runs[name]["load"]["first_byte_cdf_ms"]
            ax.plot(fb, range(len(fb)), linestyle="--", label=f"{label}: request -> :ok")
    ax.set_xscale("log")
    ax.set_title("First-byte distribution (first connections)")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("percentile")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")

    ax = axes[1][0]
    for name, label in (("reload", "reload"), ("restart", "restart")):
        if name in runs:
            s = runs[name]["load"]["series"]
            ax.plot([row[0] for row in s], [row[1] for row in s], label=f"{label}: open")
            extra = runs[name].get(name, {})
            if extra.get("playbook_s"):
                ax.axvspan(
                    *extra["playbook_s"], alpha=0.12, color="C0" if name == "reload" else "C1"
                )
            seen = extra.get("reload_seen_s") or extra.get("restart_seen_s")
            if seen:
                ax.axvline(seen, linestyle=":", color="C0" if name == "reload" else "C1")
    ax.set_title("Reload and restart with streams open (shaded: playbook run)")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("streams open")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)

    ax = axes[1][1]
    for name, cols in (
        ("hold", ((1, "nginx"), (2, "backend"))),
        ("direct", ((2, "backend (direct)"),)),
    ):
        if name in runs:
            m = runs[name]["memory_series"]
            for col, label in cols:
                ax.plot([row[0] for row in m], [row[col] for row in m], label=f"{label} PSS")
    ax.set_title("Memory during the holds")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("MiB")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    render(json.loads((folder / "results.json").read_text()), folder)
