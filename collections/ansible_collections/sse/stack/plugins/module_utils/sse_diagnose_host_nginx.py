"""nginx on this host, for the SSE diagnosis: installed, running, its configuration as the
running master reads it (``nginx -T`` with its ``-c``/``-p``), files written after the
workers loaded it, and for each SSE path the server blocks and the location that serve it.

Reads only (``nginx -T`` and /proc); every missing or unreadable piece is a finding.
No Ansible imports: shipped as the collection module_utils ``sse_diagnose_host_nginx``.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Any, Callable

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_backend import ProcessTable
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx import (
    Directive,
    NginxConfig,
    NginxSyntaxError,
    access_logs,
    finding,
    levels_for,
    listens,
    match_location,
    redirects_everything,
    server_matches,
    server_names,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_findings import (
    analyze_location,
)

__all__ = ["NGINX_DIRS", "iso", "nginx_section"]

Run = Callable[[list[str]], "tuple[int, str, str]"]
Which = Callable[[str], "str | None"]
NGINX_DIRS = ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin", "/sbin"]


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


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


def _workers(procs: ProcessTable, master: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        p
        for p in procs.children(master["pid"])
        if p["cmdline"]
        and p["cmdline"][0].startswith("nginx: worker process")
        and "shutting down" not in " ".join(p["cmdline"])
    ]


def not_installed() -> dict[str, Any]:
    return finding(
        "nginx.not_installed",
        "critical",
        "nginx is not installed on this proxy host (no nginx binary on the PATH or in "
        + ", ".join(NGINX_DIRS)
        + "): nothing serves the stream here",
    )


def not_running() -> dict[str, Any]:
    return finding(
        "nginx.not_running",
        "critical",
        "nginx is installed but not running (no 'nginx: master process'): nothing"
        " serves the stream",
    )


def config_invalid(out: str, err: str) -> dict[str, Any]:
    message = next(
        (line for line in (err or out).splitlines() if "emerg" in line or "error" in line),
        (err or out).strip()[:300],
    )
    return finding(
        "nginx.config_invalid",
        "critical",
        f"nginx -T rejects the configuration: {message}; a reload would fail and the running"
        " nginx (if any) serves an older configuration that cannot be read here",
    )


def _load(
    run: Run, argv: list[str], info: dict[str, Any]
) -> tuple[NginxConfig | None, dict[str, Any] | None]:
    """The configuration nginx -T prints, or the finding that says why there is none."""
    rc, out, err = run([*argv, "-T"])
    info["test"] = (err or "").strip().splitlines()[-3:]
    if rc != 0 or "# configuration file" not in out:
        return None, config_invalid(out, err)
    try:
        return NginxConfig.from_dump(out), None
    except NginxSyntaxError as exc:
        why = f"cannot parse nginx -T output: {exc}"
        return None, finding("nginx.config_unreadable", "warning", why)


def not_reloaded(
    config: NginxConfig, master: dict[str, Any], procs: ProcessTable, info: dict[str, Any]
) -> dict[str, Any] | None:
    """A file written after the workers started: nginx runs an older configuration."""
    # workers start anew on a reload; the newest file time against the oldest live worker
    workers = _workers(procs, master)
    loader = min(workers, key=lambda p: p["start"]) if workers else master
    info["loaded_at"] = iso(loader["start"])
    newer = []
    for path in config.order:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if procs.after_start(mtime, loader):
            newer.append((path, mtime))
    info["changed_after_load"] = [{"path": p, "at": iso(m)} for p, m in newer]
    if not newer:
        return None
    path, mtime = max(newer, key=lambda item: item[1])
    return finding(
        "nginx.not_reloaded",
        "warning",
        f"{path} changed at {iso(mtime)}, after nginx last (re)loaded its configuration"
        f" at {iso(loader['start'])}: the running nginx may not run what is on disk (what is"
        " analysed here); nginx -t && systemctl reload nginx",
        path,
        files=[p for p, _ in newer],
    )


def _serve(
    config: NginxConfig, server: Directive, path: str, params: dict[str, Any]
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """How ``server`` serves ``path``: (entry, why it does not proxy it or "", findings)."""
    http = config.http()
    assert http is not None
    names = server_names(server)
    base = {"server": server.where, "server_name": names}
    redirect = redirects_everything(server)
    if redirect is not None:
        return base, f"{redirect.text()} at {redirect.where}", []
    errors: list[str] = []
    match = match_location(server, path, errors)
    found = [finding("nginx.regex", "info", error) for error in errors]
    loc = match.location
    if loc is None:
        return base, "no location matches", found
    if match.redirect:
        why = f"nginx redirects it (301) to {path}/: {loc.describe()} at {loc.directive.where}"
        return base, why, found
    result, more = analyze_location(config, server, match.chain, path, params["keepalive_interval"])
    entry = {
        **base,
        "listen": listens(server),
        "location": loc.describe(),
        "location_where": loc.directive.where,
        "location_chain": [f"{x.describe()} ({x.directive.where})" for x in match.chain],
        "access_logs": access_logs(levels_for(http, server, match.chain)),
        **result,
    }
    why = (
        ""
        if result["target"]
        else f"{entry['location']} at {entry['location_where']} does not proxy"
    )
    return entry, why, found + more


def _path_section(
    config: NginxConfig, path: str, params: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    servers, skipped, found = [], [], []
    for server in config.servers():
        if params["server_name"] and not server_matches(server, params["server_name"]):
            continue
        entry, why, more = _serve(config, server, path, params)
        found += more
        if why:
            skipped.append(
                {"server": entry["server"], "server_name": entry["server_name"], "why": why}
            )
        else:
            servers.append(entry)
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
    return {"servers": servers, "not_serving": skipped}, found


def nginx_section(
    params: dict[str, Any], run: Run, which: Which, procs: ProcessTable
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """nginx's part of the report, and its findings."""
    info: dict[str, Any] = {"installed": False}
    master = _master(procs)
    binary, options = _master_args(master) if master else (None, [])
    binary = binary if binary and os.path.exists(binary) else which("nginx")
    if not binary:
        return info, [not_installed()]
    info.update({"installed": True, "binary": binary, "running": master is not None})
    found = [] if master is not None else [not_running()]
    if master is not None:
        info["master_pid"] = master["pid"]
        info["master_started"] = iso(master["start"])
    config, problem = _load(run, [binary, *options], info)
    if config is None:
        return info, [*found, problem] if problem else found
    info["main"] = config.main
    info["files"] = config.order
    found += [finding("nginx.include", "info", warning) for warning in config.warnings]
    stale = not_reloaded(config, master, procs, info) if master is not None else None
    found += [stale] if stale else []
    if config.http() is None:
        why = f"{config.main} has no http block: nothing proxies the stream"
        return info, [*found, finding("nginx.no_server", "critical", why, config.main)]
    info["config"] = config
    info["paths"] = {}
    for path in params["paths"]:
        info["paths"][path], more = _path_section(config, path, params)
        found += more
    return info, found
