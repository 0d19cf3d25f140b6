"""The incident's own browser keeps the stream open: the /notify/ page in Debian's Firefox ESR.

The same checks as test_browser.py (Chromium), in the browser the incident was reported
from ("The connection to .../notify/events was interrupted while the page was loading").
Debian's firefox-esr runs headless, driven over WebDriver BiDi by npm's puppeteer-core
(pinned by molecule/default/e2e/package-lock.json, installed by `make node-deps`; no browser
is ever downloaded). The Node script there only drives the browser and reports what it
sees; this test publishes, restarts the backend and judges, with the same fixtures and
helpers as the Chromium test.

Trust is given the way a user gives it: the local CA that sse_nginx issues is imported
into a throwaway Firefox profile's certificate database (`certutil -A -t C,,` into its
cert9.db). No certificate error is ignored (acceptInsecureCerts stays off): without the CA
the page does not load, and the test names the certificate error.

It runs twice: over HTTP/2, which Firefox negotiates with nginx, and over HTTP/1.1 (HTTP/2
off in the profile), as a browser behind a proxy that speaks only HTTP/1.1 reaches it.
nginx's buffering fault (faults scenario) holds even the response head back on HTTP/1.1,
where this test fails naming it; on HTTP/2 the same nginx passes every frame on at once,
so the page there sees nothing wrong (and neither would a user).

Evidence, kept for every run, passed or failed, in .cache/e2e/: <name>-page.png
(screenshot), <name>-console.log (console, requests, the test's own notes) and
<name>-page.har: the page load's request list as a network panel shows it (url, method,
status, mimeType, start, and `_pending`), recorded at the end of the hold, where
/notify/events is still pending with text/event-stream: what the incident's operator could
not see. <name> is <container>-firefox (HTTP/2) or <container>-firefox-http1.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, UNIT, E2ETarget

# One definition of the shared pieces: the artifacts folder and evidence, the publish
# call, the budgets (the retry hint, live budget, restarts) and the certificate names.
from test_browser import (
    RETRY_S,
    Evidence,
    _publish,
    describe_cert,
    live_then_restarts,
    served_cert,
)

FIREFOX = "/usr/bin/firefox-esr"
E2E = ROOT / "molecule" / "default" / "e2e"
DRIVER = E2E / "firefox-driver.mjs"
STREAM_PATH = "/notify/events"
START_TIMEOUT_S = 60  # Firefox's first start in a new profile, with BiDi up
COMMAND_TIMEOUT_S = 45  # any one driver command (its own waits are shorter)
# Both protocols a browser may reach nginx with: HTTP/2, which Firefox negotiates here, and
# HTTP/1.1 (HTTP/2 turned off in the profile), as through a proxy that speaks only that.
# nginx flushes a stream differently on each: a buffering fault that HTTP/2 hides from the
# page (nginx sends each frame at once) holds even the response head back on HTTP/1.1.
H2 = "h2"
HTTP1 = "http/1.1"
EVIDENCE_NAME = {H2: "firefox", HTTP1: "firefox-http1"}


def trusting_profile(profile: Path, cafile: Path) -> str:
    """A Firefox profile whose cert9.db trusts cafile as a CA for websites; what it trusts."""
    if shutil.which("certutil") is None:
        pytest.fail("certutil not found: Debian's libnss3-tools is needed (run 'make host')")
    profile.mkdir(parents=True)
    db = f"sql:{profile}"
    for argv in (
        ["certutil", "-N", "-d", db, "--empty-password"],
        ["certutil", "-A", "-d", db, "-n", "sse-local-ca", "-t", "C,,", "-i", str(cafile)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return f"CA {describe_cert(cafile.read_bytes())} (from {cafile}, profile {profile}/cert9.db)"


class FirefoxEvidence(Evidence):
    """Chromium's evidence (console log, screenshot) plus the HAR, under names of its own."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.har = self.png.with_suffix(".har")
        self.har.unlink(missing_ok=True)
        self.har_written = False

    def fail(self, message: str) -> None:
        pytest.fail(
            f"{message}\n  screenshot: {self.png}\n  console log: {self.log}\n  HAR: {self.har}",
            False,
        )


