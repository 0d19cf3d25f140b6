"""bench.png from results.json: streams open, first-byte CDFs, reload/restart, memory.

Needs matplotlib (bench/requirements.txt, installed by `make bench`); called by
report.py's ``render``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HOLDS = (("hold", "nginx (TLS)"), ("direct", "direct to backend"), ("baseline", "naive deployment"))
SINCE_START = "seconds since the load started"
ACTION_COLOURS = {"reload": "C0", "restart": "C1"}


def _finish(ax: Any, title: str, xlabel: str, ylabel: str, **legend: Any) -> None:
    """Title, labels, a legend when something was drawn, and the grid."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**legend)
    ax.grid(alpha=0.3, which="both" if ax.get_xscale() == "log" else "major")


def _open_streams(ax: Any, runs: dict[str, Any]) -> None:
    for name, label in HOLDS:
        if name in runs:
            s = runs[name]["load"]["series"]
            ax.plot([row[0] for row in s], [row[1] for row in s], label=label)
    _finish(ax, "Streams open over time (hold)", SINCE_START, "streams open")


def _first_byte(ax: Any, runs: dict[str, Any]) -> None:
    for name, label in HOLDS:
        if name in runs and runs[name]["load"]["ok_cdf_ms"]:
            cdf = runs[name]["load"]["ok_cdf_ms"]
            ax.plot(cdf, range(len(cdf)), label=f"{label}: connect start -> :ok")
            fb = runs[name]["load"]["first_byte_cdf_ms"]
            ax.plot(fb, range(len(fb)), linestyle="--", label=f"{label}: request -> :ok")
            resumed = runs[name]["load"].get("resumed_ok_cdf_ms")
            if resumed:
                ax.plot(resumed, range(len(resumed)), linestyle=":", label=f"{label}: TLS resumed")
    ax.set_xscale("log")
    _finish(ax, "First-byte distribution (first connections)", "ms (log)", "percentile", fontsize=8)


def _actions(ax: Any, runs: dict[str, Any]) -> None:
    for name, colour in ACTION_COLOURS.items():
        if name in runs:
            s = runs[name]["load"]["series"]
            ax.plot([row[0] for row in s], [row[1] for row in s], label=f"{name}: open")
            extra = runs[name].get(name, {})
            if extra.get("playbook_s"):
                ax.axvspan(*extra["playbook_s"], alpha=0.12, color=colour)
            seen = extra.get("reload_seen_s") or extra.get("restart_seen_s")
            if seen:
                ax.axvline(seen, linestyle=":", color=colour)
    title = "Reload and restart with streams open (shaded: playbook run)"
    _finish(ax, title, SINCE_START, "streams open")


def _reconnects(ax: Any, runs: dict[str, Any]) -> None:
    """Reconnects per second: the herd after a reload (flat when the retries are spread)."""
    for name, colour in ACTION_COLOURS.items():
        if name in runs:
            s = runs[name]["load"]["series"]
            ts, per_s, prev = [], [], 0
            for row in s:
                ts.append(row[0])
                per_s.append(row[3] - prev)
                prev = row[3]
            ax.step(ts, per_s, where="post", color=colour, label=f"{name}: reconnects/s")
    _finish(ax, "Reconnects per second (the herd)", SINCE_START, "reconnects per second")


def _delivery(ax: Any, runs: dict[str, Any]) -> None:
    """Fan-out delivery latency percentiles, single process vs broker."""
    names = [
        (n, lab)
        for n, lab in (("fanout", "single process"), ("fanout-broker", "broker"))
        if n in runs and runs[n]["load"]["delivery_ms"]["n"]
    ]
    keys = ("p50", "p95", "p99")
    width = 0.8 / max(1, len(names))
    for i, (name, label) in enumerate(names):
        d = runs[name]["load"]["delivery_ms"]
        ax.bar([k + i * width for k in range(len(keys))], [d[k] for k in keys], width, label=label)
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(keys))], list(keys))
    _finish(ax, "Fan-out: publish -> stream delivery", "percentile", "ms")


def _memory(ax: Any, runs: dict[str, Any]) -> None:
    for name, cols in (
        ("hold", ((1, "nginx"), (2, "backend"))),
        ("direct", ((2, "backend (direct)"),)),
    ):
        if name in runs:
            m = runs[name]["memory_series"]
            for col, label in cols:
                ax.plot([row[0] for row in m], [row[col] for row in m], label=f"{label} PSS")
    _finish(ax, "Memory during the holds", SINCE_START, "MiB")


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = r["runs"]
    fig, axes = plt.subplots(3, 2, figsize=(13, 13))
    _open_streams(axes[0][0], runs)
    _first_byte(axes[0][1], runs)
    _actions(axes[1][0], runs)
    _reconnects(axes[1][1], runs)
    _memory(axes[2][0], runs)
    _delivery(axes[2][1], runs)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
