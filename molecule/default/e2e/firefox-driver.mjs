// The browser side of molecule/default/tests/test_firefox.py: Debian's firefox-esr,
// headless, driven over WebDriver BiDi by puppeteer-core (never downloads a browser).
//
// The test process speaks JSON lines: one command per stdin line ({"id", "cmd", ...}),
// one reply per stdout line ({"id", "ok", ...}); what the browser says meanwhile (console,
// page errors, requests) goes out as {"event", "text", "t"} lines as it happens, so the
// console log keeps the order of things. All checks are the test's; this only drives
// and reports. Argument: --profile DIR (a profile whose cert9.db already trusts the CA).

import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const FIREFOX = process.env.SSE_FIREFOX || "/usr/bin/firefox-esr";
const STREAM_PATH = "/notify/events";

const argv = process.argv.slice(2);
const arg = (name) => {
  const at = argv.indexOf(name);
  if (at < 0 || at + 1 >= argv.length) throw new Error(`missing ${name}`);
  return argv[at + 1];
};
const profile = arg("--profile");
// --http1: HTTP/2 off, as for a browser that reaches nginx over HTTP/1.1 (through a proxy
// that speaks only that, or an nginx without http2): nginx flushes the two differently.
const http1 = argv.includes("--http1");

const started = performance.now();
const seconds = () => (performance.now() - started) / 1000;
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const note = (text) => send({ event: "note", t: seconds(), text });

// Traffic stays on this machine: every HTTP(S) request to a name other than localhost
// goes to a closed loopback port (Firefox has no --host-resolver-rules); no DNS over
// HTTPS, no captive-portal or connectivity probes. Puppeteer's own defaults already
// point Firefox's update, telemetry and safe-browsing servers at a dummy name.
const PREFS = {
  "network.proxy.type": 1,
  "network.proxy.http": "127.0.0.1",
  "network.proxy.http_port": 9,
  "network.proxy.ssl": "127.0.0.1",
  "network.proxy.ssl_port": 9,
  "network.proxy.no_proxies_on": "localhost, 127.0.0.1",
  "network.proxy.allow_hijacking_localhost": false,
  "network.trr.mode": 5,
  "network.dns.disablePrefetch": true,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  // no probe goes out when a certificate error is met (MITM detection priming)
  "security.certerrors.mitm.priming.enabled": false,
  ...(http1 ? { "network.http.http2.enabled": false, "network.http.http3.enable": false } : {}),
};

// The HAR's entries: every request of the page, with what a network panel shows.
const entries = [];
let protocol = ""; // the page's connection: "h2" or "http/1.1"
const byRequest = new Map();

function entryFor(request) {
  const url = request.url();
  const entry = {
    startedDateTime: new Date().toISOString(),
    _start: seconds(),
    // BiDi has no resource type in puppeteer (it throws): the initiator says who asked
    _initiator: safe(() => request.initiator()?.type, null),
    time: -1,
    request: {
      method: request.method(),
      url,
      httpVersion: "",
      headers: Object.entries(request.headers()).map(([name, value]) => ({ name, value })),
      queryString: [],
      cookies: [],
      headersSize: -1,
      bodySize: -1,
    },
    response: {
      status: 0,
      statusText: "",
      httpVersion: "",
      headers: [],
      cookies: [],
      content: { size: -1, mimeType: "" },
      redirectURL: "",
      headersSize: -1,
      bodySize: -1,
    },
    cache: {},
    timings: { send: 0, wait: -1, receive: -1 },
    _pending: true,
    _end: null,
    _error: null,
  };
  entries.push(entry);
  byRequest.set(request, entry);
  return entry;
}

function safe(read, fallback) {
  try {
    return read();
  } catch {
    return fallback;
  }
}

function header(entry, name) {
  const found = entry.request.headers.find((h) => h.name.toLowerCase() === name);
  return found ? found.value : null;
}

function summary(entry) {
  return {
    url: entry.request.url,
    method: entry.request.method,
    status: entry.response.status,
    mimeType: entry.response.content.mimeType,
    start: entry._start,
    responded: entry._responded ?? null,
    end: entry._end,
    pending: entry._pending,
    error: entry._error,
    lastEventId: header(entry, "last-event-id"),
  };
}

