"""A real browser keeps the stream open: the /notify/ page in Debian's Chromium.

The page is loaded from the controller through the port the container publishes on
127.0.0.1, over HTTPS through nginx, exactly as a person's browser would load it. The
browser trusts the deployment the way a user makes it trust it: the local CA that
sse_nginx issues is imported into the NSS certificate database of a throwaway HOME
(`certutil -A -t C,,`, Debian's libnss3-tools), which Chromium reads on Linux. Nothing
else is trusted and no certificate error is ignored: a wrong certificate must fail.

A screenshot of the page and the browser's console log are saved for every run, passed
or failed, in .cache/e2e/<container>-page.png and <container>-console.log.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, UNIT
from cryptography import x509
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / ".cache" / "e2e"
# The app's reconnect hint (`retry:` on every stream, SSE_RETRY_MS): a dropped page
# reconnects this long after the stream ended.
RETRY_S = 2.0
LIVE_BUDGET_S = 1.0  # a published event shows on the page within this
ATTEMPTS = 3  # only attempts cut by a host network change are repeated (NetworkChanged)
# A restart whose events the page got live (it reconnected first) proves no replay;
# the restart is repeated, up to this many in all.
RESTARTS = 3
# Flags that keep a headless Chromium quiet here: no sandbox (it refuses to run as root
# with one), no GPU, no calls home, no QUIC; every name resolves to 127.0.0.1 only.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * 127.0.0.1",
]

# What the page shows, read in one go: ids in the order they arrived (the page
# prepends, so the list is reversed back).
SNAPSHOT_JS = """() => {
  const items = Array.from(document.querySelectorAll('#events li')).reverse();
  return {
    state: document.getElementById('state').dataset.state,
    errors: Number(document.getElementById('errors').textContent),
    since: document.getElementById('since-last').textContent,
    ids: items.map((li) => li.dataset.id),
    data: items.map((li) => li.querySelector('.data').textContent),
  };
}"""


def describe_cert(pem: str | bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return f"subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}"


def served_cert(base_url: str) -> str:
    """The certificate the server actually presents (for the failure message)."""
    host, port = base_url.split("//", 1)[1].rsplit(":", 1)
    try:
        return describe_cert(ssl.get_server_certificate((host, int(port)), timeout=5))
    except (OSError, ValueError) as exc:
        return f"unknown ({exc})"


def trusting_home(home: Path, cafile: Path) -> str:
    """A HOME whose NSS database trusts cafile as a CA for websites; what it trusts."""
    if shutil.which("certutil") is None:
        pytest.fail("certutil not found: Debian's libnss3-tools is needed (run 'make host')")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for argv in (
        ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"],
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{nssdb}",
            "-n",
            "sse-local-ca",
            "-t",
            "C,,",
            "-i",
            str(cafile),
        ],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return f"CA {describe_cert(cafile.read_bytes())} (from {cafile}, NSS db {nssdb})"


class NetworkChanged(Exception):
    """Chromium aborted its connections because this host's network changed.

    Chromium closes every connection, loopback ones too, when an interface or address
    appears or goes (net::ERR_NETWORK_CHANGED), e.g. when podman starts or removes
    any container. That says nothing about the deployment, so such an attempt is
    repeated; every other failure fails the test at once."""


class Evidence:
    """The screenshot and the console log, named in every failure message."""

    def __init__(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.png = ARTIFACTS / f"{name}-page.png"
        self.log = ARTIFACTS / f"{name}-console.log"
        for stale in (self.png, self.log):
            stale.unlink(missing_ok=True)
        self.lines: list[str] = []
        self.start = time.monotonic()
        self.network_changes = 0
        self.eventsource_requests: list = []  # every EventSource (re)connection
        self._changes_before_attempt = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def note(self, text: str) -> None:
        if "ERR_NETWORK_CHANGED" in text:
            self.network_changes += 1
        self.lines.append(f"{self.elapsed():8.3f}s  {text}")

    def begin_attempt(self, attempt: int) -> None:
        self._changes_before_attempt = self.network_changes
        self.note(f"[test] attempt {attempt}")

    def save(self, page) -> None:
        try:
            page.screenshot(path=str(self.png), full_page=True)
        except PlaywrightError as exc:
            self.note(f"[test] no screenshot: {exc}")
        self.log.write_text("\n".join(self.lines) + "\n", encoding="utf-8")

    def fail(self, message: str) -> None:
        if self.network_changes > self._changes_before_attempt:
            raise NetworkChanged(message)
        pytest.fail(f"{message}\n  screenshot: {self.png}\n  console log: {self.log}", False)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.fail(message)


def _watch(page, evidence: Evidence) -> None:
    """Everything the browser says goes to the console log, with the time it said it."""
    page.on("console", lambda m: evidence.note(f"console.{m.type}: {m.text}"))
    page.on("pageerror", lambda e: evidence.note(f"pageerror: {e}"))

    def request(r) -> None:
        if r.resource_type in ("document", "eventsource"):
            evidence.note(f"request {r.resource_type} {r.method} {r.url}")
        if r.resource_type == "eventsource":
            evidence.eventsource_requests.append(r)

    page.on("request", request)
    page.on(
        "response",
        lambda r: evidence.note(f"response {r.status} {r.request.resource_type} {r.url}"),
    )
    page.on(
        "requestfailed",
        lambda r: evidence.note(f"requestfailed {r.resource_type} {r.url}: {r.failure}"),
    )


class Chromium:
    """One headless Chromium (its own temporary profile and HOME) trusting the local CA only."""

    def __init__(self, browser, evidence: Evidence, trusted: str) -> None:
        self.browser = browser
        self.evidence = evidence
        self.trusted = trusted
        self.page = None

    def new_page(self):
        if self.page is not None:
            self.page.context.close()
        self.page = self.browser.new_page(viewport={"width": 900, "height": 700})
        _watch(self.page, self.evidence)
        return self.page


@pytest.fixture
def chromium(e2e_target, capsys, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: Debian's chromium is needed (run 'make host')")
    evidence = Evidence(e2e_target.container)
    home = tmp_path / "home"
    trusted = trusting_home(home, e2e_target.cafile)
    evidence.note(f"[test] trusting {trusted}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)}
        )
        evidence.note(f"[test] chromium {browser.version}")
        session = Chromium(browser, evidence, trusted)
        try:
            yield session
        finally:
            if session.page is not None:
                evidence.save(session.page)
            browser.close()
            with capsys.disabled():
                print(f"\n  browser evidence: {evidence.png}  {evidence.log}")


def _publish(target, evidence: Evidence, data: str) -> dict:
    """POST /notify/publish through nginx, as the page's origin, checking the certificate."""
    request = urllib.request.Request(
        f"{target.base_url}/notify/publish",
        method="POST",
        data=json.dumps({"data": data}).encode(),
        headers={"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(target.cafile))
    # long timeout: during a restart the socket unit holds the request for the new process
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        evidence.fail(f"POST {request.full_url} answered {exc.code}: {exc.read()[:300]!r}")
    except (OSError, ValueError) as exc:
        evidence.fail(f"POST {request.full_url} failed: {exc}")
    raise AssertionError("unreachable")


def _wait_for_ids(page, ids: list[int], timeout_s: float) -> bool:
    selector = ", ".join(f'#events li[data-id="{i}"]' for i in ids)
    try:
        page.wait_for_function(
            f"() => document.querySelectorAll('{selector}').length === {len(ids)}",
            timeout=timeout_s * 1000,
            polling="raf",
        )
    except PlaywrightError:
        return False
    return True


def test_browser_stream_stays_open_and_catches_up_after_restart(
    e2e_target, chromium, user_systemctl, main_pid, capsys
):
    evidence = chromium.evidence
    for attempt in range(1, ATTEMPTS + 1):
        evidence.begin_attempt(attempt)
        try:
            timings = _exercise(chromium, e2e_target, user_systemctl, main_pid)
        except NetworkChanged as exc:
            evidence.note(f"[test] attempt {attempt} cut by a host network change: {exc}")
            continue
        summary = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        evidence.note(f"[test] passed: {summary}")
        with capsys.disabled():
            print(f"\n  browser timings ({e2e_target.container}, attempt {attempt}): {summary}")
        return
    pytest.fail(
        f"all {ATTEMPTS} attempts were cut by a change of this host's network (Chromium's "
        "net::ERR_NETWORK_CHANGED: containers or interfaces created or removed meanwhile); "
        f"nothing was learned about the deployment. console log: {evidence.log}",
        False,
    )


def _exercise(chromium: Chromium, target, user_systemctl, main_pid) -> dict[str, float]:
    """One attempt; returns its timings."""
    evidence, trusted = chromium.evidence, chromium.trusted
    page = chromium.new_page()
    url = f"{target.base_url}/notify/"
    tag = uuid.uuid4().hex[:8]
    timings: dict[str, float] = {}

    # 1. The page loads, over HTTPS, trusting only the deployment's local CA.
    begun = time.monotonic()
    try:
        response = page.goto(url, wait_until="load", timeout=15_000)
    except PlaywrightError as exc:
        response, reason = None, str(exc).splitlines()[0]
    else:
        reason = ""
    if "ERR_CERT" in reason:
        evidence.fail(
            f"Chromium does not trust the certificate of {url}: {reason}\n"
            f"  trusted: {trusted}\n"
            f"  served:  {served_cert(target.base_url)}"
        )
    evidence.check(not reason, f"the page {url} did not load: {reason}")
    evidence.check(
        response is not None and response.status == 200,
        f"the page {url} answered {response and response.status}, expected 200",
    )
    evidence.check(page.locator("#state").count() == 1, f"{url} is not the notify page")
    timings["load"] = time.monotonic() - begun

    # 2. The EventSource reaches OPEN...
    try:
        page.wait_for_function(
            "() => document.getElementById('state').dataset.state === 'OPEN'", timeout=10_000
        )
    except PlaywrightError:
        evidence.fail(f"the EventSource never reached OPEN: the page shows {_snapshot(page)}")
    opened = evidence.elapsed()
    timings["open"] = time.monotonic() - begun - timings["load"]

    # ...and stays OPEN, with no error event, across two keepalive gaps and then some.
    hold = 2 * target.keepalive + 1
    evidence.note(f"[test] holding {hold:g} s (keepalive {target.keepalive:g} s)")
    while evidence.elapsed() - opened < hold:
        page.wait_for_timeout(250)
        seen = _snapshot(page)
        evidence.check(
            seen["state"] == "OPEN" and seen["errors"] == 0,
            f"the stream failed {evidence.elapsed() - opened:.1f} s into the {hold:g} s hold: "
            f"state {seen['state']}, {seen['errors']} error event(s)",
        )

    # 3. and 4.: a published event shows at once; after restarts the page catches up
    timings.update(
        live_then_restarts(
            evidence,
            target,
            tag,
            lambda ids, timeout_s: _wait_for_ids(page, ids, timeout_s),
            lambda label: _restart_round(page, evidence, target, label, user_systemctl, main_pid),
        )
    )
    timings["hold"] = hold
    return timings


def live_then_restarts(
    evidence: Evidence,
    target,
    tag: str,
    wait_ids: Callable[[list[int], float], bool],
    restart_round: Callable[[str], tuple[list[int], float, float]],
) -> dict[str, float]:
    """Steps 3 and 4 of a browser test (Chromium's and Firefox's): an event published
    through POST /notify/publish shows within LIVE_BUDGET_S; then the backend restarts
    until the page had to catch up by Last-Event-ID (restart_round says what it replayed)."""
    timings: dict[str, float] = {}
    sent = time.monotonic()
    live = _publish(target, evidence, f"{tag}-live")
    evidence.note(f"[test] published {live}")
    shown = wait_ids([live["id"]], 5)
    timings["live"] = time.monotonic() - sent
    evidence.check(shown, f"published event {live['id']} did not show on the page within 5 s")
    evidence.check(
        timings["live"] <= LIVE_BUDGET_S,
        f"published event took {timings['live']:.2f} s to show (budget {LIVE_BUDGET_S} s)",
    )
    replayed: list[int] = []
    for n in range(1, RESTARTS + 1):
        replayed, timings["restart"], timings["catch_up"] = restart_round(f"{tag}-r{n}")
        if replayed:
            break
        evidence.note(
            f"[test] restart {n}: the page reconnected before the events were published "
            f"(restart took {timings['restart']:.2f} s), so nothing needed replaying; again"
        )
    evidence.check(
        bool(replayed),
        f"in {RESTARTS} restarts the page always reconnected before the events were "
        f"published (last restart took {timings['restart']:.2f} s, the retry is {RETRY_S:g} s): "
        "the Last-Event-ID replay was never exercised",
    )
    return timings


def _restart_round(page, evidence, target, tag, user_systemctl, main_pid):
    """Restart the backend, publish two events while the page is away, and check it
    catches up. Returns (ids that could only arrive by replay, restart s, catch-up s).

    The old process ends its streams at once (prompt shutdown); the page reconnects on
    its own RETRY_S later, sending Last-Event-ID. Events published before the restart
    and missed would be lost by design (the replay buffer lives in the process), so the
    missed events are the ones published between the new process starting and the page
    reconnecting: the socket unit holds those requests for the new process.
    """
    before = _snapshot(page)
    requests_before = len(evidence.eventsource_requests)
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

    caught_up = _wait_for_ids(page, [m["id"] for m in missed], timeout_s=RETRY_S + 10)
    catch_up_s = time.monotonic() - started
    after = _snapshot(page)
    evidence.check(
        caught_up,
        f"the page did not show the events published during the restart within "
        f"{RETRY_S + 10:g} s: state {after['state']}, ids {after['ids'][-5:]}",
    )
    ids = [int(i) for i in after["ids"]]
    evidence.check(ids == sorted(set(ids)), f"events out of order or duplicated on the page: {ids}")
    for n in (1, 2):
        shown = after["data"].count(f"{tag}-missed-{n}")
        evidence.check(shown == 1, f"{tag}-missed-{n} shows {shown} times, expected once")
    evidence.check(
        after["errors"] - before["errors"] == 1,
        f"expected exactly one error event (the reconnect), got "
        f"{after['errors'] - before['errors']}",
    )
    evidence.check(after["state"] == "OPEN", f"state after the restart: {after['state']}")
    # The reconnect said where the page had got to (the headers as sent: the request
    # event only carries the provisional ones)...
    resumed = [
        r.all_headers().get("last-event-id")
        for r in evidence.eventsource_requests[requests_before:]
    ]
    evidence.note(f"[test] reconnect(s) sent Last-Event-ID {resumed}")
    evidence.check(
        resumed[:1] == [before["ids"][-1]],
        f"the reconnect sent Last-Event-ID {resumed[:1]}, expected [{before['ids'][-1]}] "
        "(the last event the page had shown)",
    )
    # ...and whatever nobody was subscribed for when it was published came by replay.
    replayed = [m["id"] for m in missed if m["subscribers"] == 0]
    if replayed:
        evidence.note(f"[test] replayed after Last-Event-ID {resumed[0]}: {replayed}")
    return replayed, restart_s, catch_up_s


def _snapshot(page) -> dict:
    return page.evaluate(SNAPSHOT_JS)
