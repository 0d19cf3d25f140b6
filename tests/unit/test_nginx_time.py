"""The `sse_nginx_seconds` filter agrees with nginx's time syntax (ngx_parse_time).

The accepted/rejected cases below were checked against `nginx -t` (nginx 1.26.3) with the
value in proxy_send_timeout (millisecond resolution) and ssl_session_timeout (seconds).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/sse/stack/plugins/filter/nginx_time.py"
)
_spec = importlib.util.spec_from_file_location("sse_nginx_time", PLUGIN)
assert _spec is not None and _spec.loader is not None
nginx_time = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nginx_time)
seconds = nginx_time.sse_nginx_seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30),
        ("0", 0),
        ("00", 0),
        (45, 45),
        ("30s", 30),
        ("90m", 5400),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h30", 3630),  # a trailing bare number is seconds
        ("1s30", 31),
        ("1d", 86400),
        ("2w", 1209600),
        ("1M", 30 * 86400),
        ("1y", 365 * 86400),
        ("1y1M1w1d1h1m1s", 365 * 86400 + 30 * 86400 + 7 * 86400 + 86400 + 3600 + 60 + 1),
        ("1500ms", 1.5),
        ("500ms5", 5.5),
        ("1h30m15s100ms", 5415.1),
        ("1h0m", 3600),
    ],
)
def test_valid(value, expected):
    result = seconds(value)
    assert result == expected
    assert isinstance(result, int) == (expected == int(expected))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "h",
        "1x",
        "-5",
        "1.5h",
        "30m1h",  # out of order
        "1s1s",  # repeated
        "1ms1s",
        "1h 30m",  # would be two arguments when written unquoted
        " 1h",
        "1H",
        "1hh",
        "9223372036854775808s",
        None,
        True,
        1.5,
        -1,
        ["1h"],
    ],
)
def test_invalid_raises_naming_the_variable(value):
    with pytest.raises(AnsibleFilterError, match=r"^sse_nginx_read_timeout: .* not a valid nginx"):
        seconds(value, "sse_nginx_read_timeout")


def test_default_name_in_message():
    with pytest.raises(AnsibleFilterError, match=r"^value: '1x'"):
        seconds("1x")


@pytest.mark.parametrize("value", ["1M", "1y", "2y3M"])
def test_ms_resolution_rejects_months_and_years(value):
    # proxy_read_timeout & co.: nginx says "directive invalid value"
    assert seconds(value) > 0
    with pytest.raises(AnsibleFilterError, match="not allowed here"):
        seconds(value, "t", "ms")


def test_s_resolution_rejects_milliseconds():
    assert seconds("1y1M", "t", "s") == 395 * 86400
    with pytest.raises(AnsibleFilterError, match="'ms' not allowed"):
        seconds("1ms", "t", "s")


def test_ms_resolution_overflow():
    # nginx 1.26: 9223372036854775ms and 9223372036854775 (s) are valid,
    # 9223372036854775807 (s) and 100000000000000w overflow
    assert seconds("9223372036854775ms", "t", "ms") == 9223372036854775 / 1000
    assert seconds("9223372036854775", "t", "ms") == 9223372036854775
    for value in ("9223372036854775807", "100000000000000w"):
        with pytest.raises(AnsibleFilterError, match="too large"):
            seconds(value, "t", "ms")


def test_bad_resolution_argument():
    with pytest.raises(AnsibleFilterError, match="resolution"):
        seconds("1s", "t", "minutes")


def test_registered_as_filter():
    assert nginx_time.FilterModule().filters() == {"sse_nginx_seconds": seconds}


def test_problem_reports_instead_of_raising():
    assert nginx_time.nginx_time_problem("1h30m", "ms") is None
    assert nginx_time.nginx_time_problem(30, "ms") is None
    assert nginx_time.nginx_time_problem("1M", "ms") == (
        "is not a valid nginx time (unit 'M' not allowed here; allowed: w d h m s ms)"
    )
    assert nginx_time.nginx_time_problem("1h\n") == (
        "is not a valid nginx time (unexpected '\\n' at position 2)"
    )
    assert nginx_time.nginx_time_problem(True) is not None