class Firefox:
    """The Node driver as a process: one command at a time, JSON lines both ways.

    Its event lines (console, page errors, requests) go into the console log as they
    arrive; a reader thread keeps them apart from the replies."""

    def __init__(
        self, profile: Path, home: Path, evidence: FirefoxEvidence, trusted: str, protocol: str
    ) -> None:
        self.evidence = evidence
        self.protocol = protocol
        self.trusted = trusted
        self.stderr = evidence.log.with_name(evidence.log.name.replace("console", "driver"))
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ids = iter(range(1, 1_000_000))
        env = {
            **os.environ,
            "HOME": str(home),  # nothing read from or written to the real user's home
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "SSE_FIREFOX": FIREFOX,
        }
        with self.stderr.open("w") as errors:
            self.proc = subprocess.Popen(
                ["node", str(DRIVER), "--profile", str(profile)]
                + (["--http1"] if protocol == HTTP1 else []),
                cwd=E2E,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                start_new_session=True,  # its own process group: Firefox goes with it
            )
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._reply(START_TIMEOUT_S, "start")
        self.version = ready.get("version", "?")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.evidence.note(f"[driver] {line.rstrip()}")
                continue
            if "event" in message and message["event"] != "ready":
                self.evidence.note(message["text"])
            else:
                self.replies.put(message)
        self.replies.put({"event": "exit"})

    def _reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        try:
            message = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            self.evidence.fail(f"the Firefox driver did not answer {what} within {timeout_s} s")
        if message.get("event") == "exit":
            self.evidence.fail(
                f"the Firefox driver ended during {what} (exit {self.proc.wait(5)}): "
                f"{self.stderr.read_text()[-1500:]}"
            )
        if message.get("ok") is False:
            self.evidence.fail(f"the Firefox driver failed {what}: {message.get('error')}")
        return message

    def call(self, cmd: str, timeout_s: float = COMMAND_TIMEOUT_S, **args: Any) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": next(self.ids), "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout_s, cmd)

    def save(self) -> None:
        """Screenshot and (unless the hold wrote it) the HAR as things are now."""
        for cmd, path, wanted in (
            ("screenshot", self.evidence.png, True),
            ("har", self.evidence.har, not self.evidence.har_written),
        ):
            if not wanted:
                continue
            try:
                self.call(cmd, path=str(path))
            except pytest.fail.Exception as exc:
                self.evidence.note(f"[test] no {cmd}: {exc}")
        self.evidence.log.write_text("\n".join(self.evidence.lines) + "\n", encoding="utf-8")

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("close", timeout_s=15)
            self.proc.wait(timeout=15)
        except (pytest.fail.Exception, subprocess.TimeoutExpired, OSError):
            # the driver's own process group only (Node and the Firefox it started)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)


