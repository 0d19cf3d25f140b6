"""One host's diagnosis end to end (fake nginx -T, real probes against a local SSE server),
the verdict's choice of cause, and bad input: no nginx, a rejected config, missing or
unreadable logs, a backend that is down - findings, never an exception."""

from __future__ import annotations

import os
import socket
import textwrap
import time
from pathlib import Path

import pytest
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_backend as backend_mod
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_crosscheck as cross
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_host as host
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_host_nginx as host_nginx
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_verdict as verdict_mod
from sse_fault_server import INTERVAL, FaultServer

ROOT = Path(__file__).resolve().parents[2]


FAST = {
    "keepalive_interval": INTERVAL,
    "tolerance": 0.3,
    "hold": INTERVAL + 0.3 + 0.4,
    "first_byte_timeout": 0.6,
}


def params(**over):
    base = {
        "paths": ["/healthy"],
        "since": "1h",
        "proxy": True,
        "backend": False,
        "probe": True,
        "server_name": "",
        "url": "",
        "resolve": "",
        "cacert": "",
        "backend_url": "",
        "backend_unit": "",
        "access_log": "",
        **FAST,
    }
    base.update(over)
    return base


def nginx_dump(upstream: str, log: str, location: str = "") -> str:
    site = textwrap.dedent(
        f"""
        upstream app {{ server {upstream}; }}
        server {{
            listen 80;
            access_log {log} sse_timed;
            location /healthy {{
                proxy_pass http://app;
                proxy_http_version 1.1;
                proxy_set_header Connection '';
                proxy_buffering off;
                add_header X-Accel-Buffering no;
                {location}
            }}
        }}
        """
    )
    main = textwrap.dedent(
        """
        http {
            log_format sse_timed '$remote_addr [$time_local] "$request" '
                                 'status=$status rt=$request_time probe="$http_x_sseprobe_id"';
            include conf.d/*.conf;
        }
        """
    )
    return (
        f"# configuration file /etc/nginx/nginx.conf:\n{main}\n"
        f"# configuration file /etc/nginx/conf.d/sse.conf:\n{site}\n"
    )


def fake_nginx(dump: str, rc: int = 0, err: str = "nginx: configuration file test is successful"):
    def run(argv):
        if argv[0] == "/usr/sbin/nginx" and argv[-1] == "-T":
            return rc, dump if rc == 0 else "", err
        return 1, "", "not faked"

    return run


def procs_with_master():
    table = backend_mod.ProcessTable(proc="/nonexistent")
    now = time.time()
    table.procs = {
        10: {
            "pid": 10,
            "ppid": 1,
            "start": now - 100,
            "cmdline": ["nginx: master process /usr/sbin/nginx -g daemon on;"],
        },
        11: {"pid": 11, "ppid": 10, "start": now - 90, "cmdline": ["nginx: worker process"]},
    }
    return table


def which_nginx(name):
    return "/usr/sbin/nginx" if name == "nginx" else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


def addr(server) -> str:
    return server.url("/").split("//", 1)[1].rstrip("/")


def run_diagnose(server, tmp_path, url_path="/healthy", location="", log=None, **over):
    log = log or str(tmp_path / "sse_access.log")
    dump = nginx_dump(addr(server), log, location)
    p = params(url=server.url(url_path), **over)
    return host.diagnose(p, fake_nginx(dump), which_nginx, procs_with_master(), users=[])


# --- end to end -----------------------------------------------------------------------------


def test_healthy_through_nginx_and_straight(server, tmp_path):
    (tmp_path / "sse_access.log").write_text("")
    report = run_diagnose(server, tmp_path)
    assert report["healthy"] is True, report["sentence"]
    assert report["cause"] is None
    assert report["sentence"].startswith("Healthy: /healthy streams through nginx")
    assert report["probes"]["backend"]["url"] == f"http://{addr(server)}/healthy"
    assert report["probes"]["backend"]["ok"] and report["probes"]["nginx"]["ok"]
    located = report["nginx"]["paths"]["/healthy"]["servers"][0]
    assert located["location"] == "location /healthy"
    assert located["location_where"] == "/etc/nginx/conf.d/sse.conf:6"


def test_backend_without_keepalives_is_a_backend_fault(server, tmp_path):
    report = run_diagnose(
        server,
        tmp_path,
        "/no-keepalive",
        paths=["/no-keepalive"],
        location="",
        log=str(tmp_path / "none.log"),
    )
    # the dump's only location is /healthy: /no-keepalive is served by no location
    assert report["cause"]["id"] == "nginx.no_server"
    report = run_diagnose(
        server, tmp_path, "/no-keepalive", backend_url=server.url("/no-keepalive")
    )
    assert report["cause"]["id"] == "backend.no_keepalive", report["sentence"]
    assert report["healthy"] is False
    assert any(f["id"] == "proxy.fails_with_backend" for f in report["findings"])


