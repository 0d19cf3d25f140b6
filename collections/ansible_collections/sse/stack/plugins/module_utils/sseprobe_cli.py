"""sseprobe: verify a Server-Sent Events endpoint (status, :ok, keepalives, hold).

`check` holds one stream and judges it; `load` holds many at once and measures them.
The `sseprobe` command (pyproject.toml's entry point; `make venv` installs it into .venv):
the probe lives in the sse.stack collection's module_utils so the CLI and the Ansible
modules share one implementation. Standard library only: where there is no venv (a
container, a bare host), copy the module_utils sseprobe*.py files into DIR/ansible_collections/
sse/stack/plugins/module_utils/ and run, from DIR,
`python3 -m ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli check URL`.

`check --http2` holds the stream over HTTP/2 (TLS ALPN `h2`), as browsers reach it: the same
checks and JSON, with the h2 package (`pip install '.[http2]'`; `make venv` installs it). Only
this command imports it (sseprobe_http2), never the modules.

Exit status: 0 every check passed, 1 a check failed, 2 usage error (for `load` also: the
streams do not fit the open-files limit; for `check --http2`: h2 is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from ansible_collections.sse.stack.plugins.module_utils import sseprobe, sseprobe_load

if TYPE_CHECKING:
    from ansible_collections.sse.stack.plugins.module_utils.sseprobe import Transport

# CLI spelling of each ProbeConfig field, so usage errors name what the user typed.
_FLAGS = {
    "url": "URL",
    "hold": "--hold",
    "keepalive_interval": "--keepalive-interval",
    "tolerance": "--tolerance",
    "first_byte_timeout": "--first-byte-timeout",
    "expect_first": "--expect-first",
    "cacert": "--cacert",
    "insecure": "--insecure",
    "headers": "--header",
    "resolve": "--resolve",
    "streams": "--streams",
    "ramp": "--ramp",
    "tls_resume": "--tls-resume",
    "reconnect_delay": "--reconnect-delay",
    "publish_url": "--publish-url",
    "publish_token": "--publish-token",
    "publish_interval": "--publish-interval",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage dump: easier to spot in CI logs.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> _Parser:
    parser = _Parser(
        prog="sseprobe",
        description="Probe a Server-Sent Events endpoint.",
        epilog="Exit status: 0 all checks passed, 1 a check failed, 2 usage error.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "check",
        help="hold one stream and verify it",
        description="Hold one SSE stream and verify status, content type, first byte, "
        "the first comment line, keepalive gaps and that the stream stays open.",
    )
    p.add_argument("url", metavar="URL", help="http:// or https:// URL of the stream")
    p.add_argument("--hold", type=float, default=35.0, metavar="S", help="default: 35")
    p.add_argument(
        "--keepalive-interval", type=float, default=30.0, metavar="S", help="default: 30"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        metavar="S",
        help="slack added to the keepalive interval (default: 2)",
    )
    p.add_argument(
        "--expect-first",
        default=":ok",
        metavar="TEXT",
        help="required first body line (default: ':ok'; '' disables the check)",
    )
    p.add_argument(
        "--http2",
        action="store_true",
        help="speak HTTP/2 (TLS ALPN h2, https:// only) as browsers do; needs the h2 package",
    )
    _add_connection(p)
    p.set_defaults(func=cmd_check, parser=p)
    _add_load(commands)
    return parser


def _add_load(commands: Any) -> None:
    p = commands.add_parser(
        "load",
        help="hold many streams at once and measure them",
        description="Open N streams to a loopback target (ramped over --ramp seconds), hold "
        "them for --hold seconds, resume dropped ones with Last-Event-ID, and report streams "
        "held/dropped/reconnected, first-byte latency, keepalive lateness and lost events. "
        "Ends after ramp + hold (Ctrl-C ends the hold early and still reports).",
        epilog="Exit status: 0 every stream opened and was open at the end with no event "
        "lost, no non-200 answer and no failed attempt; 1 otherwise; 2 usage error or N "
        "beyond the open-files limit.",
    )
    p.add_argument("url", metavar="URL", help="http:// or https:// URL of the stream (loopback)")
    p.add_argument("--streams", type=int, required=True, metavar="N", help="streams to open")
    p.add_argument("--hold", type=float, required=True, metavar="S", help="seconds to hold")
    p.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to open them over (default: 0)",
    )
    p.add_argument(
        "--keepalive-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="the server's keepalive period, for lateness (default: 30)",
    )
    p.add_argument(
        "--reconnect-delay",
        type=float,
        metavar="S",
        help="wait before resuming a dropped stream (default: the server's retry:, else 3)",
    )
    _add_connection(p)
    p.add_argument(
        "--publish-url",
        metavar="URL",
        help="also POST an event here every --publish-interval and count losses exactly",
    )
    p.add_argument(
        "--publish-token",
        metavar="TOKEN",
        default=os.environ.get("SSEPROBE_PUBLISH_TOKEN"),
        help="bearer token for --publish-url (default: $SSEPROBE_PUBLISH_TOKEN)",
    )
    p.add_argument("--publish-interval", type=float, default=1.0, metavar="S", help="default: 1")
    p.add_argument(
        "--tls-resume",
        action="store_true",
        help="https: resume the TLS session of an earlier stream, as a returning browser does",
    )
    p.set_defaults(func=cmd_load, parser=p)


def _add_connection(p: argparse.ArgumentParser) -> None:
    """The arguments check and load share: how to reach the stream, and --json."""
    p.add_argument("--first-byte-timeout", type=float, default=5.0, metavar="S", help="default: 5")
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument(
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'K: V'",
        help="extra request header (repeatable)",
    )
    p.add_argument(
        "--resolve",
        metavar="HOST:PORT:ADDR",
        help="connect to ADDR for HOST:PORT (Host, SNI and certificate checks keep HOST)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


class _StatusLine:
    """A \\r-updated progress line for interactive terminals."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.width = 0

    def show(self, text: str) -> None:
        self.width = max(self.width, len(text))
        self.out.write("\r" + text.ljust(self.width))
        self.out.flush()

    def clear(self) -> None:
        if self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()