@pytest.fixture(params=[H2, HTTP1])
def firefox(e2e_target: E2ETarget, capsys, tmp_path: Path, request) -> Iterator[Firefox]:
    if not Path(FIREFOX).exists():
        pytest.fail(f"{FIREFOX} not found: Debian's firefox-esr is needed (run 'make host')")
    if shutil.which("node") is None:
        pytest.fail("node not found: Node.js drives Firefox (run 'make host')")
    if not (E2E / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(f"puppeteer-core is not installed in {E2E} (run 'make node-deps')")
    protocol = request.param
    evidence = FirefoxEvidence(f"{e2e_target.container}-{EVIDENCE_NAME[protocol]}")
    trusted = trusting_profile(tmp_path / "profile", e2e_target.cafile)
    evidence.note(f"[test] trusting {trusted}")
    home = tmp_path / "home"
    home.mkdir()
    session = Firefox(tmp_path / "profile", home, evidence, trusted, protocol)
    evidence.note(f"[test] {session.version} over {protocol} (driver pid {session.proc.pid})")
    try:
        yield session
    finally:
        session.save()
        session.close()
        if not session.stderr.stat().st_size:
            session.stderr.unlink()  # the driver said nothing on stderr: no file to look at
        with capsys.disabled():
            print(f"\n  browser evidence: {evidence.png}  {evidence.log}  {evidence.har}")


def test_firefox_stream_stays_open_and_catches_up_after_restart(
    e2e_target: E2ETarget, firefox: Firefox, user_systemctl, main_pid, capsys
) -> None:
    timings = _exercise(firefox, e2e_target, user_systemctl, main_pid)
    summary = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    firefox.evidence.note(f"[test] passed: {summary}")
    with capsys.disabled():
        print(f"\n  firefox {firefox.protocol} timings ({e2e_target.container}): {summary}")


def _stream_ok(streams: list[dict], evidence: FirefoxEvidence, when: str) -> dict:
    """The page's one request for the stream: answered 200 text/event-stream, not ended."""
    evidence.check(
        len(streams) == 1,
        f"{when}: expected the page's one request for {STREAM_PATH}, the network shows "
        f"{len(streams)}: {streams}",
    )
    stream = streams[0]
    evidence.check(
        stream["status"] == 200 and stream["mimeType"].startswith("text/event-stream"),
        f"{when}: {STREAM_PATH} answered {stream['status']} {stream['mimeType']!r}, "
        "expected 200 text/event-stream",
    )
    if not stream["pending"]:
        evidence.fail(
            f"{when}: {STREAM_PATH} is no longer pending: it ended {stream['end']:.1f} s into "
            f"the run ({stream['error'] or 'completed'})"
        )
    return stream


def _exercise(firefox: Firefox, target: E2ETarget, user_systemctl, main_pid) -> dict[str, float]:
    evidence = firefox.evidence
    url = f"{target.base_url}/notify/"
    tag = uuid.uuid4().hex[:8]
    timings: dict[str, float] = {}

    # 1. The page loads, over HTTPS, trusting only the deployment's local CA.
    begun = time.monotonic()
    loaded = firefox.call("goto", url=url, timeout_ms=15_000)
    reason = loaded["error"] or ""
    if "SEC_ERROR" in reason or "SSL_ERROR" in reason or "MOZILLA_PKIX" in reason:
        shown = firefox.call("location")
        evidence.fail(
            f"Firefox does not trust the certificate of {url}: "
            f"{_security_error(reason)} (the tab shows {shown['documentURI'][:40]}…)\n"
            f"  trusted: {firefox.trusted}\n"
            f"  served:  {served_cert(target.base_url)}"
        )
    evidence.check(not reason, f"the page {url} did not load: {reason}")
    evidence.check(
        loaded["status"] == 200, f"the page {url} answered {loaded['status']}, expected 200"
    )
    first = firefox.call("snapshot")
    evidence.check(first["page"]["state"] is not None, f"{url} is not the notify page")
    evidence.check(
        first["page"]["protocol"] == firefox.protocol,
        f"the page came over {first['page']['protocol']!r}, expected {firefox.protocol!r}",
    )
    timings["load"] = time.monotonic() - begun

    # 2. The EventSource reaches OPEN...
    if not firefox.call("wait_open", timeout_ms=10_000)["opened"]:
        seen = firefox.call("snapshot")
        headless = [s for s in seen["streams"] if s["pending"] and not s["status"]]
        evidence.fail(
            "the EventSource never reached OPEN in 10 s"
            + (
                f": {STREAM_PATH} is pending with no response head (status 0): something on "
                "the way holds the stream back (a buffering proxy?)"
                if headless
                else ""
            )
            + f"\n  the page shows {seen['page']}\n  the network shows {seen['streams']}"
        )
    opened = evidence.elapsed()
    timings["open"] = time.monotonic() - begun - timings["load"]

    # ...and stays OPEN, with no error event, across two keepalive gaps and then some,
    # while the network shows the one request for the stream pending all along.
    hold = 2 * target.keepalive + 1
    evidence.note(f"[test] holding {hold:g} s (keepalive {target.keepalive:g} s)")
    while evidence.elapsed() - opened < hold:
        time.sleep(0.25)
        seen = firefox.call("snapshot")
        at = f"{evidence.elapsed() - opened:.1f} s into the {hold:g} s hold"
        evidence.check(
            seen["page"]["state"] == "OPEN" and seen["page"]["errors"] == 0,
            f"the stream failed {at}: state {seen['page']['state']}, "
            f"{seen['page']['errors']} error event(s); the network shows {seen['streams']}",
        )
        _stream_ok(seen["streams"], evidence, at)

    # The request list as a network panel shows it, kept as a HAR and judged from it.
    firefox.call("har", path=str(evidence.har))
    evidence.har_written = True
    _check_har(evidence, hold)

    # 3. and 4.: a published event shows at once; after restarts the page catches up
    timings.update(
        live_then_restarts(
            evidence,
            target,
            tag,
            lambda ids, timeout_s: firefox.call(
                "wait_ids", ids=ids, timeout_ms=int(timeout_s * 1000)
            )["shown"],
            lambda label: _restart_round(firefox, target, label, user_systemctl, main_pid),
        )
    )
    timings["hold"] = hold
    return timings


def _security_error(reason: str) -> str:
    """Firefox's name for the certificate error, e.g. SEC_ERROR_UNKNOWN_ISSUER."""
    for word in reason.replace("(", " ").replace(")", " ").replace(",", " ").split():
        if word.startswith(("SEC_ERROR", "SSL_ERROR", "MOZILLA_PKIX")):
            return word
    return reason


def _check_har(evidence: FirefoxEvidence, hold: float) -> None:
    """The HAR written at the end of the hold shows the stream pending all along."""
    entries = json.loads(evidence.har.read_text())["log"]["entries"]
    page = [e for e in entries if e["request"]["url"].endswith("/notify/")]
    streams = [e for e in entries if e["request"]["url"].endswith(STREAM_PATH)]
    evidence.check(
        len(page) == 1 and page[0]["response"]["status"] == 200,
        f"the HAR has no page load answered 200: {[e['request']['url'] for e in entries]}",
    )
    evidence.check(len(streams) == 1, f"the HAR has {len(streams)} requests for {STREAM_PATH}")
    stream = streams[0]
    mime = stream["response"]["content"]["mimeType"]
    pending_s = stream["_recorded"] - stream["_start"]
    evidence.check(
        stream["request"]["method"] == "GET"
        and stream["response"]["status"] == 200
        and mime.startswith("text/event-stream")
        and stream["_pending"]
        and pending_s >= hold,
        f"the HAR shows {STREAM_PATH} {stream['request']['method']} "
        f"{stream['response']['status']} {mime!r}, pending {stream['_pending']} "
        f"for {pending_s:.1f} s: expected GET 200 text/event-stream pending the {hold:g} s hold",
    )
    evidence.note(
        f"[test] HAR: {STREAM_PATH} GET 200 {mime}, pending {pending_s:.1f} s "
        f"({len(entries)} requests in {evidence.har.name})"
    )


def _restart_round(
    firefox: Firefox, target: E2ETarget, tag: str, user_systemctl, main_pid
) -> tuple[list[int], float, float]:
    """As test_browser.py's: restart the backend, publish two events while the page is
    away, and check it catches up by Last-Event-ID with no duplicate. Returns (ids that
    could only arrive by replay, restart s, catch-up s)."""
    evidence = firefox.evidence
    before = firefox.call("snapshot")
    streams_before = len(before["streams"])
    pid_before = main_pid()
    started = time.monotonic()
    restarted = user_systemctl("restart", f"{UNIT}.service")
    restart_s = time.monotonic() - started
    evidence.note(f"[test] restart took {restart_s:.2f} s, rc {restarted.rc}")
    evidence.check(restarted.rc == 0, f"systemctl --user restart failed: {restarted.stderr}")
    missed = []
    for n in (1, 2):
        answer = _publish(target, evidence, f"{tag}-missed-{n}")
        evidence.note(f"[test] published {answer} {time.monotonic() - started:.2f} s in")
        missed.append(answer)
    evidence.check(main_pid() != pid_before, "the backend's main process did not change")

    wait_s = RETRY_S + 10
    caught_up = firefox.call(
        "wait_ids", ids=[m["id"] for m in missed], timeout_ms=int(wait_s * 1000)
    )["shown"]
    catch_up_s = time.monotonic() - started
    after = firefox.call("snapshot")
    page = after["page"]
    evidence.check(
        caught_up,
        f"the page did not show the events published during the restart within "
        f"{wait_s:g} s: state {page['state']}, ids {page['ids'][-5:]}",
    )
    ids = [int(i) for i in page["ids"]]
    evidence.check(ids == sorted(set(ids)), f"events out of order or duplicated on the page: {ids}")
    for n in (1, 2):
        count = page["data"].count(f"{tag}-missed-{n}")
        evidence.check(count == 1, f"{tag}-missed-{n} shows {count} times, expected once")
    errors = page["errors"] - before["page"]["errors"]
    evidence.check(errors == 1, f"expected exactly one error event (the reconnect), got {errors}")
    evidence.check(page["state"] == "OPEN", f"state after the restart: {page['state']}")
    # The reconnect said where the page had got to (the headers Firefox sent)...
    reconnects = after["streams"][streams_before:]
    resumed = [r["lastEventId"] for r in reconnects]
    evidence.note(f"[test] reconnect(s) sent Last-Event-ID {resumed}")
    evidence.check(
        resumed[:1] == [before["page"]["ids"][-1]],
        f"the reconnect sent Last-Event-ID {resumed[:1]}, expected "
        f"[{before['page']['ids'][-1]}] (the last event the page had shown)",
    )
    # ...the new stream is again 200 text/event-stream and pending...
    _stream_ok(reconnects[-1:], evidence, "after the restart")
    # ...and whatever nobody was subscribed for when it was published came by replay.
    replayed = [m["id"] for m in missed if m["subscribers"] == 0]
    if replayed:
        evidence.note(f"[test] replayed after Last-Event-ID {resumed[0]}: {replayed}")
    return replayed, restart_s, catch_up_s
