"""Access log analysis: any log_format as a regex, the time window read from the end, symptoms."""

from __future__ import annotations

import time

import pytest
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_logs as logs
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_nginx as ngx

# role sse_nginx's format, as log_format's strings are joined
SSE_TIMED = (
    '$remote_addr - $remote_user [$time_local] "$request" '
    "status=$status bytes=$body_bytes_sent rt=$request_time "
    'urt="$upstream_response_time" ustatus="$upstream_status" '
    'uaddr="$upstream_addr" probe="$http_x_sseprobe_id" '
    'ref="$http_referer" ua="$http_user_agent"'
)


def stamp(epoch: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def timed_line(epoch: float, path: str, status: int, rt: float, probe: str = "-") -> str:
    return (
        f'127.0.0.1 - - [{stamp(epoch)}] "GET {path}?x=1 HTTP/1.1" status={status} bytes=41 '
        f'rt={rt:.3f} urt="{rt:.3f}" ustatus="200" uaddr="127.0.0.1:8000" probe="{probe}" '
        'ref="-" ua="Mozilla/5.0 (X11; Linux) \\"quoted\\""'
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("30m", 1800),
        ("90s", 90),
        ("2d", 172800),
        ("1h30m", 5400),
        ("45", 45),
        (60, 60),
    ],
)
def test_parse_window(text, seconds):
    assert logs.parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "-1h", "0", 0])
def test_parse_window_rejects(text):
    with pytest.raises(ValueError):
        logs.parse_window(text)


def test_sse_timed_format_parses_status_time_path_probe():
    fmt = logs.LogFormat(SSE_TIMED)
    assert fmt.usable
    now = time.time()
    entry = fmt.parse(timed_line(now, "/notify/events", 499, 0.512, probe="abc"))
    assert entry["status"] == 499
    assert entry["path"] == "/notify/events"
    assert entry["rt"] == 0.512
    assert entry["probe"] == "abc"
    assert abs(entry["time"] - int(now)) < 1


def test_combined_format_has_no_request_time():
    fmt = logs.LogFormat(ngx.COMBINED)
    line = (
        '10.0.0.1 - - [28/Nov/2026:05:19:12 +0000] "GET /notify/events HTTP/2.0" 504 0 "-"'
        ' "curl/7.88.1"'
    )
    entry = fmt.parse(line)
    assert entry["status"] == 504 and entry["rt"] is None and entry["path"] == "/notify/events"


def test_format_without_status_is_not_usable():
    assert not logs.LogFormat("$remote_addr $request").usable


def test_read_window_stops_at_the_window_and_skips_garbage(tmp_path):
    now = time.time()
    lines = [timed_line(now - 7200 + i, "/notify/events", 200, 1.0) for i in range(3)]
    lines += ["garbage that matches nothing"]
    lines += [timed_line(now - 60 + i, "/notify/events", 499, 0.2) for i in range(5)]
    log = tmp_path / "access.log"
    # more than one read block, so the backwards reader crosses block borders
    filler = [timed_line(now - 7300, "/other", 200, 0.1)] * 2000
    log.write_text("\n".join(filler + lines) + "\n")
    entries, unparsed = logs.read_window(str(log), logs.LogFormat(SSE_TIMED), now - 3600)
    assert len(entries) == 5
    assert unparsed == 1  # the garbage line, met on the way back to the window's start
    assert [e["status"] for e in entries] == [499] * 5
    assert entries[0]["time"] <= entries[-1]["time"]


def test_analyze_flags_short_499_and_504_and_excludes_own_probes():
    now = time.time()
    fmt = logs.LogFormat(SSE_TIMED)
    entries = [
        fmt.parse(timed_line(now, "/notify/events", 499, 0.3)),
        fmt.parse(timed_line(now, "/notify/events", 499, 3600.0)),  # a user closed the tab
        fmt.parse(timed_line(now, "/notify/events", 504, 1.0)),
        fmt.parse(timed_line(now, "/notify/events", 200, 35.0)),
        fmt.parse(timed_line(now, "/notify/events", 499, 0.1, probe="sse-diagnose-1")),
        fmt.parse(timed_line(now, "/notify/events", 502, 0.0)),
        fmt.parse(timed_line(now, "/elsewhere", 499, 0.1)),
    ]
    result = logs.analyze(
        entries, ["/notify/events"], short=10, exclude_probe_prefix="sse-diagnose-"
    )
    stats = result["/notify/events"]
    assert stats["requests"] == 5
    assert stats["short_499"] == 1 and stats["short_504"] == 1
    assert stats["errors_5xx"] == 2
    assert stats["by_status"]["499"] == {
        "count": 2,
        "rt_min": 0.3,
        "rt_median": 1800.15,
        "rt_max": 3600.0,
    }
