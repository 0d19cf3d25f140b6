"""Findings that need two hops at once: nginx's configuration against the backend unit, the
live probes against the configuration, the running nginx against the files on disk
(standard library only).

* ``upstream_port``: the upstream nginx sends an SSE path to is not where the backend unit
  listens (its socket unit's ListenStream, or Gunicorn's --bind);
* ``accel_buffering``: the backend answers ``X-Accel-Buffering: yes``, which turns nginx's
  buffering on for that response although the location says ``proxy_buffering off``;
* ``running_config``: a file changed after nginx loaded its configuration: a finding from
  that file is on disk only while the live stream through nginx passes, and a failing
  stream with a healthy configuration on disk is the not-reloaded one.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_crosscheck``.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import finding

__all__ = ["accel_buffering", "backend_listens", "running_config", "upstream_port"]

LOOPBACK = re.compile(r"^(127\.[0-9.]+|localhost|\[::1\]|0\.0\.0\.0|\*|\[::\])$")


def _endpoint(address: str) -> tuple[str, str] | None:
    """(host, port) of "host:port" / "[v6]:port" / "port", ("unix", path) of a socket path."""
    if address.startswith(("unix:", "/")):
        return "unix", address.removeprefix("unix:")
    match = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]*):?(\d+)", address)
    if not match:
        return None
    return match.group(1) or "*", match.group(2)


def _bind(argv: list[str]) -> list[str]:
    """Gunicorn's --bind / -b values."""
    out = []
    for i, arg in enumerate(argv):
        if arg in ("-b", "--bind") and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--bind="):
            out.append(arg.split("=", 1)[1])
    return out


def backend_listens(units: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Where the backend units listen: [{host, port, unit, what}] (port: a path for unix)."""
    out = []
    for unit in units:
        for sock in unit.get("sockets", []):
            for listen in sock.get("listen", []):
                end = _endpoint(listen)
                if end is not None:
                    what = f"ListenStream={listen} of {sock['unit']}"
                    out.append({"host": end[0], "port": end[1], "unit": unit["unit"], "what": what})
        for bind in _bind((unit.get("server") or {}).get("argv") or []):
            end = _endpoint(bind)
            if end is not None:
                what = f"--bind {bind} at {unit.get('exec_start_where')}"
                out.append({"host": end[0], "port": end[1], "unit": unit["unit"], "what": what})
    return out


def _mismatch(
    path: str, target: dict[str, Any], listens: list[dict[str, str]]
) -> dict[str, Any] | None:
    wheres = target.get("server_where") or [target.get("where", "")] * len(target["servers"])
    local = [
        (server, where, end)
        for server, where in zip(target["servers"], wheres)
        if (end := _endpoint(server)) is not None and (end[0] == "unix" or LOOPBACK.match(end[0]))
    ]
    ports = {x["port"] for x in listens}
    if not local or any(end[1] in ports for _, _, end in local):
        return None
    server, where, _ = local[0]
    upstream = target.get("upstream") or {}
    listen = "; ".join(f"{x['host']}:{x['port']} ({x['what']})" for x in listens)
    return finding(
        "nginx.upstream_port",
        "critical",
        f"nginx sends {path} to {server} (upstream {upstream.get('name', '-')} server at {where}),"
        f" but the backend {listens[0]['unit']} listens on {listen}: nothing of the backend"
        " answers where nginx sends the stream (502); point the upstream server at the"
        " backend's port",
        where,
        path=path,
        listen=[f"{x['host']}:{x['port']}" for x in listens],
    )


def upstream_port(nginx: dict[str, Any], units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One finding per SSE path whose local upstream servers all miss the backend's ports."""
    listens = backend_listens(units)
    if not listens:
        return []
    out: list[dict[str, Any]] = []
    for path, entry in (nginx.get("paths") or {}).items():
        for server in entry["servers"]:
            found = _mismatch(path, server["target"], listens)
            if found is not None and found["where"] not in {f["where"] for f in out}:
                out.append(found)
    return out


def accel_buffering(
    nginx: dict[str, Any], probes: dict[str, Any], units: list[dict[str, Any]], path: str
) -> list[dict[str, Any]]:
    """The backend's 'X-Accel-Buffering: yes' turns buffering on where the location has it off."""
    direct = probes.get("backend") or {}
    header = str((direct.get("headers") or {}).get("x-accel-buffering", "")).strip().lower()
    if direct.get("skipped") or direct.get("status") != 200 or header != "yes":
        return []
    servers = ((nginx.get("paths") or {}).get(path) or {}).get("servers") or []
    for entry in servers:
        buffering = entry["settings"]["proxy_buffering"]
        if (buffering["value"] or "on").lower() != "off" or buffering["ignores_x_accel_buffering"]:
            continue  # buffering on is proxy_buffering's finding; ignored: harmless
        unit = f" ({', '.join(u['unit'] for u in units)})" if units else ""
        return [
            finding(
                "backend.accel_buffering",
                "critical",
                f"the backend{unit} answers 'X-Accel-Buffering: yes' (straight from"
                f" {direct.get('url')}): nginx buffers that response although proxy_buffering"
                f" off at {buffering['where']} for {path} ({entry['location']} at"
                f" {entry['location_where']}); keepalives sit in nginx's buffer and never reach"
                " the client, which gives up (499). Send 'X-Accel-Buffering: no' (or none), or"
                " add proxy_ignore_headers X-Accel-Buffering to the SSE location",
                direct.get("url", ""),
                confirmed_by="nginx",
                also=[buffering["where"]],
            )
        ]
    return []


def _probe_ok(result: dict[str, Any] | None) -> bool | None:
    if not result or result.get("skipped"):
        return None
    return bool(result.get("ok"))


def running_config(
    findings: list[dict[str, Any]], nginx: dict[str, Any], probes: dict[str, Any]
) -> None:
    """Tell the configuration nginx runs from the one on disk (edited, not reloaded)."""
    changed = {c["path"] for c in nginx.get("changed_after_load") or []}
    if not changed:
        return
    through, direct = _probe_ok(probes.get("nginx")), _probe_ok(probes.get("backend"))
    loaded = nginx.get("loaded_at")
    for f in findings:
        on_disk = f["id"].startswith("nginx.") and f["where"].rsplit(":", 1)[0] in changed
        if on_disk and f["severity"] == "critical" and through:
            f["severity"], f["loaded"] = "warning", False
            f["message"] += (
                f"; but on disk only: {f['where'].rsplit(':', 1)[0]} changed after nginx loaded"
                f" its configuration at {loaded} and the live stream through nginx passes, so"
                " the running nginx does not have this yet: it takes effect at the next reload"
            )
    explained = [
        f for f in findings if f["id"].startswith("nginx.") and f["severity"] == "critical"
    ]
    if through is False and direct and not explained:
        for f in findings:
            if f["id"] == "nginx.not_reloaded":
                f["severity"] = "critical"
                f["message"] += (
                    "; the stream through nginx fails while straight from the backend it passes"
                    " and the configuration on disk reads healthy: the running nginx serves an"
                    " older configuration (reload it)"
                )