def test_proxy_fault_is_named_by_the_nginx_directive(server, tmp_path):
    location = "proxy_buffering on;\n proxy_ignore_headers X-Accel-Buffering;"
    report = run_diagnose(server, tmp_path, "/silent", location=location)
    assert report["cause"]["id"] == "nginx.proxy_buffering", report["sentence"]
    assert report["cause"]["where"].startswith("/etc/nginx/conf.d/sse.conf:")
    assert "proxy.breaks_stream" in report["sentence"]  # listed as also critical
    # without a config explanation, the probes alone still name the hop
    report = run_diagnose(server, tmp_path, "/silent")
    assert report["cause"]["id"] == "proxy.breaks_stream"


def test_backend_down(tmp_path):
    port = free_port()
    dump = nginx_dump(f"127.0.0.1:{port}", str(tmp_path / "x.log"))
    report = host.diagnose(
        params(url=f"http://127.0.0.1:{port}/healthy"),
        fake_nginx(dump),
        which_nginx,
        procs_with_master(),
        users=[],
    )
    assert report["cause"]["id"] == "backend.unreachable"
    assert report["sentence"].startswith(
        "Most likely cause of interrupted streams on /healthy: nothing answers"
    )


# --- bad input ------------------------------------------------------------------------------


def test_nginx_not_installed_is_a_finding():
    report = host.diagnose(
        params(backend=True, backend_unit="nope"),
        lambda argv: (127, "", "missing"),
        lambda name: None,
        backend_mod.ProcessTable(proc="/nonexistent"),
        users=[],
    )
    assert report["cause"]["id"] == "nginx.not_installed"
    assert report["nginx"] == {"installed": False}
    assert report["access_log"] is None
    assert {f["id"] for f in report["findings"]} >= {"nginx.not_installed", "backend.no_unit"}


def test_nginx_config_rejected_is_a_finding():
    run = fake_nginx(
        "",
        rc=1,
        err='nginx: [emerg] unknown directive "proxy_bufering" in /etc/nginx/conf.d/sse.conf:9',
    )
    report = host.diagnose(params(), run, which_nginx, procs_with_master(), users=[])
    assert report["cause"]["id"] == "nginx.config_invalid"
    assert "proxy_bufering" in report["cause"]["message"]


def test_nginx_installed_but_not_running(server, tmp_path):
    dump = nginx_dump(addr(server), str(tmp_path / "x.log"))
    report = host.diagnose(
        params(probe=False),
        fake_nginx(dump),
        which_nginx,
        backend_mod.ProcessTable(proc="/nonexistent"),
        users=[],
    )
    assert report["cause"]["id"] == "nginx.not_running"


@pytest.mark.parametrize(
    ("kind", "finding"), [("missing", "access_log.missing"), ("folder", "access_log.unreadable")]
)
def test_missing_or_unreadable_access_log(server, tmp_path, kind, finding):
    log = tmp_path / "sse_access.log"
    if kind == "folder":
        log.mkdir()  # opening it fails even for root
    report = run_diagnose(server, tmp_path, probe=False)
    assert finding in {f["id"] for f in report["findings"]}
    assert report["healthy"] is True  # a log problem is not a stream problem


def test_access_log_symptom_reported_and_own_probe_line_found(server, tmp_path):
    log = tmp_path / "sse_access.log"
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    log.write_text(
        "".join(
            f'127.0.0.1 [{stamp}] "GET /healthy HTTP/1.1" status=499 rt=0.4{i} probe="-"\n'
            for i in range(3)
        )
    )
    report = run_diagnose(server, tmp_path)
    stats = report["access_log"]["paths"]["/healthy"]
    assert stats["short_499"] == 3
    symptom = next(f for f in report["findings"] if f["id"] == "access_log.symptom")
    assert "3 times with 499" in symptom["message"]
    assert report["healthy"] is True and "but the incident's symptom" in report["sentence"]


def test_invalid_window_raises_value_error():
    with pytest.raises(ValueError):
        host.diagnose(params(since="soon"), lambda a: (1, "", ""), lambda n: None, users=[])


# --- the verdict ----------------------------------------------------------------------------


def f(fid, severity="critical", component=None):
    return {
        "id": fid,
        "severity": severity,
        "component": component or fid.split(".")[0],
        "message": fid,
        "where": "",
    }


