"""sse_nginx's default Content-Security-Policy lets the reference page run.

The page (app/src/sse_app/page.html) has one inline <script> and one inline <style>; a
policy without their sha256 would block both in every browser (the page would show
nothing, and the browser tests of the default scenario would fail). When the page changes,
this test names the hashes the default must carry.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "app" / "src" / "sse_app" / "page.html"
DEFAULTS = ROOT / "roles" / "sse_nginx" / "defaults" / "main.yml"


def inline_hashes(tag: str) -> list[str]:
    blocks = re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", PAGE.read_text(encoding="utf-8"), re.S)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
        for b in blocks
    ]


def directives() -> dict[str, list[str]]:
    policy = yaml.safe_load(DEFAULTS.read_text())["sse_nginx_content_security_policy"]
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parts}


def test_default_policy_allows_the_pages_inline_script_and_style() -> None:
    csp = directives()
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        hashes = inline_hashes(tag)
        assert hashes, f"no inline <{tag}> in {PAGE}: drop its hash from the default"
        for digest in hashes:
            assert digest in csp[directive], (directive, digest)


def test_default_policy_allows_only_the_sites_origin() -> None:
    csp = directives()
    assert csp["default-src"] == ["'self'"]  # the EventSource: connect-src falls back to it
    assert "connect-src" not in csp
    assert not [v for values in csp.values() for v in values if "unsafe" in v or v == "*"]
    assert csp["frame-ancestors"] == ["'none'"]
