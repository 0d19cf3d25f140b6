"""Health, version and the built-in test page."""

from __future__ import annotations

import re

from conftest import VERSION
from sse_helpers import request


def test_healthz(port: int) -> None:
    resp = request(port, "GET", "/healthz")
    assert resp.status == 200
    assert resp.json() == {"status": "ok"}  # no broker: nothing more to report


def test_version_names_the_release_in_body_and_header(port: int) -> None:
    resp = request(port, "GET", "/version")
    assert resp.status == 200
    assert resp.json() == {"version": VERSION}
    assert resp.headers["X-App-Version"] == VERSION


def test_every_response_carries_the_version_header(port: int) -> None:
    for method, path, status in [
        ("GET", "/healthz", 200),
        ("GET", "/no/such/page", 404),
        ("GET", "/notify/publish", 405),
        ("POST", "/notify/publish", 401),
    ]:
        resp = request(port, method, path)
        assert resp.status == status, path
        assert resp.headers["X-App-Version"] == VERSION, path


def test_version_defaults_to_the_package_version() -> None:
    import sse_app
    from sse_app.settings import Settings

    assert Settings.from_env({}).app_version == sse_app.__version__
    assert Settings.from_env({"SSE_APP_VERSION": " "}).app_version == sse_app.__version__


def test_page_is_self_contained_and_has_the_elements_the_browser_test_uses(port: int) -> None:
    resp = request(port, "GET", "/notify/")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.body.decode()
    for element_id in ("state", "events", "since-last", "errors"):
        assert f'id="{element_id}"' in page
    assert 'new EventSource("/notify/events")' in page
    # No external assets: nothing is loaded from anywhere else.
    assert not re.search(r"""(src|href)\s*=|@import|url\(|https?://""", page)