class LiveLine(_StatusLine):
    """check's progress: hold time, keepalives, gap, failing checks so far."""

    def __init__(self, out: TextIO, hold: float) -> None:
        super().__init__(out)
        self.hold = hold

    def __call__(self, result: sseprobe.ProbeResult) -> None:
        gap = "-" if result.max_gap_s is None else f"{result.max_gap_s:.1f} s"
        text = (
            f"  holding {result.held_s:5.1f}/{self.hold:g} s  keepalives {result.keepalives}"
            f"  max gap {gap}  events {result.events}"
        )
        if result.failures:
            text += "  FAILING: " + ", ".join(f["check"] for f in result.failures)
        self.show(text)


def _detail(name: str, d: dict[str, Any], cfg: sseprobe.ProbeConfig) -> str:
    """The figure shown next to a passing check."""
    if name == "connect":
        return d["peer"] or ""
    if name == "tls":
        return d["tls_version"] or ""
    if name == "status":
        return f"{d['status']} {d['reason'] or ''}".strip()
    if name == "content_type":
        return d["content_type"] or ""
    if name == "first_byte":
        return f"{d['first_byte_ms']:.1f} ms"
    if name == "first_comment":
        return repr(d["first_line"])
    if name == "keepalive":
        return (
            f"{d['keepalives']} keepalive(s), max gap {d['max_gap_s']:.2f} s"
            f" (limit {cfg.keepalive_limit:g} s)"
        )
    if name == "stream_closed":
        return f"open for the whole hold ({d['held_s']:.2f} s)"
    return ""


def summary(
    result: sseprobe.ProbeResult, cfg: sseprobe.ProbeConfig, protocol: str = "HTTP/1.1"
) -> str:
    d = result.to_dict()
    messages = {f["check"]: f["message"] for f in d["failures"]}
    lines = [f"sseprobe check {d['url']} ({protocol})"]
    for name, state in d["checks"].items():
        if state == "fail":
            text = messages[name]
        else:
            text = _detail(name, d, cfg) if state == "pass" else ""
        lines.append(f"  {state.upper():4}  {name:<14} {text}".rstrip())
    verdict = "PASS" if d["ok"] else "FAIL"
    lines.append(
        f"{verdict}: held {d['held_s']:.2f} s, {d['keepalives']} keepalive(s),"
        f" {d['comments']} comment(s), {d['events']} event(s), elapsed {d['elapsed_s']:.2f} s"
    )
    return "\n".join(lines)


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments ProbeConfig and LoadConfig share, as their keyword arguments."""
    return {
        "url": args.url,
        "hold": args.hold,
        "keepalive_interval": args.keepalive_interval,
        "first_byte_timeout": args.first_byte_timeout,
        "cacert": args.cacert,
        "insecure": args.insecure,
        "headers": dict(args.header),
        "resolve": args.resolve,
    }


def _transport(args: argparse.Namespace, cfg: sseprobe.ProbeConfig) -> Transport:
    """HTTP/1.1 (the probe's own), or with --http2 the h2 transport, imported only then."""
    if not args.http2:
        return sseprobe.HTTP11Exchange
    if cfg.scheme != "https":
        args.parser.error(
            "argument --http2: needs an https:// URL (browsers speak HTTP/2 over TLS only)"
        )
    try:
        from ansible_collections.sse.stack.plugins.module_utils import sseprobe_http2
    except ImportError as exc:
        args.parser.error(
            f"argument --http2: the h2 package is missing ({exc}):"
            " pip install 'sse-stack-probe[http2]' (make venv installs it)"
        )
    return sseprobe_http2.HTTP2Exchange


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = sseprobe.ProbeConfig(
            **_common(args), tolerance=args.tolerance, expect_first=args.expect_first
        )
    except sseprobe.ConfigError as exc:
        args.parser.error(f"argument {_FLAGS.get(exc.argument, exc.argument)}: {exc.message}")
    transport = _transport(args, cfg)
    live = LiveLine(sys.stdout, cfg.hold) if not args.json and sys.stdout.isatty() else None
    try:
        result = sseprobe.check(cfg, live, transport)
    finally:
        if live is not None:
            live.clear()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary(result, cfg, "HTTP/2" if args.http2 else "HTTP/1.1"))
    return 0 if result.ok else 1