function watch(page) {
  page.on("console", (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => note(`pageerror: ${e.message || e}`));
  page.on("request", (r) => {
    const entry = entryFor(r);
    const id = header(entry, "last-event-id");
    note(`request ${r.method()} ${r.url()}${id === null ? "" : ` Last-Event-ID: ${id}`}`);
  });
  page.on("response", (r) => {
    const entry = byRequest.get(r.request());
    const type = r.headers()["content-type"] || "";
    if (entry) {
      entry.response.status = r.status();
      entry.response.statusText = r.statusText();
      entry.response.headers = Object.entries(r.headers()).map(([name, value]) => ({
        name,
        value,
      }));
      entry.response.content.mimeType = type;
      entry._responded = seconds();
      entry.timings.wait = Math.round((entry._responded - entry._start) * 1000);
    }
    note(`response ${r.status()} ${type} ${r.url()}`);
  });
  const ended = (r, error) => {
    const entry = byRequest.get(r);
    if (entry) {
      entry._pending = false;
      entry._end = seconds();
      entry._error = error;
      entry.time = Math.round((entry._end - entry._start) * 1000);
    }
  };
  page.on("requestfinished", (r) => {
    ended(r, null);
    note(`requestfinished ${r.url()}`);
  });
  page.on("requestfailed", (r) => {
    const reason = r.failure()?.errorText || "failed";
    ended(r, reason);
    note(`requestfailed ${r.url()}: ${reason}`);
  });
}

// What the page shows, read in one go (ids in the order they arrived: the page prepends),
// with the requests for the stream as the browser's network layer reports them. The
// protocol is the page's own connection's (Resource Timing), which the stream shares.
const SNAPSHOT = () => {
  const items = Array.from(document.querySelectorAll("#events li")).reverse();
  const state = document.getElementById("state");
  const navigation = performance.getEntriesByType("navigation")[0];
  return {
    protocol: navigation ? navigation.nextHopProtocol : null,
    state: state ? state.dataset.state : null,
    errors: Number(document.getElementById("errors")?.textContent),
    since: document.getElementById("since-last")?.textContent,
    ids: items.map((li) => li.dataset.id),
    data: items.map((li) => li.querySelector(".data").textContent),
  };
};

function streams() {
  return entries.filter((e) => new URL(e.request.url).pathname === STREAM_PATH).map(summary);
}

function har(browserVersion) {
  const open = seconds();
  return {
    log: {
      version: "1.2",
      creator: { name: "sse-deploy firefox-driver (puppeteer-core)", version: "1" },
      browser: { name: "firefox-esr", version: browserVersion },
      pages: [],
      // still-pending requests get the time so far; _pending says they have not ended
      entries: entries.map((e) => ({
        ...e,
        request: { ...e.request, httpVersion: protocol },
        response: { ...e.response, httpVersion: e.response.status ? protocol : "" },
        time: e._pending ? Math.round((open - e._start) * 1000) : e.time,
        _recorded: open,
      })),
    },
  };
}

async function main() {
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    userDataDir: profile,
    headless: true,
    extraPrefsFirefox: PREFS,
    // no certificate error is ever ignored: the profile's cert9.db trusts the CA, or
    // the page must fail to load
    acceptInsecureCerts: false,
    protocolTimeout: 30_000,
  });
  const version = await browser.version();
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 700 });
  watch(page);

  const handlers = {
    version: async () => ({ version }),
    goto: async ({ url, timeout_ms }) => {
      try {
        const response = await page.goto(url, { waitUntil: "load", timeout: timeout_ms });
        return { status: response ? response.status() : null, error: null };
      } catch (error) {
        return { status: null, error: String(error.message || error).split("\n")[0] };
      }
    },
    // the URL the tab shows and its title: Firefox's certificate error page is about:certerror
    location: async () => ({
      url: page.url(),
      title: await page.title().catch(() => ""),
      documentURI: await page.evaluate(() => document.documentURI).catch(() => ""),
    }),
    wait_open: async ({ timeout_ms }) => {
      try {
        await page.waitForFunction(
          () => document.getElementById("state")?.dataset.state === "OPEN",
          { timeout: timeout_ms, polling: 50 },
        );
        return { opened: true };
      } catch {
        return { opened: false };
      }
    },
    snapshot: async () => {
      const shown = await page.evaluate(SNAPSHOT);
      protocol = shown.protocol || protocol;
      return { page: shown, streams: streams() };
    },
    wait_ids: async ({ ids, timeout_ms }) => {
      const begun = performance.now();
      try {
        await page.waitForFunction(
          (wanted) => wanted.every((id) => document.querySelector(`#events li[data-id="${id}"]`)),
          { timeout: timeout_ms, polling: "raf" },
          ids.map(String),
        );
        return { shown: true, ms: performance.now() - begun };
      } catch {
        return { shown: false, ms: performance.now() - begun };
      }
    },
    streams: async () => ({ streams: streams() }),
    har: async ({ path }) => {
      writeFileSync(path, `${JSON.stringify(har(version), null, 1)}\n`);
      return { path, entries: entries.length };
    },
    screenshot: async ({ path }) => {
      await page.screenshot({ path, fullPage: true });
      return { path };
    },
    close: async () => {
      await browser.close();
      return {};
    },
  };

  send({ event: "ready", t: seconds(), version });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const message = JSON.parse(line);
    const handler = handlers[message.cmd];
    try {
      if (!handler) throw new Error(`unknown command ${message.cmd}`);
      send({ id: message.id, ok: true, ...(await handler(message)) });
    } catch (error) {
      send({ id: message.id, ok: false, error: String(error.message || error) });
    }
    if (message.cmd === "close") break;
  }
  // stdin closed (the test ended or died): never leave a browser behind
  await browser.close().catch(() => {});
  // and end now: puppeteer's closed BiDi connection can keep Node's event loop alive,
  // which cost every test 15 s of teardown waiting for this process
  process.exit(0);
}

main().catch((error) => {
  send({ event: "fatal", t: seconds(), text: String(error.stack || error) });
  process.exit(1);
});