def probe(ok, **more):
    return {
        "ok": ok,
        "url": "u",
        "failures": [] if ok else [{"check": "keepalive", "message": "m"}],
        **more,
    }


def test_verdict_prefers_the_cause_a_probe_confirms():
    findings = [f("backend.stale_code"), f("nginx.proxy_read_timeout"), f("proxy.breaks_stream")]
    result = verdict_mod.verdict(
        findings, {"nginx": probe(False), "backend": probe(True)}, {"paths": ["/p"]}
    )
    assert result["cause"]["id"] == "nginx.proxy_read_timeout"
    result = verdict_mod.verdict(
        findings, {"nginx": probe(True), "backend": probe(True)}, {"paths": ["/p"]}
    )
    assert result["cause"]["id"] == "backend.stale_code"  # nothing confirmed: priority order


def test_verdict_down_beats_everything_and_warnings_stay_healthy():
    findings = [f("nginx.proxy_buffering"), f("backend.unit_inactive"), f("backend.unreachable")]
    assert (
        verdict_mod.verdict(findings, {}, {"paths": ["/p"]})["cause"]["id"]
        == "backend.unit_inactive"
    )
    result = verdict_mod.verdict([f("nginx.gzip", "warning")], {}, {"paths": ["/p"]})
    assert result["healthy"] is True and "warnings: nginx.gzip" in result["sentence"]


def test_buffering_warning_upgraded_when_backend_does_not_send_the_header():
    warn = {**f("nginx.proxy_buffering", "warning"), "needs_backend_header": True}
    direct = probe(True, status=200, headers={})
    result = verdict_mod.verdict(
        [dict(warn)], {"nginx": probe(True), "backend": direct}, {"paths": ["/p"]}
    )
    assert result["cause"]["id"] == "nginx.proxy_buffering"
    direct = probe(True, status=200, headers={"x-accel-buffering": "no"})
    result = verdict_mod.verdict(
        [dict(warn)], {"nginx": probe(True), "backend": direct}, {"paths": ["/p"]}
    )
    assert result["healthy"] is True


def test_probe_findings_tell_backend_from_proxy():
    direct_down = {
        "ok": False,
        "url": "http://b/p",
        "failures": [{"check": "connect", "message": "refused"}],
    }
    out = verdict_mod.probe_findings({"nginx": probe(False), "backend": direct_down}, 2)
    assert [x["id"] for x in out] == ["backend.unreachable", "proxy.fails_with_backend"]
    out = verdict_mod.probe_findings({"nginx": probe(False)}, 2)
    assert [x["id"] for x in out] == ["proxy.stream_fails"]
    out = verdict_mod.probe_findings({"nginx": {"skipped": True}, "backend": probe(True)}, 2)
    assert out == []


# --- issue 21: findings across hops ----------------------------------------------------------

SOCKET_UNIT = {
    "unit": "sse-backend.service",
    "sockets": [{"unit": "sse-backend.socket", "active": "active", "listen": ["127.0.0.1:8000"]}],
    "server": {"server": "gunicorn", "argv": ["/v/bin/gunicorn", "app:app"]},
    "exec_start_where": "/u/sse-backend.service:12",
}


def nginx_info(tmp_path, upstream="127.0.0.1:8000", location=""):
    dump = nginx_dump(upstream, str(tmp_path / "x.log"), location)
    info, _ = host_nginx.nginx_section(params(), fake_nginx(dump), which_nginx, procs_with_master())
    return info


def test_upstream_port_that_misses_the_backend_socket_is_named(tmp_path):
    unit = {**SOCKET_UNIT}
    (found,) = cross.upstream_port(nginx_info(tmp_path, "127.0.0.1:8001"), [unit])
    assert found["id"] == "nginx.upstream_port" and found["severity"] == "critical"
    assert found["where"] == "/etc/nginx/conf.d/sse.conf:2"  # the upstream's server line
    assert "127.0.0.1:8000 (ListenStream=127.0.0.1:8000 of sse-backend.socket)" in found["message"]
    assert cross.upstream_port(nginx_info(tmp_path, "127.0.0.1:8000"), [unit]) == []
    # a backend on another host: not this host's socket to compare with
    assert cross.upstream_port(nginx_info(tmp_path, "10.0.0.7:8001"), [unit]) == []
    # the probe straight to the backend goes where it listens, not where nginx sends
    info = nginx_info(tmp_path, "127.0.0.1:8001")
    probes = host.probes_section(params(probe=False), info, [unit], [found], "sse-diagnose-1")
    assert probes["backend"]["url"] == "http://127.0.0.1:8000/healthy"