def _ms(stats: dict[str, Any], *keys: str) -> str:
    if not stats["n"]:
        return "-"
    return "  ".join(f"{k} {stats[k]:.1f}" for k in keys) + " ms"


def load_summary(d: dict[str, Any]) -> str:
    """The human report of a load run."""
    n = d["streams"]
    lines = [
        f"sseprobe load {d['url']}: {n} streams, ramp {d['ramp_s']:g} s, hold {d['hold_s']:g} s",
        f"  opened {d['opened']}/{n}, held to the end {d['held']}, resumed and open at the end"
        f" {d['resumed']}, dropped {d['dropped']} ({d['drops']} drops), reconnected"
        f" {d['reconnects']}, never opened {d['never_opened']}",
        f"  first byte (request -> body)  {_ms(d['first_byte_ms'], 'p50', 'p95', 'p99')}",
        f"  connect (TCP + TLS)           {_ms(d['connect_ms'], 'p50', 'p95', 'p99')}",
        f"  :ok from connect start        {_ms(d['ok_ms'], 'p50', 'p95', 'p99')}",
        f"  keepalive lateness            {_ms(d['keepalive_lateness_ms'], 'p50', 'p99', 'max')}"
        f" ({d['keepalives']} keepalives, interval {d['keepalive_interval_s']:g} s)",
        f"  events received {d['events']}, lost {d['events_lost']} ({d['loss_method']}),"
        f" id resets {d['id_resets']}, duplicates {d['duplicates']}",
    ]
    if d["tls_resume"]:
        lines.append(
            f"  TLS resumed {d['tls']['resumed']}, full handshakes {d['tls']['full_handshakes']};"
            f" resumed :ok from connect start {_ms(d['resumed_ok_ms'], 'p50', 'p95', 'p99')}"
        )
    if d["keepalives_bunched"]:
        lines.append(
            f"  keepalives bunched with earlier bytes (held back) {d['keepalives_bunched']}"
        )
    if d["reconnects"] or d["drops"]:
        lines.append(
            f"  time back after a drop        {_ms(d['time_back_ms'], 'p50', 'p99', 'max')}"
        )
        lines.append(
            "  drop reasons: " + ", ".join(f"{k} {v}" for k, v in d["drop_reasons"].items())
        )
    if d["published"] is not None:
        answers = ", ".join(f"{k} x{v}" for k, v in d["published"]["answers"].items()) or "none"
        lines.append(f"  published {d['published']['acknowledged']} event(s); answers: {answers}")
        lines.append(
            f"  delivery (publish -> stream)  {_ms(d['delivery_ms'], 'p50', 'p99', 'max')}"
        )
    if d["non_200"]:
        lines.append(
            f"  non-200 answers {d['non_200']}: "
            + ", ".join(f"{k} x{v}" for k, v in d["statuses"].items())
        )
    for kind, count in d["attempt_failures"].items():
        lines.append(f"  failed attempts ({kind}) {count}: {d['failure_examples'][kind]}")
    for name, limit in d["limits"].items():
        lines.append(f"  LIMIT {name}: {limit['count']} failed: {limit['message']}")
    if d["aborted"]:
        lines.append(f"  ABORTED: {d['aborted']}")
    if d["stopped_early"]:
        lines.append("  stopped early (signal)")
    verdict = "PASS" if d["ok"] else "FAIL"
    lines.append(
        f"{verdict}: {d['open_at_end']}/{n} open at the end, {d['events_lost']} event(s) lost,"
        f" elapsed {d['elapsed_s']:.1f} s"
    )
    return "\n".join(lines)


class LoadLine(_StatusLine):
    """load's progress: streams open, dropped, reconnected, failed, events."""

    def __call__(self, sample: dict[str, Any]) -> None:
        text = (
            f"  {sample['t']:5.0f}/{sample['end']:.0f} s  open {sample['open']}/{sample['streams']}"
            f"  dropped {sample['dropped']}  reconnected {sample['reconnected']}"
            f"  failed {sample['failed']}  events {sample['events']}"
        )
        self.show(text)


def cmd_load(args: argparse.Namespace) -> int:
    try:
        cfg = sseprobe_load.LoadConfig(
            **_common(args),
            streams=args.streams,
            ramp=args.ramp,
            reconnect_delay=args.reconnect_delay,
            publish_url=args.publish_url,
            publish_token=args.publish_token,
            publish_interval=args.publish_interval,
            tls_resume=args.tls_resume,
        )
        live = LoadLine(sys.stderr) if not args.json and sys.stderr.isatty() else None
        try:
            result = sseprobe_load.load(cfg, live, handle_signals=True)
        finally:
            if live is not None:
                live.clear()
    except sseprobe.ConfigError as exc:
        args.parser.error(f"argument {_FLAGS.get(exc.argument, exc.argument)}: {exc.message}")
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(load_summary(result.to_dict()))
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
