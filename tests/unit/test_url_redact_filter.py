"""sse.stack.url_redact and url_redact_text: an index URL's credentials never reach a
message or a file (issue 15: sse_backend_pip_index_url landed in a world-readable
`.installed` and in a failed task's command line)."""

from __future__ import annotations

import pytest
from ansible_collections.sse.stack.plugins.filter.url_redact import (
    FilterModule,
    url_redact,
    url_redact_text,
)

TOKEN = "s3cr3tT0kenABCDEF0123456789"

# (URL, what url_redact shows, the secrets it must never show)
URLS = [
    ("https://pypi.example/simple", "https://pypi.example/***", []),
    ("https://pypi.example/", "https://pypi.example/", []),
    ("https://pypi.example", "https://pypi.example", []),
    (f"https://deploy:{TOKEN}@pypi.example/simple/", "https://***@pypi.example/***", ["deploy"]),
    (
        f"https://__token__:{TOKEN}@pypi.example:8443/simple",
        "https://***@pypi.example:8443/***",
        [],
    ),
    (f"https://{TOKEN}@pypi.fury.io/acme/", "https://***@pypi.fury.io/***", []),
    (
        f"https://dl.cloudsmith.io/{TOKEN}/acme/repo/python/simple/",
        "https://dl.cloudsmith.io/***",
        [],
    ),
    (f"https://pypi.example/simple?token={TOKEN}", "https://pypi.example/***?***", []),
    (f"http://u:{TOKEN}@[::1]:3141/root/pypi/+simple/", "http://***@[::1]:3141/***", []),
    # a percent-encoded password
    (
        "https://deploy:p%40ss%2Fw0rd-long@pypi.example/simple",
        "https://***@pypi.example/***",
        ["p@ss/w0rd-long"],
    ),
]
IDS = [f"{i}-{shown}" for i, (_, shown, _) in enumerate(URLS)]


@pytest.mark.parametrize(("url", "shown", "secrets"), URLS, ids=IDS)
def test_url_redact_keeps_scheme_host_and_port_only(
    url: str, shown: str, secrets: list[str]
) -> None:
    redacted = url_redact(url)
    assert redacted == shown
    assert TOKEN not in redacted
    for secret in secrets:
        assert secret not in redacted


@pytest.mark.parametrize(("url", "shown", "secrets"), URLS, ids=IDS)
def test_url_redact_text_hides_every_part_of_the_url_pip_may_print(
    url: str, shown: str, secrets: list[str]
) -> None:
    # what pip prints: the URL as given, and with the password replaced by ****
    pip_redacted = url.replace(TOKEN, "****")
    text = (
        f"Looking in indexes: {pip_redacted}\n"
        f"ERROR: Could not find a version that satisfies the requirement myapp==9 (from {url})\n"
        f"WARNING: 401 Client Error: Unauthorized for url: {url.rstrip('/')}/myapp/\n"
    )
    redacted = url_redact_text(text, url)
    assert TOKEN not in redacted
    assert url not in redacted
    for secret in secrets:
        assert secret not in redacted
    assert "Could not find a version" in redacted  # the reason stays


def test_url_redact_text_without_a_url_changes_nothing() -> None:
    assert url_redact_text("pip failed", "") == "pip failed"


def test_a_url_that_cannot_be_parsed_is_hidden_whole() -> None:
    assert url_redact("https://[bad/simple") == "***"
    assert url_redact("") == ""
    assert "[bad" not in url_redact_text("from https://[bad/simple", "https://[bad/simple")


def test_registered_as_filters() -> None:
    assert set(FilterModule().filters()) == {"url_redact", "url_redact_text"}
