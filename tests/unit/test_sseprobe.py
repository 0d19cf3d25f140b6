"""Tests for the SSE probe (the sse.stack collection's module_utils sseprobe*.py), its CLI
and its Ansible module."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.sse.stack.plugins.module_utils.sseprobe import (
    CHECKS,
    Comment,
    ConfigError,
    Event,
    HTTPResponseParser,
    ProbeConfig,
    SSEParser,
    check,
)
from sse_fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "collections" / "ansible_collections" / "sse" / "stack" / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
MODULE = PLUGINS / "modules" / "sse_probe.py"
PACKAGE = "ansible_collections.sse.stack.plugins.module_utils"
# The CLI as the package runs it: `python -m` (what targets without a venv do) ...
CLI = [sys.executable, "-m", f"{PACKAGE}.sseprobe_cli"]
# ... and the `sseprobe` entry point that `make venv` installs beside the interpreter.
ENTRY_POINT = Path(sys.executable).parent / "sseprobe"

# Short timings so the file runs quickly: keepalives every 0.3 s, limit 0.5 s.
FAST = {"keepalive_interval": 0.3, "tolerance": 0.2, "first_byte_timeout": 0.6}
HOLD = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_tls_files(tmp_path_factory)


def make_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for sse.test and 127.0.0.1 and its key (PEM files)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to generate a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=sse.test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", key, "-out", cert),
            *("-addext", "subjectAltName=DNS:sse.test,IP:127.0.0.1"),
            # Key usage keeps Python 3.13's strict X.509 verification happy (self-signed CA).
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tls_files: tuple[str, str]) -> Iterator[FaultServer]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_files)
    with FaultServer(ctx) as srv:
        yield srv


def probe(url: str, hold: float = HOLD, **kw: Any) -> dict[str, Any]:
    """Run check() and assert the generous bound every probe must respect."""
    cfg = ProbeConfig(url=url, hold=hold, **{**FAST, **kw})
    start = time.monotonic()
    result = check(cfg).to_dict()
    assert time.monotonic() - start <= cfg.hold + cfg.first_byte_timeout + 1.0
    assert set(result["checks"]) == set(CHECKS)
    return result


def failed(result: dict[str, Any]) -> list[str]:
    return [f["check"] for f in result["failures"]]


# -- healthy streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthy", "/healthy-plain", "/healthy-crlf"])
def test_healthy_stream_passes(server: FaultServer, path: str) -> None:
    start = time.monotonic()
    r = probe(server.url(path), headers={"X-Probe": "yes"})
    assert time.monotonic() - start <= HOLD + 1.0
    assert r["ok"] is True, r["failures"]
    assert r["failures"] == []
    assert all(state == "pass" for name, state in r["checks"].items() if name != "tls")
    assert r["checks"]["tls"] == "skip"
    assert r["status"] == 200
    assert r["content_type"].startswith("text/event-stream")
    assert r["headers"]["content-type"] == r["content_type"]
    assert r["first_line"] == ":ok"
    assert isinstance(r["first_byte_ms"], float)
    assert r["keepalives"] >= 1
    assert r["comments"] == r["keepalives"] + 1
    assert r["max_gap_s"] <= 0.5
    assert r["held_s"] >= HOLD
    assert r["events"] == 1
    assert r["last_event_id"] == "7"
    assert r["url"] == server.url(path)
    assert any(h.get("x-probe") == "yes" for p, h in server.requests if p == path)


def test_progress_is_reported(server: FaultServer) -> None:
    seen: list[float] = []
    check(
        ProbeConfig(url=server.url("/healthy"), hold=0.6, **FAST), lambda r: seen.append(r.held_s)
    )
    assert len(seen) >= 2
    assert seen == sorted(seen)


def test_hold_shorter_than_limit_needs_no_keepalive(server: FaultServer) -> None:
    r = probe(server.url("/no-keepalive"), hold=0.3)
    assert r["ok"] is True, r["failures"]
    assert r["keepalives"] == 0


def test_expect_first_can_be_disabled(server: FaultServer) -> None:
    r = probe(server.url("/no-ok"), hold=0.4, expect_first="")
    assert r["ok"] is True, r["failures"]
    assert r["checks"]["first_comment"] == "skip"


# -- one failing check each ----------------------------------------------------------------------


def test_connect_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = probe(f"http://127.0.0.1:{port}/")
    assert failed(r) == ["connect"]
    assert "refused" in r["failures"][0]["message"].lower()
    assert r["status"] is None


@pytest.mark.parametrize(
    ("path", "check_name", "text"),
    [
        ("/no-ok", "first_comment", "'data: hi'"),
        ("/no-keepalive", "keepalive", "no :keepalive"),
        ("/status-502", "status", "502"),
        ("/wrong-type", "content_type", "text/plain"),
        ("/close-early", "stream_closed", "terminating chunk"),
        ("/close-abrupt", "stream_closed", "without the terminating chunk"),
        ("/content-length", "stream_closed", "Content-Length"),
        ("/no-body", "first_byte", "no body byte"),
        ("/silent", "first_byte", "no response"),
        ("/garbage", "status", "status line"),
        ("/broken-chunked", "protocol", "chunk size"),
        ("/overlong-chunk", "protocol", "CRLF"),
        ("/huge-header", "status", "65536"),
        ("/endless-headers", "status", "not complete"),
    ],
)
def test_fault_fails_its_check(server: FaultServer, path: str, check_name: str, text: str) -> None:
    r = probe(server.url(path))
    assert r["ok"] is False
    assert failed(r) == [check_name]
    assert text in r["failures"][0]["message"]
    assert r["checks"][check_name] == "fail"


def test_late_keepalive_reports_the_gap(server: FaultServer) -> None:
    r = probe(server.url("/late-keepalive"), hold=1.4)
    assert failed(r) == ["keepalive"]
    assert "without a :keepalive comment" in r["failures"][0]["message"]
    assert r["keepalives"] >= 2
    assert r["max_gap_s"] > 0.5


def test_events_count_as_activity(server: FaultServer) -> None:
    # a busy stream gets no keepalive comments (the server's timer restarts on each write)
    r = probe(server.url("/busy-no-keepalive"), hold=1.4)
    assert r["ok"] is True, r["failures"]
    assert r["keepalives"] == 0 and r["events"] >= 5
    assert r["checks"]["keepalive"] == "pass"


def test_silence_after_events_fails_keepalive(server: FaultServer) -> None:
    r = probe(server.url("/events-then-silence"), hold=1.6)
    assert failed(r) == ["keepalive"]
    assert "without a :keepalive comment or an event" in r["failures"][0]["message"]
    assert r["events"] == 3


def test_bad_status_keeps_head_figures(server: FaultServer) -> None:
    r = probe(server.url("/status-502"))
    assert r["status"] == 502
    assert r["content_type"] == "text/html"
    assert r["checks"]["content_type"] == "skip"


def test_broken_chunk_after_good_body_counts_first_byte(server: FaultServer) -> None:
    r = probe(server.url("/broken-chunked"))
    assert r["checks"]["status"] == "pass"
    assert r["checks"]["first_byte"] == "pass"
    assert r["first_line"] == ":ok"


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_untrusted_certificate(tls_server: FaultServer) -> None:
    r = probe(tls_server.url("/healthy"))
    assert failed(r) == ["tls"]
    assert "certificate" in r["failures"][0]["message"]


def test_tls_with_cacert_passes(tls_server: FaultServer, tls_files: tuple[str, str]) -> None:
    r = probe(tls_server.url("/healthy"), cacert=tls_files[0])
    assert r["ok"] is True, r["failures"]
    assert r["checks"]["tls"] == "pass"
    assert r["tls_version"]


def test_tls_resolve_uses_url_host_for_sni(
    tls_server: FaultServer, tls_files: tuple[str, str]
) -> None:
    url = tls_server.url("/healthy", host="sse.test")
    resolve = f"sse.test:{tls_server.port}:127.0.0.1"
    r = probe(url, hold=0.4, cacert=tls_files[0], resolve=resolve)
    assert r["ok"] is True, r["failures"]
    assert r["peer"] == f"127.0.0.1:{tls_server.port}"
    # Same address, other name: the certificate does not cover it.
    url = tls_server.url("/healthy", host="other.test")
    resolve = f"other.test:{tls_server.port}:127.0.0.1"
    r = probe(url, hold=0.4, cacert=tls_files[0], resolve=resolve)
    assert failed(r) == ["tls"]


def test_tls_insecure_skips_verification(tls_server: FaultServer) -> None:
    r = probe(tls_server.url("/healthy"), hold=0.4, insecure=True)
    assert r["ok"] is True, r["failures"]


def test_every_check_name_is_exercised() -> None:
    # Guard: the parametrised faults above plus connect/tls cover every check name.
    covered = {"connect", "tls", "first_comment", "keepalive", "status", "content_type"}
    covered |= {"stream_closed", "first_byte", "protocol"}
    assert covered == set(CHECKS)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"url": "ftp://x/"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://h:99999/"}, "url"),
        ({"hold": 0}, "hold"),
        ({"hold": "abc"}, "hold"),
        ({"keepalive_interval": -1}, "keepalive_interval"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"first_byte_timeout": 0}, "first_byte_timeout"),
        ({"cacert": "/nonexistent/ca.pem"}, "cacert"),
        ({"resolve": "garbage"}, "resolve"),
        ({"resolve": "other:80:127.0.0.1"}, "resolve"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X": "a\r\nb"}}, "headers"),
        ({"expect_first": "a\nb"}, "expect_first"),
    ],
)
def test_config_errors_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    args = {"url": "http://example.test/", **kwargs}
    with pytest.raises(ValueError, match=f"^{name} ") as info:
        ProbeConfig(**args)
    assert isinstance(info.value, ConfigError)
    assert info.value.argument == name


def test_config_resolve_and_request() -> None:
    cfg = ProbeConfig(
        url="https://Example.test:8443/s?x=1",
        resolve="example.test:8443:[::1]",
        headers={"Last-Event-ID": "5", "accept": "text/event-stream, */*"},
    )
    assert (cfg.host, cfg.port, cfg.connect_host, cfg.target) == (
        "example.test",
        8443,
        "::1",
        "/s?x=1",
    )
    request = cfg.request_bytes().decode()
    assert request.startswith("GET /s?x=1 HTTP/1.1\r\nHost: Example.test:8443\r\n")
    assert "Last-Event-ID: 5\r\n" in request
    assert "accept: text/event-stream, */*\r\n" in request
    assert "Accept: text/event-stream\r\n" not in request
    assert request.endswith("\r\n\r\n")


# -- SSE parser -----------------------------------------------------------------------------------

STREAM = (
    b"\xef\xbb\xbf:ok\r\n\r\n"
    b"retry: 1500\n"
    b"id: 1\n"
    b"event: greet\n"
    b"data: line one\n"
    b"data:line two\n"
    b"data\n"
    b"\n"
    b": keepalive\r"
    b"\r"
    b"data: second\r\n"
    b"id\r\n"
    b"\r\n"
    b"id: 3\n"
    b"\n"
    b"retry: x1\n"
    b"ignored: field\n"
    b"data: unterminated"
)
EXPECTED = [
    ("comment", "ok"),
    ("event", "greet", "line one\nline two\n", "1"),
    ("comment", " keepalive"),
    ("event", "message", "second", ""),
]


def _simplify(items: list[Comment | Event]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for item in items:
        if isinstance(item, Comment):
            out.append(("comment", item.text))
        else:
            out.append(("event", item.type, item.data, item.id))
    return out


def test_sse_parser_whole_stream() -> None:
    parser = SSEParser()
    items = parser.feed(STREAM, at=1.0)
    assert _simplify(items) == EXPECTED
    assert all(item.at == 1.0 for item in items)
    assert parser.retry_ms == 1500
    assert parser.last_event_id == "3"  # an id without data still updates it
    assert parser.first_line == ":ok"


def test_sse_parser_split_at_every_byte_boundary() -> None:
    for i in range(len(STREAM) + 1):
        parser = SSEParser()
        items = parser.feed(STREAM[:i]) + parser.feed(STREAM[i:])
        assert _simplify(items) == EXPECTED, i
        assert parser.last_event_id == "3"
        assert parser.retry_ms == 1500


def test_sse_parser_byte_by_byte() -> None:
    parser = SSEParser()
    items: list[Comment | Event] = []
    for i in range(len(STREAM)):
        items += parser.feed(STREAM[i : i + 1])
    assert _simplify(items) == EXPECTED


def test_sse_parser_cr_then_lf_in_next_feed_is_one_line_end() -> None:
    parser = SSEParser()
    assert _simplify(parser.feed(b"data: a\r")) == []
    assert _simplify(parser.feed(b"\n\r\n")) == [("event", "message", "a", "")]


def test_sse_parser_line_limit() -> None:
    parser = SSEParser(max_line=10)
    assert _simplify(parser.feed(b":ok\n" + b"x" * 11)) == [("comment", "ok")]
    assert parser.error is not None and parser.error.check == "protocol"


# -- HTTP response parser -------------------------------------------------------------------------

CHUNKED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nx-a: 2\r\n"
    b"Transfer-Encoding: gzip, chunked\r\n\r\n"
    b"4;ext=1\r\n:ok\n\r\n"
    b"A\r\n\n:keepaliv\r\n"
    b"2\r\ne\n\r\n"
    b"0\r\nTrailer: x\r\n\r\n"
    b"ignored"
)


def test_http_parser_chunked_split_everywhere() -> None:
    for i in range(len(CHUNKED) + 1):
        parser = HTTPResponseParser()
        body = b"".join(parser.feed(CHUNKED[:i]) + parser.feed(CHUNKED[i:]))
        assert parser.error is None, (i, parser.error)
        assert body == b":ok\n\n:keepalive\n", i
        assert parser.done and parser.chunked
        assert parser.head is not None
        assert parser.head.status == 200
        assert parser.head.headers["x-a"] == "1, 2"


def test_http_parser_content_length_and_close() -> None:
    parser = HTTPResponseParser()
    body = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef")
    assert body == [b"abc"] and parser.done and not parser.truncated
    parser = HTTPResponseParser()
    body = parser.feed(b"HTTP/1.0 200 OK\nContent-Type: text/event-stream\n\nabc")
    parser.feed_eof()
    assert body == [b"abc"] and parser.done and not parser.truncated and parser.error is None


@pytest.mark.parametrize(
    ("data", "check_name"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "status"),
        (b"HTTP/1.1 OK\r\n\r\n", "status"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "status"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, "status"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "status"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", "protocol"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "protocol"),
    ],
)
def test_http_parser_malformed(data: bytes, check_name: str) -> None:
    parser = HTTPResponseParser()
    parser.feed(data)
    assert parser.error is not None
    assert parser.error.check == check_name
    assert parser.feed(b"more") == []  # parsing stops after an error


def test_http_parser_eof_cases() -> None:
    parser = HTTPResponseParser()
    parser.feed_eof()
    assert parser.error is not None and "without any response" in parser.error.message
    parser = HTTPResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    parser.feed_eof()
    assert parser.error is not None and parser.error.check == "status"
    parser = HTTPResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    parser.feed_eof()
    assert parser.error is None and parser.truncated and parser.done


# -- CLI ------------------------------------------------------------------------------------------


def run_cli(*args: str, executable: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = (executable or CLI) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")


FAST_ARGS = ["--keepalive-interval", "0.3", "--tolerance", "0.2", "--first-byte-timeout", "0.6"]


def test_cli_json_pass(server: FaultServer) -> None:
    proc = run_cli("check", server.url("/healthy"), "--hold", "0.8", "--json", *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON object
    assert data["ok"] is True
    for key in ("failures", "status", "first_byte_ms", "keepalives", "max_gap_s", "held_s"):
        assert key in data
    assert data["events"] == 1


def test_cli_human_fail(server: FaultServer) -> None:
    proc = run_cli("check", server.url("/no-ok"), "--hold", "0.4", *FAST_ARGS)
    assert proc.returncode == 1
    assert "FAIL  first_comment" in proc.stdout
    assert "PASS  status" in proc.stdout
    assert "\r" not in proc.stdout  # no live line when stdout is not a TTY


def test_cli_header_is_sent(server: FaultServer) -> None:
    proc = run_cli(
        "check", server.url("/healthy?hdr"), "--hold", "0.3", "--header", "X-Trace: abc", *FAST_ARGS
    )
    assert proc.returncode == 0, proc.stdout
    assert ("/healthy?hdr", "abc") in [(p, h.get("x-trace")) for p, h in server.requests]


def test_cli_entry_point_through_a_symlink(server: FaultServer, tmp_path: Path) -> None:
    if not ENTRY_POINT.exists():
        pytest.skip(f"no sseprobe entry point beside {sys.executable} (run make venv)")
    link = tmp_path / "sseprobe"
    link.symlink_to(ENTRY_POINT)
    proc = run_cli(
        "check", server.url("/healthy"), "--hold", "0.3", *FAST_ARGS, executable=[str(link)]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["check", "ftp://example.test/"], "URL"),
        (["check", "http://example.test/", "--hold", "-1"], "--hold"),
        (["check", "http://example.test/", "--hold", "soon"], "--hold"),
        (["check", "http://example.test/", "--keepalive-interval", "0"], "--keepalive-interval"),
        (["check", "http://example.test/", "--cacert", "/nonexistent.pem"], "--cacert"),
        (["check", "http://example.test/", "--resolve", "nope"], "--resolve"),
        (["check", "http://example.test/", "--header", "no-colon"], "--header"),
        (["check"], "URL"),
        ([], "COMMAND"),
    ],
)
def test_cli_usage_errors(args: list[str], name: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert name in lines[0]
    assert "Traceback" not in proc.stderr


# -- Ansible module -------------------------------------------------------------------------------


def run_module(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from ansible.module_utils.testing import patch_module_args

    # The module imports the probe as the collection's module_utils, which the package
    # install makes importable here just as Ansible's payload does on a target.
    spec = importlib.util.spec_from_file_location("sse_probe_module", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_module_healthy(server: FaultServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_module(
        {"url": server.url("/healthy"), "hold": 0.8, **FAST, "_ansible_check_mode": True}, capsys
    )
    assert out["changed"] is False
    assert "failed" not in out or out["failed"] is False
    assert out["ok"] is True
    assert out["status"] == 200
    assert out["keepalives"] >= 1
    assert out["first_line"] == ":ok"
    assert out["events"] == 1


def test_module_reports_but_does_not_fail(
    server: FaultServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_module({"url": server.url("/status-502"), **FAST}, capsys)
    assert out.get("failed", False) is False
    assert out["ok"] is False
    assert out["failures"][0]["check"] == "status"


def test_module_fail_on_error(server: FaultServer, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_module({"url": server.url("/status-502"), "fail_on_error": True, **FAST}, capsys)
    assert out["failed"] is True
    assert out["msg"].startswith("status: expected HTTP 200, got 502")
    assert out["status"] == 502


def test_module_bad_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_module({"url": "http://example.test/", "hold": -1}, capsys)
    assert out["failed"] is True
    assert "hold" in out["msg"]


def _imports(path: Path, top: bool = False) -> set[str]:
    """The modules a file imports (absolute names; ``from X import Y`` gives X and X.Y),
    anywhere in it or (``top``) when it is imported."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body if top else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _shipped(path: Path) -> set[str]:
    """The collection module_utils a module run ships with ``path``: what it imports, and
    what those import, as Ansible follows them."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        for name in _imports(todo.pop()):
            stem = name[len(PACKAGE) + 1 :] if name.startswith(PACKAGE + ".") else ""
            if stem and stem not in seen and (MODULE_UTILS / f"{stem}.py").is_file():
                seen.add(stem)
                todo.append(MODULE_UTILS / f"{stem}.py")
    return seen


# The controller-only HTTP/2 transport and the library it needs (h2 and its own imports).
HTTP2_ONLY = {"sseprobe_http2"}
HTTP2_LIBRARIES = {"h2", "hpack", "hyperframe"}


def _assert_no_http2(module: Path, shipped: set[str]) -> None:
    """Neither the HTTP/2 transport nor h2 goes to targets: not imported by the module or by
    any module_utils it ships, at the top or inside a function."""
    assert not shipped & HTTP2_ONLY, f"{module.name} would ship {sorted(shipped & HTTP2_ONLY)}"
    for path in [module, *(MODULE_UTILS / f"{stem}.py" for stem in sorted(shipped))]:
        tops = {name.split(".")[0] for name in _imports(path)}
        assert not tops & HTTP2_LIBRARIES, f"{path.name} imports {sorted(tops & HTTP2_LIBRARIES)}"


def test_module_ships_the_check_only() -> None:
    # Targets get the module and the module_utils it imports: no load code, no CLI, no h2.
    assert _shipped(MODULE) == {"sseprobe", "sseprobe_config", "sseprobe_parsers"}
    _assert_no_http2(MODULE, _shipped(MODULE))
    modules = {n.split(".")[0] for n in _imports(MODULE)}
    assert modules <= {"__future__", "ansible", "ansible_collections"}
    for stem in ("sseprobe", "sseprobe_config", "sseprobe_parsers"):
        # standard library only, and not the event loop that only load runs
        top = {n.split(".")[0] for n in _imports(MODULE_UTILS / f"{stem}.py", top=True)}
        assert top - set(sys.stdlib_module_names) <= {"ansible_collections"}, stem
        assert "asyncio" not in top, f"{stem}.py imports asyncio when imported"


def test_the_http2_transport_is_seen_by_the_shipping_check(tmp_path: Path) -> None:
    # the guard above can fail: a module_utils that imported the transport, or h2 inside a
    # function, would be caught
    assert _shipped(MODULE_UTILS / "sseprobe_cli.py") >= HTTP2_ONLY | {"sseprobe_load"}
    assert {n.split(".")[0] for n in _imports(MODULE_UTILS / "sseprobe_http2.py")} >= {"h2"}
    sneaky = tmp_path / "sneaky_module.py"
    sneaky.write_text("def main():\n    import h2.connection\n")
    with pytest.raises(AssertionError, match="imports \\['h2'\\]"):
        _assert_no_http2(sneaky, set())
    with pytest.raises(AssertionError, match="would ship"):
        _assert_no_http2(MODULE, {"sseprobe", "sseprobe_http2"})


def test_the_diagnose_module_ships_the_check_only() -> None:
    shipped = _shipped(PLUGINS / "modules" / "sse_diagnose.py")
    assert "sseprobe" in shipped
    _assert_no_http2(PLUGINS / "modules" / "sse_diagnose.py", shipped)
    assert not {n for n in shipped if n.startswith("sseprobe_")} - {
        "sseprobe_config",
        "sseprobe_parsers",
    }
