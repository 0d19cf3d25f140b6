"""One host's SSE diagnosis: nginx, backend unit, access log, live probes, verdict.

``diagnose(params, run, which)`` reads only: ``nginx -T``, ``systemctl show``/``list-*``,
``journalctl``, /proc, file times and the access log; the probes are GET requests that
are closed after ``hold`` seconds. Every missing or unreadable piece becomes a finding,
never an exception.

The probe is the project's one stream check, ``sseprobe`` (role sse_verify's module_utils).
No Ansible imports besides those module_utils: shipped as
the collection module_utils ``sse_diagnose_host``.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import time
from typing import Any, Callable

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_backend import (
    ProcessTable,
    analyze_unit,
    discover_units,
    user_managers,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_logs import (
    LogFormat,
    analyze,
    parse_window,
    read_window,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx import (
    COMBINED,
    NginxConfig,
    NginxSyntaxError,
    access_logs,
    analyze_location,
    find_location,
    finding,
    levels_for,
    listens,
    redirects_everything,
    server_matches,
    server_names,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import (
    SEVERITY_ORDER,
    probe_findings,
    verdict,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe import (
    ConfigError,
    ProbeConfig,
    check,
)

__all__ = ["diagnose"]

Run = Callable[[list[str]], "tuple[int, str, str]"]
Which = Callable[[str], "str | None"]
NGINX_DIRS = ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin", "/sbin"]
PROBE_PREFIX = "sse-diagnose-"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def read_text(path: str, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------


def _master(procs: ProcessTable) -> dict[str, Any] | None:
    masters = procs.find(
        lambda p: bool(p["cmdline"]) and p["cmdline"][0].startswith("nginx: master process")
    )
    return min(masters, key=lambda p: p["pid"]) if masters else None


def _master_args(master: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The binary and the -c/-p options the running master was started with."""
    text = " ".join(master["cmdline"])[len("nginx: master process") :].strip()
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    binary = words[0] if words and words[0].startswith("/") else None
    keep: list[str] = []
    for i, word in enumerate(words):
        if word in ("-c", "-p") and i + 1 < len(words):
            keep += [word, words[i + 1]]
    return binary, keep


