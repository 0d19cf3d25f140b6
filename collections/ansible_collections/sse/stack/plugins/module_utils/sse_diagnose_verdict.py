"""From findings and the two live probes to one verdict per host (standard library only).

The live probes tell proxy faults from backend faults: the one straight to the backend
fails -> the backend is at fault (and the one through nginx fails with it); only the one
through nginx fails -> nginx is. Their failures become findings too, and the cause is the
first critical finding in ``PRIORITY`` order, where a finding that a failed probe confirms
(a backend finding when the direct probe failed, an nginx finding when only the probe
through nginx failed) comes before one that no probe confirms.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_verdict``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRIORITY", "SEVERITY_ORDER", "finding", "probe_findings", "verdict"]

# Most specific first: a host that is down explains everything after it.
PRIORITY = [
    "nginx.not_installed",
    "nginx.not_running",
    "nginx.config_invalid",
    "nginx.no_server",
    "nginx.upstream_port",
    "backend.unit_inactive",
    "backend.unreachable",
    "backend.sync_worker",
    "backend.stale_code",
    "backend.no_keepalive",
    "backend.no_ok",
    "backend.error_status",
    "backend.content_type",
    "backend.first_byte",
    "backend.closes_stream",
    "backend.protocol",
    "backend.accel_buffering",
    "nginx.no_proxy_pass",
    "nginx.proxy_buffering",
    "nginx.proxy_read_timeout",
    "nginx.proxy_cache",
    "nginx.not_reloaded",
    "proxy.breaks_stream",
    "proxy.stream_fails",
]
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def finding(fid: str, severity: str, message: str, where: str = "", **extra: Any) -> dict[str, Any]:
    """One finding: {id, severity, component (the id's first part), message, where, ...}."""
    assert severity in SEVERITY_ORDER, severity
    out = {
        "id": fid,
        "severity": severity,
        "component": fid.split(".", 1)[0],
        "message": message,
        "where": where,
    }
    out.update(extra)
    return out


# the first failed probe check decides what the failure says about the backend
_BACKEND_CHECKS = [
    ("connect", "backend.unreachable", "nothing answers straight at {url}"),
    ("tls", "backend.unreachable", "no TLS session straight with {url}"),
    ("status", "backend.error_status", "straight from the backend {url} answers {status}"),
    (
        "content_type",
        "backend.content_type",
        "straight from the backend {url} is not an event stream",
    ),
    (
        "first_byte",
        "backend.first_byte",
        "straight from the backend no byte of {url} arrived in time",
    ),
    (
        "first_comment",
        "backend.no_ok",
        "straight from the backend {url} does not start with the expected line",
    ),
    ("keepalive", "backend.no_keepalive", "the backend sends no keepalives: straight from {url}"),
    (
        "stream_closed",
        "backend.closes_stream",
        "the backend closes the stream early: straight from {url}",
    ),
    ("protocol", "backend.protocol", "the backend breaks the HTTP framing: straight from {url}"),
]


def _failures(result: dict[str, Any]) -> str:
    return "; ".join(f"{f['check']}: {f['message']}" for f in result.get("failures", []))


def probe_findings(probes: dict[str, Any], keepalive_interval: float) -> list[dict[str, Any]]:
    """Findings from the live probes: which hop breaks the stream, and how."""
    out: list[dict[str, Any]] = []
    direct, proxied = probes.get("backend"), probes.get("nginx")
    if direct and not direct.get("skipped"):
        checks = {f["check"] for f in direct.get("failures", [])}
        for check, fid, text in _BACKEND_CHECKS:
            if check in checks:
                msg = text.format(
                    url=direct.get("url"),
                    status=f"{direct.get('status')} {direct.get('reason') or ''}".strip(),
                )
                if check == "keepalive":
                    msg += (
                        f" none for {direct.get('max_gap_s')} s,"
                        f" expected every {keepalive_interval:g} s"
                    )
                out.append(
                    {
                        "id": fid,
                        "severity": "critical",
                        "component": "backend",
                        "message": f"{msg} ({_failures(direct)})",
                        "where": direct.get("url", ""),
                    }
                )
                break
    if proxied and not proxied.get("skipped") and not proxied.get("ok"):
        if direct and not direct.get("skipped") and direct.get("ok"):
            out.append(
                {
                    "id": "proxy.breaks_stream",
                    "severity": "critical",
                    "component": "proxy",
                    "message": f"nginx breaks the stream: through nginx {proxied.get('url')} fails"
                    f" ({_failures(proxied)}) while straight from the backend it is healthy",
                    "where": proxied.get("url", ""),
                }
            )
        elif direct and not direct.get("skipped"):
            out.append(
                {
                    "id": "proxy.fails_with_backend",
                    "severity": "info",
                    "component": "proxy",
                    "message": f"through nginx the stream fails as well ({_failures(proxied)})",
                    "where": proxied.get("url", ""),
                }
            )
        else:
            out.append(
                {
                    "id": "proxy.stream_fails",
                    "severity": "critical",
                    "component": "proxy",
                    "message": f"through nginx {proxied.get('url')} fails ({_failures(proxied)});"
                    " the backend was not probed straight, so the hop is not known",
                    "where": proxied.get("url", ""),
                }
            )
    return out


def _confirmed(finding: dict[str, Any], probes: dict[str, Any]) -> bool:
    direct, proxied = probes.get("backend") or {}, probes.get("nginx") or {}
    direct_failed = bool(direct) and not direct.get("skipped") and not direct.get("ok")
    proxied_failed = bool(proxied) and not proxied.get("skipped") and not proxied.get("ok")
    # the hop whose failing probe confirms it: its own, unless the finding says otherwise
    component = (
        finding.get("confirmed_by") or finding.get("component") or finding["id"].split(".", 1)[0]
    )
    if component == "backend":
        return direct_failed or (proxied_failed and not direct)
    if component in ("nginx", "proxy"):
        return proxied_failed and not direct_failed
    return False


def _upgrade_buffering(findings: list[dict[str, Any]], probes: dict[str, Any]) -> None:
    """proxy_buffering on is harmless only while the backend sends X-Accel-Buffering: no."""
    direct = probes.get("backend") or {}
    if direct.get("skipped") or direct.get("status") != 200:
        return
    header = (direct.get("headers") or {}).get("x-accel-buffering", "")
    for f in findings:
        if f["id"] == "nginx.proxy_buffering" and f.get("needs_backend_header"):
            if header.strip().lower() == "no":
                f["message"] += "; it does send it now"
            else:
                f["severity"] = "critical"
                f["message"] += (
                    "; it does NOT send it (straight probe), so nginx buffers the stream"
                )


def verdict(
    findings: list[dict[str, Any]], probes: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The most likely cause and one sentence naming it (``context``: paths, probe figures)."""
    _upgrade_buffering(findings, probes)
    critical = [f for f in findings if f["severity"] == "critical"]

    def rank(f: dict[str, Any]) -> tuple[int, int]:
        index = PRIORITY.index(f["id"]) if f["id"] in PRIORITY else len(PRIORITY)
        return (0 if _confirmed(f, probes) else 1, index)

    critical.sort(key=rank)
    cause = critical[0] if critical else None
    warnings = sorted({f["id"] for f in findings if f["severity"] == "warning"})
    paths = ", ".join(context.get("paths", []))
    if cause is not None:
        where = (
            f" ({cause['where']})"
            if cause.get("where") and cause["where"] not in cause["message"]
            else ""
        )
        others = [f["id"] for f in critical[1:]]
        sentence = (
            f"Most likely cause of interrupted streams on {paths}: {cause['message']}{where}"
            + (f" [also critical: {', '.join(others)}]" if others else "")
            + "."
        )
    else:
        proxied, direct = probes.get("nginx") or {}, probes.get("backend") or {}
        seen = []
        for label, result in (("through nginx", proxied), ("straight from the backend", direct)):
            if result and not result.get("skipped"):
                count = result.get("keepalives")
                seen.append(
                    f"{label} (first byte {result.get('first_byte_ms')} ms,"
                    f" {count} keepalive{'' if count == 1 else 's'} in {result.get('held_s')} s)"
                )
        streams = f"streams {' and '.join(seen)}" if seen else "no live probe ran"
        symptom = context.get("symptom")
        # critical on disk, not in the running nginx: what the next reload brings
        pending = [f"{f['id']} at {f['where']}" for f in findings if f.get("loaded") is False]
        sentence = (
            f"Healthy: {paths} {streams}; no critical finding"
            + (f"; warnings: {', '.join(warnings)}" if warnings else "")
            + (
                f"; on disk but not loaded yet (breaks streams at the next reload):"
                f" {', '.join(pending)}"
                if pending
                else ""
            )
            + (f"; but {symptom}" if symptom else "")
            + "."
        )
    return {
        "healthy": cause is None,
        "cause": cause,
        "sentence": sentence,
        "critical": [f["id"] for f in critical],
        "warnings": warnings,
    }
