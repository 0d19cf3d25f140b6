"""The systemd_env filters write values systemd's EnvironmentFile= parser reads back exactly.

WRITTEN holds values with what the filter writes for them; each line was checked against
the real parser (systemd 252 on Debian 12, 257 on Debian 13): the written line in an
EnvironmentFile= of a transient unit (`systemd-run --wait -P -p EnvironmentFile=...
cat /proc/self/environ`), the value read back byte-identical. The molecule `smoke`
scenario proves the same from the running backend's /proc/<MainPID>/environ.
`parse_double_quoted` is systemd's double-quote state (src/basic/env-file.c) for the
round trip of the values in between.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

# run from its file: the editable package of the repository holds module_utils only
PLUGIN = runpy.run_path(
    str(
        Path(__file__).resolve().parents[2]
        / "collections/ansible_collections/sse/stack/plugins/filter/systemd_env.py"
    )
)
FilterModule = PLUGIN["FilterModule"]
systemd_env_problems = PLUGIN["systemd_env_problems"]
systemd_env_quote = PLUGIN["systemd_env_quote"]

# value -> what the filter writes; every pair checked against systemd 252 and 257
WRITTEN = {
    "plain": '"plain"',
    "café": '"café"',
    "emoji 🎉": '"emoji 🎉"',
    "a b": '"a b"',
    "  lead and trail  ": '"  lead and trail  "',
    "back\\slash": '"back\\\\slash"',
    "trail\\": '"trail\\\\"',
    "C:\\path\\to": '"C:\\\\path\\\\to"',
    "it's": '"it\'s"',
    "'single'": "\"'single'\"",
    'say "hi"': '"say \\"hi\\""',
    'a\\"b': '"a\\\\\\"b"',
    "$HOME": '"\\$HOME"',
    "${HOME}": '"\\${HOME}"',
    "`id`": '"\\`id\\`"',
    "#hash": '"#hash"',
    "a # b": '"a # b"',
    ";semi": '";semi"',
    "%h %i %%": '"%h %i %%"',
    "tab\there": '"tab\there"',
    "\ttab-lead": '"\ttab-lead"',
    "": '""',
    " ": '" "',
    "x=y=z": '"x=y=z"',
    "\\n": '"\\\\n"',
    "\\u00e9": '"\\\\u00e9"',
    "\u2028line separator": '"\u2028line separator"',
}


def parse_double_quoted(text: str) -> str:
    """systemd's reading of one double-quoted value (DOUBLE_QUOTE_VALUE and its escape
    state): a backslash before one of " \\ ` $ gives that character, before anything else
    it stays; the value ends at the first unescaped quote, which must end the text here."""
    assert text.startswith('"'), text
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(nxt if nxt in '"\\`$' else char + nxt)
            i += 2
            continue
        if char == '"':
            assert i == len(text) - 1, f"value ends before the line does: {text!r}"
            return "".join(out)
        out.append(char)
        i += 1
    raise AssertionError(f"unterminated: {text!r}")


@pytest.mark.parametrize(("value", "written"), WRITTEN.items(), ids=repr)
def test_written_as_systemd_reads_it(value: str, written: str) -> None:
    assert systemd_env_quote(value) == written
    assert parse_double_quoted(written) == value


@pytest.mark.parametrize(
    "value",
    ['\\"', '\\\\"', '"\\', "\\$\\`", "$$", "\\\\\\", "\"'\"'", "é\\é", "%%n", "a\\\tb"],
    ids=repr,
)
def test_round_trip_of_awkward_combinations(value: str) -> None:
    assert parse_double_quoted(systemd_env_quote(value)) == value


@pytest.mark.parametrize(
    ("value", "written"),
    [(8000, '"8000"'), (2.5, '"2.5"'), (True, '"True"'), (False, '"False"')],
    ids=repr,
)
def test_numbers_and_booleans_as_jinja_writes_them(value: object, written: str) -> None:
    assert systemd_env_quote(value) == written


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("token\nEVIL=1", "a newline"),
        ("trailing\n", "a newline"),
        ("a\rb", "a carriage return"),
        ("a\x00b", "a NUL byte"),
        ("a\x1bb", "U+001B"),
        ("a\x7fb", "U+007F"),
        (["a"], "got a list"),
        ({"a": 1}, "got a mapping"),
        (None, "got null"),
        (b"bytes", "got a bytes"),
    ],
    ids=repr,
)
def test_refused_naming_the_variable_never_the_value(value: object, why: str) -> None:
    with pytest.raises(AnsibleFilterError) as raised:
        systemd_env_quote(value, "sse_backend_env.SECRET")
    message = str(raised.value)
    assert message.startswith("sse_backend_env.SECRET "), message
    assert why in message, message
    assert "EVIL" not in message and "token" not in message, message
    problems = systemd_env_problems({"SECRET": value, "OK": "x"}, "sse_backend_env.")
    assert problems == [message]


def test_problems_lists_every_bad_value_and_nothing_else() -> None:
    values = {"A": "fine", "B": "new\nline", "C": "tab\tis fine", "D": "bell\a", "E": 3}
    assert [p.split(" ")[0] for p in systemd_env_problems(values)] == ["B", "D"]
    assert systemd_env_problems({}) == []


def test_problems_wants_a_mapping() -> None:
    with pytest.raises(AnsibleFilterError, match="expects a mapping, got a list"):
        systemd_env_problems(["A=1"])


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {"systemd_env_quote", "systemd_env_problems"}
