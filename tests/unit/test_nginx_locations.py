"""Mode locations of sse_nginx: the include line and the shadowing check (no host needed).

Configurations are written as `nginx -T` prints them, so includes, file names and line
numbers are exercised as on a host; the location matching is the diagnose code's.
"""

from __future__ import annotations

import textwrap

import pytest
from ansible_collections.sse.stack.plugins.module_utils import nginx_locations as loc

SNIPPET = "/etc/nginx/snippets/sse-app.conf"
SITE = "/etc/nginx/sites-enabled/app"

MAIN = """\
events {}
http {
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}
"""

SITE_TEXT = """\
server {
    listen 80;
    server_name app.example;
    return 301 https://$host$request_uri;
}

server {
    listen 443 ssl;
    server_name app.example www.app.example;
    root /srv/app;

    location / {
        try_files $uri $uri/ =404;
    }
    location /admin {
        proxy_pass http://127.0.0.1:9000;
    }
}

server {
    listen 443 ssl;
    server_name other.example;
    location / { return 200; }
}
"""

SNIPPET_TEXT = """\
    location /notify/events {
        proxy_pass http://app_backend;
        proxy_buffering off;
    }
"""


def dump(files: dict[str, str]) -> str:
    out = []
    for path, text in files.items():
        out.append(f"# configuration file {path}:")
        out.append(textwrap.dedent(text).rstrip("\n"))
        out.append("")
    return "\n".join(out) + "\n"


def planned_site(text: str = SITE_TEXT, name: str = "app.example") -> str:
    return loc.plan_include(text, SITE, name, "app", SNIPPET)


def check(site_text: str, extra: dict[str, str] | None = None) -> loc.Plan:
    files = {"/etc/nginx/nginx.conf": MAIN, SITE: SITE_TEXT, **(extra or {})}
    planned: dict[str, str | None] = {SITE: site_text, SNIPPET: SNIPPET_TEXT}
    return loc.shadowing(loc.simulate(dump(files), planned), SNIPPET, ["/notify/events"])


def test_include_goes_into_the_serving_block_once() -> None:
    text = planned_site()
    lines = text.splitlines()
    wanted = f"    include {SNIPPET}; # sse_nginx app: SSE locations"
    assert lines.count(wanted) == 1
    # right after the "server {" of the 443 block (line 7), not the redirecting twin
    assert lines.index(wanted) == 7
    assert planned_site(text) == text, "a second run changes nothing"
    assert loc.remove_include(text, "app") == SITE_TEXT, "absent restores the file exactly"


def test_no_serving_block_names_both_variables() -> None:
    with pytest.raises(loc.LocationsError) as err:
        planned_site(name="nope.example")
    assert "sse_nginx_site_file" in str(err.value)
    assert "sse_nginx_server_name nope.example" in str(err.value)


def test_only_a_redirecting_block_is_no_match() -> None:
    text = SITE_TEXT.split("\nserver {\n    listen 443 ssl;\n    server_name app.example")[0]
    with pytest.raises(loc.LocationsError, match=r"only redirect"):
        planned_site(text)


def test_two_serving_blocks_are_refused_with_both_places() -> None:
    text = SITE_TEXT.replace("server_name other.example;", "server_name app.example;")
    with pytest.raises(loc.LocationsError) as err:
        planned_site(text)
    message = str(err.value)
    assert "2 server blocks" in message
    assert f"{SITE}:7" in message and f"{SITE}:20" in message
    assert "sse_nginx_server_name" in message


def test_block_opened_on_a_line_with_more_is_refused() -> None:
    text = SITE_TEXT.replace(
        "server {\n    listen 443 ssl;\n    server_name app.example www",
        "server { listen 443 ssl;\n    server_name app.example www",
    )
    with pytest.raises(loc.LocationsError, match="yourself"):
        planned_site(text)


def test_the_role_location_wins_in_a_plain_site() -> None:
    plan = check(planned_site())
    assert plan.problems == []
    assert plan.included_in == [f"server app.example www.app.example at {SITE}:7"]


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("location = /notify/events { return 204; }", "exact match"),
        ("location ~ ^/notify { return 204; }", "regular expression"),
        ("location ~* EVENTS$ { return 204; }", "regular expression"),
    ],
)
def test_a_location_nginx_picks_first_is_quoted_with_file_and_line(location: str, why: str) -> None:
    text = planned_site().replace("    root /srv/app;\n", f"    root /srv/app;\n    {location}\n")
    plan = check(text)
    assert len(plan.problems) == 1, plan.problems
    # the shadowing location is on line 12 of the site file (after the include line)
    assert plan.problems[0].startswith(f"{SITE}:12: location ")
    assert why in plan.problems[0] and "sse_nginx_sse_locations" in plan.problems[0]


def test_a_regex_behind_a_longer_caret_prefix_does_not_shadow() -> None:
    # the role's own prefix is /notify/events; a ^~ /notify/ is shorter and loses, and a
    # regex is tried only when the longest prefix is not ^~ ... ours is a plain prefix,
    # so a regex that does NOT match the path is harmless
    text = planned_site().replace(
        "    root /srv/app;\n", "    root /srv/app;\n    location ~ \\.php$ { return 403; }\n"
    )
    assert check(text).problems == []


@pytest.mark.parametrize("modifier", ["", "^~ "])
def test_a_duplicate_location_is_quoted(modifier: str) -> None:
    # a shorter ^~ prefix loses to the role's longer one; the same path with ^~ is a
    # duplicate to nginx
    text = planned_site().replace(
        "    root /srv/app;\n",
        f"    root /srv/app;\n    location {modifier}/notify/events {{ return 204; }}\n"
        "    location ^~ /notify/ { return 204; }\n",
    )
    plan = check(text)
    assert len(plan.problems) == 1, plan.problems
    assert plan.problems[0].startswith(f"{SITE}:12: location {modifier}/notify/events duplicates")


def test_a_shadowing_location_in_another_included_file_is_quoted() -> None:
    text = planned_site().replace(
        "    root /srv/app;\n", "    root /srv/app;\n    include /etc/nginx/snippets/legacy.conf;\n"
    )
    plan = check(text, {"/etc/nginx/snippets/legacy.conf": "location ~ /events { return 410; }\n"})
    assert len(plan.problems) == 1
    assert plan.problems[0].startswith("/etc/nginx/snippets/legacy.conf:1: location ~ /events")


def test_not_included_anywhere_yet() -> None:
    plan = check(SITE_TEXT)
    assert plan.problems == [] and plan.included_in == []
