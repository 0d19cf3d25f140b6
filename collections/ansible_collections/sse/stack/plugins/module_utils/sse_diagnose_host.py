"""One host's SSE diagnosis: nginx, backend unit, access log, live probes, verdict.

``diagnose(params, run, which)`` reads only: ``nginx -T``, ``systemctl show``/``list-*``,
``journalctl``, /proc, file times and the access log; the probes are GET requests that
are closed after ``hold`` seconds. Every missing or unreadable piece becomes a finding,
never an exception. The sections are in ``sse_diagnose_host_nginx`` (nginx),
``sse_diagnose_backend_units`` (the unit), ``sse_diagnose_logs`` (the access log) and
``sse_diagnose_crosscheck`` (findings across hops).

The probe is the project's one stream check, ``sseprobe``. No Ansible imports besides the
collection's module_utils: shipped as the collection module_utils ``sse_diagnose_host``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_backend import ProcessTable
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_backend_units import (
    analyze_unit,
    discover_units,
    user_managers,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_crosscheck import (
    accel_buffering,
    backend_listens,
    running_config,
    upstream_port,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_host_nginx import (
    NGINX_DIRS,
    Run,
    Which,
    iso,
    nginx_section,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_logs import (
    log_section,
    own_line,
    parse_window,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import (
    SEVERITY_ORDER,
    finding,
    probe_findings,
    verdict,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe import (
    ConfigError,
    ProbeConfig,
    check,
)

__all__ = ["NGINX_DIRS", "diagnose"]

PROBE_PREFIX = "sse-diagnose-"


def read_text(path: str, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Where to probe
# --------------------------------------------------------------------------------------------


def _probe_address(entry: dict[str, Any], path: str) -> tuple[str, str]:
    """URL and resolve (HOST:PORT:ADDR) to reach this server block on this host."""
    ls = sorted(entry["listen"], key=lambda item: (not item["ssl"], item["port"] is None))
    listen = next((item for item in ls if item["port"] is not None), None)
    names = [
        n
        for n in entry["server_name"]
        if n and n != "_" and not n.startswith(("~", "*", ".")) and "*" not in n
    ]
    host = names[0] if names else "localhost"
    if listen is None:
        return "", ""
    scheme = "https" if listen["ssl"] else "http"
    address = listen["address"]
    if address in ("*", "0.0.0.0", ""):
        address = "127.0.0.1"
    elif address in ("[::]",):
        address = "[::1]"
    default = 443 if scheme == "https" else 80
    port = listen["port"]
    url = f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"
    return url, f"{host}:{port}:{address}"


def _local(host: str) -> str:
    """A wildcard listen address as an address to connect to."""
    return {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(
        host, host
    )


def _backend_url_from_units(units: list[dict[str, Any]], path: str) -> str:
    for listen in backend_listens(units):
        if listen["host"] != "unix":
            return f"http://{_local(listen['host'])}:{listen['port']}{path}"
    return ""


def _backend_url(
    params: dict[str, Any], entry: dict[str, Any] | None, units: list[dict[str, Any]], path: str
) -> str:
    """The direct probe's URL: the upstream nginx proxies to, else where the unit listens."""
    if params["backend_url"]:
        return params["backend_url"]
    target = (entry or {}).get("target") or {}
    first = (target.get("servers") or [""])[0]
    if first and not first.startswith("unix:"):
        for wildcard in ("0.0.0.0:", "*:"):
            first = "127.0.0.1:" + first[len(wildcard) :] if first.startswith(wildcard) else first
        return f"{target['scheme']}://{first}{target['uri']}"
    return _backend_url_from_units(units, path)


# --------------------------------------------------------------------------------------------
# The probes
# --------------------------------------------------------------------------------------------


def _probe(
    url: str,
    params: dict[str, Any],
    probe_id: str,
    resolve: str = "",
    insecure: bool = False,
    cacert: str = "",
) -> dict[str, Any]:
    try:
        config = ProbeConfig(
            url=url,
            hold=params["hold"],
            keepalive_interval=params["keepalive_interval"],
            tolerance=params["tolerance"],
            first_byte_timeout=params["first_byte_timeout"],
            cacert=cacert or None,
            insecure=insecure,
            resolve=resolve or None,
            headers={"X-SSEProbe-Id": probe_id},
        )
    except ConfigError as exc:
        return {"url": url, "skipped": True, "why": f"invalid probe setting: {exc}"}
    result = check(config).to_dict()
    result["resolve"] = resolve or None
    result["tls_verified"] = url.startswith("https") and not insecure
    return result


