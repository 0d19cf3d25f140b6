"""The numbers of a load run: percentiles and the report (``LoadResult``).

``summarise`` turns the counters of a finished run (sseprobe_load_run) into the JSON shape
that ``sseprobe load --json`` prints and the bench reads; what each figure means is in the
docstring of ``load`` (sseprobe_load). Standard library only; never shipped to a host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ansible_collections.sse.stack.plugins.module_utils.sseprobe_load_run import LoadRun

MAX_DROP_TIMES = 100_000  # drop times listed in the report (seconds from the start)


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    """``{"n", "p50", ..., "max"}`` of ``values`` (linear interpolation), None when empty."""
    out: dict[str, Any] = {"n": len(values)}
    ordered = sorted(values)
    for p in points:
        out[f"p{p}"] = None if not ordered else round(_quantile(ordered, p), 2)
    out["max"] = None if not ordered else round(ordered[-1], 2)
    return out


def _quantile(ordered: list[float], p: float) -> float:
    k = (len(ordered) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class LoadResult:
    """Outcome of a load run; ``to_dict()`` is the JSON shape (see ``load``)."""

    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])

    def to_dict(self) -> dict[str, Any]:
        return self.summary


def _cdf(values: list[float]) -> list[float]:
    """The 0th to 100th percentile of ``values`` (empty when there are none)."""
    ordered = sorted(values)
    return [round(_quantile(ordered, p), 2) for p in range(101)] if ordered else []


def lost_exactly(run: LoadRun) -> int:
    """Events published (and acknowledged in time) while a stream was subscribed, unseen."""
    grace = run.publish_tail() / 2.0  # an event acknowledged just now may be on its way
    lost = 0
    for s in run.streams:
        if not s.opened:
            continue
        until = (run.finished_at if s.open_at_end else s.dropped_at) - grace
        for event_id, sent, acked in run.publishes:
            if sent >= s.first_open_at and acked <= until and event_id not in s.received:
                lost += 1
    return lost


def _streams(run: LoadRun) -> dict[str, Any]:
    """What became of the simulated clients."""
    cfg, streams = run.cfg, run.streams
    opened = sum(1 for s in streams if s.opened)
    held = sum(1 for s in streams if s.open_at_end and s.drops == 0)
    resumed = sum(1 for s in streams if s.open_at_end and s.drops > 0)
    return {
        "opened": opened,
        "held": held,
        "resumed": resumed,
        "open_at_end": held + resumed,
        "dropped": sum(1 for s in streams if s.drops > 0),
        "drops": run.drops,
        "reconnects": run.reconnects,
        "never_opened": cfg.streams - opened,
    }


def summarise(run: LoadRun) -> dict[str, Any]:
    """The report of a finished run (the JSON shape; see ``load`` for each figure)."""
    cfg = run.cfg
    counts = _streams(run)
    non_200 = sum(run.statuses.values())
    method, lost = "id-gaps", run.gap_lost
    published = None
    if cfg.publish is not None:
        method, lost = "published-ids", lost_exactly(run)
        window = run.publish_window
        seconds = (
            max(0.0, min(window[1], run.finished_at - run.t_start) - window[0]) if window else 0
        )
        published = {
            "url": cfg.publish.url,
            "interval_s": cfg.publish_interval,
            "acknowledged": len(run.publishes),
            "answers": dict(sorted(run.publish_counts.items())),
            "window_s": None if window is None else [round(v, 2) for v in window],
            "events_per_s": round(len(run.publishes) / seconds, 2) if seconds else None,
        }
    ok = (
        run.aborted is None
        and counts["opened"] == cfg.streams
        and counts["open_at_end"] == cfg.streams
        and lost == 0
        and non_200 == 0
        and not run.attempt_failures
        and not run.limits
    )
    return {
        "ok": ok,
        "url": cfg.url,
        "streams": cfg.streams,
        "ramp_s": cfg.ramp,
        "hold_s": cfg.hold,
        "elapsed_s": round(run.finished_at - run.t_start, 3),
        "t0_monotonic": round(run.t_start, 3),  # the series' t=0 on CLOCK_MONOTONIC
        "stopped_early": run.stopped and run.finished_at < run.end_at,
        "aborted": run.aborted,
        **counts,
        "drop_reasons": dict(sorted(run.drop_reasons.items())),
        "attempt_failures": dict(sorted(run.attempt_failures.items())),
        "failure_examples": dict(sorted(run.first_errors.items())),
        "non_200": non_200,
        "statuses": dict(sorted(run.statuses.items())),
        "first_byte_ms": percentiles(run.first_byte_ms),
        "connect_ms": percentiles(run.connect_ms),
        "ok_ms": percentiles(run.ok_ms),
        "first_byte_cdf_ms": _cdf(run.first_byte_ms),
        "ok_cdf_ms": _cdf(run.ok_ms),
        "tls_resume": cfg.tls_resume,
        "tls": {"resumed": len(run.resumed_ok_ms), "full_handshakes": run.full_handshakes},
        "resumed_first_byte_ms": percentiles(run.resumed_first_byte_ms),
        "resumed_connect_ms": percentiles(run.resumed_connect_ms),
        "resumed_ok_ms": percentiles(run.resumed_ok_ms),
        "resumed_ok_cdf_ms": _cdf(run.resumed_ok_ms),
        "limits": run.limits,
        "delivery_ms": percentiles(list(run.delivery_ms), (50, 95, 99)),
        "time_back_ms": percentiles(run.time_back_ms),
        "back_over_retry_ms": percentiles(run.over_retry_ms),
        "retry_range_ms": run.retry_range,
        "retry_ms": run.retry_hint,
        "keepalive_interval_s": cfg.keepalive_interval,
        "keepalives": run.keepalives,
        "keepalive_lateness_ms": percentiles(run.lateness_ms, (50, 99)),
        "keepalives_bunched": run.bunched,
        "events": run.events,
        "events_lost": lost,
        "loss_method": method,
        "gap_lost": run.gap_lost,
        "id_resets": run.id_resets,
        "duplicates": run.duplicates,
        "non_integer_ids": run.non_integer_ids,
        "published": published,
        "nofile": run.budget,
        "series": run.series,
        "drops_at_s": run.drop_times[:MAX_DROP_TIMES],
    }