def nginx_section(
    params: dict[str, Any], run: Run, which: Which, procs: ProcessTable
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    info: dict[str, Any] = {"installed": False}
    found: list[dict[str, Any]] = []
    master = _master(procs)
    binary, options = _master_args(master) if master else (None, [])
    binary = binary if binary and os.path.exists(binary) else which("nginx")
    if not binary:
        found.append(
            finding(
                "nginx.not_installed",
                "critical",
                "nginx is not installed on this proxy host (no nginx binary on the PATH or in "
                + ", ".join(NGINX_DIRS)
                + "): nothing serves the stream here",
            )
        )
        return info, found
    info.update({"installed": True, "binary": binary, "running": master is not None})
    if master is None:
        found.append(
            finding(
                "nginx.not_running",
                "critical",
                "nginx is installed but not running (no 'nginx: master process'): nothing"
                " serves the stream",
            )
        )
    else:
        info["master_pid"] = master["pid"]
        info["master_started"] = _iso(master["start"])
    rc, out, err = run([binary, *options, "-T"])
    info["test"] = (err or "").strip().splitlines()[-3:]
    if rc != 0 or "# configuration file" not in out:
        message = next(
            (line for line in (err or out).splitlines() if "emerg" in line or "error" in line),
            (err or out).strip()[:300],
        )
        found.append(
            finding(
                "nginx.config_invalid",
                "critical",
                f"nginx -T rejects the configuration: {message}; a reload would fail and the"
                " running"
                " nginx (if any) serves an older configuration that cannot be read here",
            )
        )
        return info, found
    try:
        config = NginxConfig.from_dump(out)
    except NginxSyntaxError as exc:
        found.append(
            finding("nginx.config_unreadable", "warning", f"cannot parse nginx -T output: {exc}")
        )
        return info, found
    info["main"] = config.main
    info["files"] = config.order
    for warning in config.warnings:
        found.append(finding("nginx.include", "info", warning))

    # did nginx (re)load after the files were last written? Workers start anew on a reload.
    if master is not None:
        workers = [
            p
            for p in procs.children(master["pid"])
            if p["cmdline"]
            and p["cmdline"][0].startswith("nginx: worker process")
            and "shutting down" not in " ".join(p["cmdline"])
        ]
        loaded = min((w["start"] for w in workers), default=master["start"])
        info["loaded_at"] = _iso(loaded)
        newer = []
        for path in config.order:
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            if mtime > loaded + 1:
                newer.append((path, mtime))
        if newer:
            path, mtime = max(newer, key=lambda item: item[1])
            found.append(
                finding(
                    "nginx.not_reloaded",
                    "warning",
                    f"{path} changed at {_iso(mtime)}, after nginx last (re)loaded its"
                    " configuration"
                    f" at {_iso(loaded)}: the running nginx may not run what is on disk (what is"
                    " analysed here); nginx -t && systemctl reload nginx",
                    path,
                )
            )

    http = config.http()
    if http is None:
        found.append(
            finding(
                "nginx.no_server",
                "critical",
                f"{config.main} has no http block: nothing proxies the stream",
                config.main,
            )
        )
        return info, found
    info["config"] = config
    info["paths"] = {}
    for path in params["paths"]:
        servers, skipped = [], []
        for server in config.servers():
            names = server_names(server)
            if params["server_name"] and not server_matches(server, params["server_name"]):
                continue
            redirect = redirects_everything(server)
            if redirect is not None:
                skipped.append(
                    {
                        "server": server.where,
                        "server_name": names,
                        "why": f"{redirect.text()} at {redirect.where}",
                    }
                )
                continue
            errors: list[str] = []
            chain = find_location(server, path, errors)
            for error in errors:
                found.append(finding("nginx.regex", "info", error))
            if not chain:
                skipped.append(
                    {"server": server.where, "server_name": names, "why": "no location matches"}
                )
                continue
            result, more = analyze_location(
                config, server, chain, path, params["keepalive_interval"]
            )
            entry = {
                "server": server.where,
                "server_name": names,
                "listen": listens(server),
                "location": chain[-1].describe(),
                "location_where": chain[-1].directive.where,
                "location_chain": [f"{loc.describe()} ({loc.directive.where})" for loc in chain],
                "access_logs": access_logs(levels_for(http, server, chain)),
                **result,
            }
            if not result["target"]:
                skipped.append(
                    {
                        "server": server.where,
                        "server_name": names,
                        "why": f"{entry['location']} at {entry['location_where']} does not proxy",
                    }
                )
                found.extend(more)
                continue
            servers.append(entry)
            found.extend(more)
        info["paths"][path] = {"servers": servers, "not_serving": skipped}
        if not servers:
            found.append(
                finding(
                    "nginx.no_server",
                    "critical",
                    f"no server block proxies {path} to a backend"
                    + (f" for server_name {params['server_name']}" if params["server_name"] else "")
                    + ": "
                    + "; ".join(f"{s['server']}: {s['why']}" for s in skipped),
                    config.main,
                    path=path,
                )
            )
    return info, found


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


# --------------------------------------------------------------------------------------------
# access log
# --------------------------------------------------------------------------------------------


def log_section(
    params: dict[str, Any], nginx: dict[str, Any], since: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found: list[dict[str, Any]] = []
    config: NginxConfig | None = nginx.get("config")
    formats = config.log_formats() if config else {"combined": COMBINED}
    candidates: list[dict[str, str]] = []
    for entry in (nginx.get("paths") or {}).values():
        for server in entry["servers"]:
            for log in server["access_logs"]:
                if log not in candidates:
                    candidates.append(log)
    if params["access_log"]:
        known = next((c for c in candidates if c["path"] == params["access_log"]), None)
        candidates = [
            known
            or {"path": params["access_log"], "format": "", "where": "sse_diagnose_access_log"}
        ]
    if not candidates:
        found.append(
            finding(
                "access_log.none",
                "info",
                "no access log to read for the SSE paths (none in the configuration; set"
                " sse_diagnose_access_log)",
            )
        )
        return {}, found
    log = candidates[0]
    path = log["path"]
    if "$" in path:
        found.append(
            finding(
                "access_log.variable",
                "info",
                f"access log {path} has variables in its name",
                log["where"],
            )
        )
        return {"path": path}, found
    fmt_text = formats.get(log["format"]) if log["format"] else None
    if fmt_text is None:
        # not from the configuration: the sse_timed format of role sse_nginx, else combined
        fmt_text = formats.get("sse_timed") or formats.get("combined") or COMBINED
    fmt = LogFormat(fmt_text)
    info: dict[str, Any] = {
        "path": path,
        "format": log["format"] or "-",
        "where": log["where"],
        "since": _iso(since),
        "readable": False,
    }
    if not fmt.usable:
        found.append(
            finding(
                "access_log.format",
                "warning",
                f"log_format {log['format']} of {path} logs no $status or no request:"
                " cannot analyse it",
                log["where"],
            )
        )
        return info, found
    if not os.path.exists(path):
        found.append(
            finding(
                "access_log.missing", "warning", f"access log {path} does not exist", log["where"]
            )
        )
        return info, found
    try:
        entries, unparsed = read_window(path, fmt, since)
    except OSError as exc:
        found.append(
            finding(
                "access_log.unreadable",
                "warning",
                f"cannot read access log {path}: {exc.strerror or exc}",
                log["where"],
            )
        )
        return info, found
    info["readable"] = True
    info["entries_in_window"] = len(entries)
    info["unparsed_lines"] = unparsed
    if unparsed and not entries:
        found.append(
            finding(
                "access_log.format",
                "warning",
                f"none of the lines of {path} match its log_format {log['format']}",
                log["where"],
            )
        )
    short = 2 * params["keepalive_interval"] + params["tolerance"]
    info["paths"] = analyze(entries, params["paths"], short, PROBE_PREFIX)
    info["rt_available"] = "request_time" in fmt.variables
    info["probe_id_logged"] = "http_x_sseprobe_id" in fmt.variables
    info["fmt"] = fmt
    for sse_path, stats in info["paths"].items():
        if stats["short_499"] or stats["short_504"]:
            found.append(
                finding(
                    "access_log.symptom",
                    "warning",
                    f"the incident's symptom in {path} since {_iso(since)}: {sse_path} ended"
                    f" {stats['short_499']} times with 499 (the client gave up) and"
                    f" {stats['short_504']} times with 504 (nginx gave up on the backend) in"
                    f" less than {stats['short_limit_s']:g} s"
                    f" (of {stats['requests']} requests)",
                    path,
                    path=sse_path,
                )
            )
        errors = {
            s: v["count"] for s, v in stats["by_status"].items() if s.startswith("5") and s != "504"
        }
        if errors:
            found.append(
                finding(
                    "access_log.errors",
                    "warning",
                    f"{sse_path} answered "
                    + ", ".join(f"{c} x {s}" for s, c in errors.items())
                    + f" in {path} since {_iso(since)} (502: nginx could not reach the backend)",
                    path,
                )
            )
    return info, found


def _own_line(log: dict[str, Any], probe_id: str, wait: float = 3.0) -> str | None:
    """nginx's access log line for the probe's own request (written when the stream ends)."""
    fmt = log.get("fmt")
    if not fmt or not log.get("probe_id_logged"):
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(log["path"], "rb") as handle:
                handle.seek(max(0, os.path.getsize(log["path"]) - 256 * 1024))
                for raw in reversed(handle.read().split(b"\n")):
                    line = raw.decode("utf-8", "replace")
                    if f'"{probe_id}"' in line or f"={probe_id} " in line:
                        return line
        except OSError:
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.3)


# --------------------------------------------------------------------------------------------
# probes
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


# --------------------------------------------------------------------------------------------
# the whole host
# --------------------------------------------------------------------------------------------


def _backend_url_from_units(units: list[dict[str, Any]], path: str) -> str:
    for unit in units:
        for sock in unit.get("sockets", []):
            for listen in sock.get("listen", []):
                if re.fullmatch(r"(\[[^\]]+\]|[0-9.]+):\d+", listen):
                    host, port = listen.rsplit(":", 1)
                    host = (
                        "127.0.0.1" if host == "0.0.0.0" else ("[::1]" if host == "[::]" else host)
                    )
                    return f"http://{host}:{port}{path}"
        server = unit.get("server") or {}
        argv = server.get("argv") or []
        for i, arg in enumerate(argv):
            bind = None
            if arg in ("-b", "--bind") and i + 1 < len(argv):
                bind = argv[i + 1]
            elif arg.startswith("--bind="):
                bind = arg.split("=", 1)[1]
            if bind and re.fullmatch(r"[^/:]+:\d+", bind):
                host, port = bind.rsplit(":", 1)
                host = "127.0.0.1" if host in ("0.0.0.0", "") else host
                return f"http://{host}:{port}{path}"
    return ""


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
    report: dict[str, Any] = {
        "diagnosed_at": _iso(started),
        "window": {"since": _iso(since), "seconds": window},
        "paths": params["paths"],
        "keepalive_interval": params["keepalive_interval"],
    }

    nginx: dict[str, Any] = {}
    if params["proxy"]:
        nginx, more = nginx_section(params, run, which, procs)
        findings += more

    units: list[dict[str, Any]] = []
    if params["backend"]:
        discovered, more = discover_units(
            run, params["backend_unit"], users if users is not None else user_managers()
        )
        findings += more
        for unit in discovered:
            state, more = analyze_unit(run, unit, procs, since, read_text)
            units.append(state)
            findings += more
        if not discovered:
            what = (
                params["backend_unit"]
                or "a service running gunicorn/uvicorn/hypercorn/daphne/granian"
            )
            findings.append(
                finding(
                    "backend.no_unit",
                    "warning",
                    f"no systemd unit found for the backend ({what}) in the system manager or any"
                    " user manager",
                )
            )

    log: dict[str, Any] = {}
    if params["proxy"] and nginx.get("installed"):
        log, more = log_section(params, nginx, since)
        findings += more

    # live probes: through nginx, and straight to the backend nginx proxies to
    path = params["paths"][0]
    entry = next(iter((nginx.get("paths") or {}).get(path, {}).get("servers", [])), None)
    url, resolve = params["url"], params["resolve"]
    if not url and entry is not None:
        url, resolve = _probe_address(entry, path)
    backend_url = params["backend_url"]
    if not backend_url and entry is not None and entry["target"].get("servers"):
        first = entry["target"]["servers"][0]
        if not first.startswith("unix:"):
            host = first
            if host.startswith(("0.0.0.0:", "*:")):
                host = "127.0.0.1:" + host.split(":", 1)[1]
            backend_url = f"{entry['target']['scheme']}://{host}{entry['target']['uri']}"
    if not backend_url:
        backend_url = _backend_url_from_units(units, path)
    probe_id = f"{PROBE_PREFIX}{int(started * 1000)}"
    probes: dict[str, Any] = {"id": probe_id}
    jobs: dict[str, Callable[[], dict[str, Any]]] = {}
    socket_only = any(f["id"] == "backend.unit_socket_only" for f in findings)
    why_not = ""
    if not params["probe"]:
        why_not = "sse_diagnose_probe is false"
    elif socket_only:
        why_not = (
            "the backend service is inactive behind a listening socket; a probe would start it"
        )
    if params["proxy"] and nginx.get("running") is not False and nginx.get("installed"):
        if why_not or not url:
            probes["nginx"] = {
                "skipped": True,
                "why": why_not or "no server block to probe",
                "url": url,
            }
        else:
            jobs["nginx"] = lambda: _probe(
                url,
                params,
                probe_id,
                resolve,
                insecure=not params["cacert"],
                cacert=params["cacert"],
            )
    if backend_url:
        if why_not:
            probes["backend"] = {"skipped": True, "why": why_not, "url": backend_url}
        else:
            jobs["backend"] = lambda: _probe(backend_url, params, probe_id, insecure=True)
    probes.update(_run_probes(jobs))
    if "nginx" in probes and not probes["nginx"].get("skipped") and log.get("readable"):
        probes["nginx"]["access_log_line"] = _own_line(log, probe_id)
    findings += probe_findings(probes, params["keepalive_interval"])
    for f in findings:  # every finding names its hop: nginx, backend, access_log, proxy
        f.setdefault("component", f["id"].split(".", 1)[0])

    symptom = next((f["message"] for f in findings if f["id"] == "access_log.symptom"), "")
    result = verdict(findings, probes, {"paths": params["paths"], "symptom": symptom})

    nginx_out = {k: v for k, v in nginx.items() if k != "config"}
    log_out = {k: v for k, v in log.items() if k != "fmt"}
    findings.sort(key=lambda f: (SEVERITY_ORDER[f["severity"]], f["id"]))
    report.update(
        {
            "healthy": result["healthy"],
            "cause": result["cause"],
            "sentence": result["sentence"],
            "findings": findings,
            "nginx": nginx_out if params["proxy"] else None,
            "backend": {"units": units} if params["backend"] else None,
            "access_log": log_out or None,
            "probes": probes,
            "elapsed_s": round(time.time() - started, 3),
        }
    )
    return report
