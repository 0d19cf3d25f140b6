#!/usr/bin/env python3
"""Turn the bench's raw runs into results.json, REPORT.md and bench.png.

    python bench/report.py [bench/results]   # re-render REPORT.md and bench.png

``summarise`` keeps what the report needs (small enough to commit): each run's load
summary without its per-drop list, a compact per-second series, the first-byte CDFs, and
memory/CPU/descriptor figures derived from runner.py's /proc samples. ``render`` writes the
report from that alone: the text is report_text.py, the plot report_plot.py.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

# beside this file: on sys.path when it runs as a script, and bench.py puts bench/ there
import report_plot
import report_text

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
    for name in ("nginx", "backend", "naive_nginx", "naive_backend", "probe", "broker"):
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


def _action(run: dict[str, Any], group: str, seen_key: str) -> tuple[dict[str, Any], Any]:
    """When the playbook ran and when ``group`` first had new pids (seconds from the load's
    start), shared by the reload and the restart; also the moment seen (monotonic)."""
    load, samples, act = run["load"], run["samples"], run["actions"]
    t0 = load["t0_monotonic"]
    seen = _first_change(samples, group, act["start"])
    out: dict[str, Any] = {
        "playbook_s": [round(act["start"] - t0, 1), round(act["end"] - t0, 1)],
        seen_key: None if seen is None else round(seen - t0, 1),
    }
    return out, seen


def _reload(run: dict[str, Any], shutdown_timeout: float) -> dict[str, Any]:
    load, samples, act = run["load"], run["samples"], run["actions"]
    t0 = load["t0_monotonic"]
    out, seen = _action(run, "nginx", "reload_seen_s")
    drops = load.get("drops_at_s", [])
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
    load = run["load"]
    out, _ = _action(run, "backend", "restart_seen_s")
    drops = load.get("drops_at_s", [])
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
        if load["reconnects"]:
            entry["herd"] = report_text.herd(load["series"])
        if "fanout" in run:
            entry["fanout"] = run["fanout"]
        if name == "reload":
            entry["reload"] = _reload(run, meta["worker_shutdown_timeout_s"])
        if name == "restart":
            entry["restart"] = _restart(run)
        results["runs"][name] = entry
    return results


def render(r: dict[str, Any], out: Path) -> None:
    """REPORT.md and bench.png in ``out`` from summarised results (with nginx_split.json's
    measured split of nginx's memory, when bench/nginx_split.py has written it there)."""
    split = out / "nginx_split.json"
    if split.is_file():
        r = {**r, "nginx_split": json.loads(split.read_text())}
    (out / "REPORT.md").write_text(report_text.markdown(r))
    report_plot.plot(r, out / "bench.png")


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    render(json.loads((folder / "results.json").read_text()), folder)