def accel_probes(header: str) -> dict:
    direct = probe(True, status=200, headers={"x-accel-buffering": header}, url="http://b/healthy")
    return {"nginx": probe(False), "backend": direct}


def test_backend_sending_x_accel_buffering_yes_is_the_cause(tmp_path):
    info = nginx_info(tmp_path)
    probes = accel_probes("yes")
    found = cross.accel_buffering(info, probes, [SOCKET_UNIT], "/healthy")
    assert [f["id"] for f in found] == ["backend.accel_buffering"]
    assert "proxy_buffering off at /etc/nginx/conf.d/sse.conf:" in found[0]["message"]
    assert "sse-backend.service" in found[0]["message"]
    findings = found + verdict_mod.probe_findings(probes, 1)
    result = verdict_mod.verdict(findings, probes, {"paths": ["/healthy"]})
    assert result["cause"]["id"] == "backend.accel_buffering", result["sentence"]
    assert cross.accel_buffering(info, accel_probes("no"), [], "/healthy") == []


def test_x_accel_buffering_yes_that_nginx_ignores_is_harmless(tmp_path):
    """A decoy: the header looks wrong, but proxy_ignore_headers makes nginx ignore it."""
    info = nginx_info(tmp_path, location="proxy_ignore_headers X-Accel-Buffering;")
    assert cross.accel_buffering(info, accel_probes("yes"), [], "/healthy") == []


def on_disk(severity="critical"):
    return verdict_mod.finding(
        "nginx.proxy_read_timeout",
        severity,
        "proxy_read_timeout 1s at /etc/nginx/conf.d/sse.conf:9 ...",
        "/etc/nginx/conf.d/sse.conf:9",
    )


def not_reloaded():
    return verdict_mod.finding(
        "nginx.not_reloaded", "warning", "changed after load", "/etc/nginx/conf.d/sse.conf"
    )


CHANGED = {
    "changed_after_load": [{"path": "/etc/nginx/conf.d/sse.conf", "at": "t"}],
    "loaded_at": "2026-12-02T07:00:00Z",
}


def test_edit_on_disk_not_reloaded_is_not_the_present_cause():
    """A valid edit on disk, not reloaded: the live stream passes, so it is not running."""
    findings = [on_disk(), not_reloaded()]
    probes = {"nginx": probe(True), "backend": probe(True)}
    cross.running_config(findings, CHANGED, probes)
    result = verdict_mod.verdict(findings, probes, {"paths": ["/p"]})
    assert result["healthy"] is True, result["sentence"]
    assert findings[0]["loaded"] is False and findings[0]["severity"] == "warning"
    assert "on disk only" in findings[0]["message"]
    assert (
        "not loaded yet (breaks streams at the next reload): nginx.proxy_read_timeout at"
        " /etc/nginx/conf.d/sse.conf:9" in result["sentence"]
    )
    # the stream through nginx fails: the file may well be what runs, it stays the cause
    findings = [on_disk(), not_reloaded()]
    probes = {"nginx": probe(False), "backend": probe(True)}
    cross.running_config(findings, CHANGED, probes)
    assert verdict_mod.verdict(findings, probes, {})["cause"]["id"] == "nginx.proxy_read_timeout"


def test_running_config_older_than_a_healthy_disk_is_the_cause():
    findings = [
        not_reloaded(),
        *verdict_mod.probe_findings({"nginx": probe(False), "backend": probe(True)}, 1),
    ]
    probes = {"nginx": probe(False), "backend": probe(True)}
    cross.running_config(findings, CHANGED, probes)
    result = verdict_mod.verdict(findings, probes, {"paths": ["/p"]})
    assert result["cause"]["id"] == "nginx.not_reloaded", result["sentence"]
    assert "older configuration" in result["cause"]["message"]


def test_not_reloaded_within_a_second_of_the_workers_start(tmp_path):
    """Precise start times: a file written 0.5 s after the workers started is seen."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp { }\n")
    table = procs_with_master()
    worker = table.procs[11]
    os.utime(conf, (worker["start"] + 0.5, worker["start"] + 0.5))
    dump = f"# configuration file {conf}:\n{conf.read_text()}"
    info, found = host_nginx.nginx_section(params(), fake_nginx(dump), which_nginx, table)
    assert [f["id"] for f in found if f["id"] == "nginx.not_reloaded"] == ["nginx.not_reloaded"]
    assert info["changed_after_load"][0]["path"] == str(conf)