def _run_probes(jobs: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def work(name: str, job: Callable[[], dict[str, Any]]) -> None:
        try:
            results[name] = job()
        except Exception as exc:  # a probe bug must not lose the other evidence
            results[name] = {"skipped": True, "why": f"probe crashed: {exc!r}"}

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _why_not(params: dict[str, Any], units: list[dict[str, Any]]) -> str:
    if not params["probe"]:
        return "sse_diagnose_probe is false"
    for unit in units:  # stopped or failed: a connection to its socket would start it
        if unit["active"] != "active" and any(s["active"] == "active" for s in unit["sockets"]):
            return (
                f"the backend service is {unit['active']} behind a listening socket; a probe"
                " would start it"
            )
    return ""


def probes_section(
    params: dict[str, Any],
    nginx: dict[str, Any],
    units: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    probe_id: str,
) -> dict[str, Any]:
    """Hold one stream through nginx and one straight to the backend, at the same time."""
    path = params["paths"][0]
    entry = next(iter((nginx.get("paths") or {}).get(path, {}).get("servers", [])), None)
    url, resolve = params["url"], params["resolve"]
    if not url and entry is not None:
        url, resolve = _probe_address(entry, path)
    backend_url = _backend_url(params, entry, units, path)
    if any(f["id"] == "nginx.upstream_port" for f in findings) and not params["backend_url"]:
        # nginx sends elsewhere: probe the backend where it listens
        backend_url = _backend_url_from_units(units, path) or backend_url
    probes: dict[str, Any] = {"id": probe_id}
    jobs: dict[str, Callable[[], dict[str, Any]]] = {}
    why_not = _why_not(params, units)
    if params["proxy"] and nginx.get("running") is not False and nginx.get("installed"):
        if why_not or not url:
            why = why_not or "no server block to probe"
            probes["nginx"] = {"skipped": True, "why": why, "url": url}
        else:
            cacert = params["cacert"]
            jobs["nginx"] = lambda: _probe(
                url, params, probe_id, resolve, insecure=not cacert, cacert=cacert
            )
    if backend_url:
        if why_not:
            probes["backend"] = {"skipped": True, "why": why_not, "url": backend_url}
        else:
            jobs["backend"] = lambda: _probe(backend_url, params, probe_id, insecure=True)
    probes.update(_run_probes(jobs))
    return probes


# --------------------------------------------------------------------------------------------
# The whole host
# --------------------------------------------------------------------------------------------


def backend_section(
    params: dict[str, Any],
    run: Run,
    procs: ProcessTable,
    since: float,
    users: list[dict[str, Any]] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The backend units' states and their findings."""
    managers = users if users is not None else user_managers()
    discovered, findings = discover_units(run, params["backend_unit"], managers)
    units = []
    for unit in discovered:
        state, more = analyze_unit(run, unit, procs, since, read_text)
        units.append(state)
        findings += more
    if not discovered:
        what = (
            params["backend_unit"] or "a service running gunicorn/uvicorn/hypercorn/daphne/granian"
        )
        why = (
            f"no systemd unit found for the backend ({what}) in the system manager or any"
            " user manager"
        )
        findings.append(finding("backend.no_unit", "warning", why))
    return units, findings


def diagnose(
    params: dict[str, Any],
    run: Run,
    which: Which,
    procs: ProcessTable | None = None,
    users: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report for this host (see the role's README for its shape)."""
    started = time.time()
    window = parse_window(params["since"])
    since = started - window
    procs = procs if procs is not None else ProcessTable()
    findings: list[dict[str, Any]] = []
    nginx: dict[str, Any] = {}
    if params["proxy"]:
        nginx, findings = nginx_section(params, run, which, procs)
    units: list[dict[str, Any]] = []
    if params["backend"]:
        units, more = backend_section(params, run, procs, since, users)
        findings += more + upstream_port(nginx, units)
    log: dict[str, Any] = {}
    if params["proxy"] and nginx.get("installed"):
        log, more = log_section(params, nginx, since, PROBE_PREFIX)
        findings += more

    probes = probes_section(params, nginx, units, findings, f"{PROBE_PREFIX}{int(started * 1000)}")
    if "nginx" in probes and not probes["nginx"].get("skipped") and log.get("readable"):
        probes["nginx"]["access_log_line"] = own_line(log, probes["id"])
    findings += probe_findings(probes, params["keepalive_interval"])
    findings += accel_buffering(nginx, probes, units, params["paths"][0])
    running_config(findings, nginx, probes)

    symptom = next((f["message"] for f in findings if f["id"] == "access_log.symptom"), "")
    result = verdict(findings, probes, {"paths": params["paths"], "symptom": symptom})
    findings.sort(key=lambda f: (SEVERITY_ORDER[f["severity"]], f["id"]))
    backend = {"units": units, "process_start": procs.clock} if params["backend"] else None
    return {
        "diagnosed_at": iso(started),
        "window": {"since": iso(since), "seconds": window},
        "paths": params["paths"],
        "keepalive_interval": params["keepalive_interval"],
        "healthy": result["healthy"],
        "cause": result["cause"],
        "sentence": result["sentence"],
        "findings": findings,
        "nginx": {k: v for k, v in nginx.items() if k != "config"} if params["proxy"] else None,
        "backend": backend,
        "access_log": {k: v for k, v in log.items() if k != "fmt"} or None,
        "probes": probes,
        "elapsed_s": round(time.time() - started, 3),
    }
