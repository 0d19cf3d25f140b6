"""nginx -T parsing, location matching as nginx does it, inheritance, and the SSE findings.

Config snippets are written as `nginx -T` prints them ("# configuration file <path>:" before
each file), so includes, file names and line numbers are exercised as on a host.
"""

from __future__ import annotations

import textwrap

import pytest
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_nginx as ngx
from ansible_collections.sse.stack.plugins.module_utils import (
    sse_diagnose_nginx_findings as ngx_findings,
)


def dump(files: dict[str, str]) -> str:
    """nginx -T output of {path relative to /etc/nginx: text}; the first file is the main one."""
    out = []
    for path, text in files.items():
        out.append(f"# configuration file /etc/nginx/{path}:")
        out.append(textwrap.dedent(text).strip("\n"))
        out.append("")
    return "\n".join(out) + "\n"


MAIN = """
    events {}
    http {
        gzip on;
        include conf.d/*.conf;
    }
"""


def config(site: str, main: str = MAIN, more: dict[str, str] | None = None) -> ngx.NginxConfig:
    return ngx.NginxConfig.from_dump(
        dump({"nginx.conf": main, "conf.d/site.conf": site, **(more or {})})
    )


def served(site: str, uri: str, server: int = 0) -> str:
    cfg = config(site)
    chain = ngx.find_location(cfg.servers()[server], uri)
    return " > ".join(loc.describe() for loc in chain) or "none"


def findings_for(site: str, uri: str = "/notify/events", keepalive: float = 30, main: str = MAIN):
    cfg = config(site, main)
    server = cfg.servers()[0]
    chain = ngx.find_location(server, uri)
    assert chain, f"no location for {uri}"
    result, found = ngx_findings.analyze_location(cfg, server, chain, uri, keepalive)
    return result, {f["id"]: f for f in found}


GOOD = """
    upstream app { server 127.0.0.1:8000; }
    server {
        listen 443 ssl;
        server_name sse.example.com;
        location /notify/events {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            gzip off;
            add_header X-Accel-Buffering no always;
        }
    }
"""


# --- tokenizer and dump ------------------------------------------------------------------


def test_tokenizer_quotes_escapes_variables_and_comments():
    text = textwrap.dedent(
        r"""
        # a comment
        log_format t '$remote_addr "${request}"' "a\"b" x#y;  # trailing
        location ~ "^/a;b{2}$" { return 200 'ok'; }
        """
    )
    directives = ngx.parse(text, "f")
    fmt, loc = directives
    assert fmt.args == ["t", '$remote_addr "${request}"', 'a"b', "x#y"]
    assert (fmt.file, fmt.line) == ("f", 3)
    assert loc.args == ["~", "^/a;b{2}$"]
    assert loc.block[0].args == ["200", "ok"]
    assert loc.line == 4


def test_variable_braces_do_not_open_a_block():
    (d,) = ngx.parse("add_header X ${host}x;", "f")
    assert d.args == ["X", "${host}x"] and d.block is None


@pytest.mark.parametrize("text", ["a b", "a {", "}", "a { b; }}", "'open"])
def test_broken_text_raises_syntax_error(text):
    with pytest.raises(ngx.NginxSyntaxError):
        ngx.parse(text, "f")


def test_dump_lines_point_into_each_file():
    cfg = config(GOOD)
    assert cfg.order == ["/etc/nginx/nginx.conf", "/etc/nginx/conf.d/site.conf"]
    (server,) = cfg.servers()
    assert server.where == "/etc/nginx/conf.d/site.conf:2"
    loc = server.children("location")[0]
    assert loc.children("proxy_buffering")[0].where == "/etc/nginx/conf.d/site.conf:9"


def test_includes_resolve_relative_to_main_sorted_without_dot_files():
    main = """
        events {}
        http {
            include conf.d/*.conf;
            include /etc/nginx/snippets/sse.inc;
        }
    """
    cfg = ngx.NginxConfig.from_dump(
        dump(
            {
                "nginx.conf": main,
                "conf.d/b.conf": "server { server_name b; }",
                "conf.d/a.conf": "server { server_name a; }",
                "conf.d/.hidden.conf": "server { server_name hidden; }",
                "conf.d/sub/c.conf": "server { server_name deeper; }",
                "snippets/sse.inc": "gzip off;",
            }
        )
    )
    names = [ngx.server_names(s)[0] for s in cfg.servers()]
    assert names == ["a", "b"]  # glob order; no dot files; '*' stays in one folder
    gzip = cfg.http().children("gzip")[0]
    assert gzip.where == "/etc/nginx/snippets/sse.inc:1"


def test_include_missing_from_dump_is_a_warning_not_an_error():
    cfg = ngx.NginxConfig.from_dump(dump({"nginx.conf": "http { include extra.conf; }"}))
    assert cfg.servers() == []
    assert "include extra.conf is not in the dump" in cfg.warnings[0]


def test_includes_inside_a_location():
    site = """
        server {
            location /notify/events {
                include snippets/sse.conf;
            }
        }
    """
    cfg = config(
        site, more={"snippets/sse.conf": "proxy_pass http://127.0.0.1:9000;\nproxy_buffering off;"}
    )
    chain = ngx.find_location(cfg.servers()[0], "/notify/events")
    eff = ngx.effective(ngx.levels_for(cfg.http(), cfg.servers()[0], chain), "proxy_buffering")
    assert eff.value == "off" and eff.where == "/etc/nginx/snippets/sse.conf:2"


# --- location matching --------------------------------------------------------------------

LOCATIONS = """
    server {
        location / { }
        location /notify/ { }
        location = /notify/events { }
        location ~ ^/notify/ev { }
        location ^~ /static/ { }
        location ~* \\.(css|js)$ { }
        location ~ ^/static/x { }
        location /api/ {
            location /api/v2/ { }
            location ~ /stream$ { }
        }
        location ~ /api/.*stream { }
        location @fallback { }
        location /exact-name { }
        location ~ ^/exact-name$ { }
    }
"""


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/notify/events", "location = /notify/events"),  # exact wins at once
        ("/notify/events2", "location ~ ^/notify/ev"),  # regex beats the prefix
        ("/notify/other", "location /notify/"),  # longest prefix, no regex matches
        ("/elsewhere", "location /"),
        ("/static/x.css", "location ^~ /static/"),  # ^~ stops the regex search
        ("/app.CSS", "location ~* \\.(css|js)$"),  # ~* ignores case
        ("/api/v2/items", "location /api/ > location /api/v2/"),  # nested prefix
        ("/api/x/stream", "location /api/ > location ~ /stream$"),  # nested regex first
        ("/api/stream-x", "location ~ /api/.*stream"),  # then the outer regexes
        # a prefix named exactly the URI is only the longest prefix: the regex still wins
        ("/exact-name", "location ~ ^/exact-name$"),
        ("/exact-name/", "location /exact-name"),
        ("@fallback", "none"),  # named locations never match a request
    ],
)
def test_location_matching_follows_nginx(uri, expected):
    assert served(LOCATIONS, uri) == expected


# nginx's documentation of "location" (ngx_http_core_module), its example configurations
DOCS_EXAMPLE = """
    server {
        location = / { }
        location / { }
        location /documents/ { }
        location ^~ /images/ { }
        location ~* \\.(gif|jpg|jpeg)$ { }
    }
"""


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/", "location = /"),  # configuration A
        ("/index.html", "location /"),  # B
        ("/documents/document.html", "location /documents/"),  # C
        ("/images/1.gif", "location ^~ /images/"),  # D
        ("/documents/1.jpg", "location ~* \\.(gif|jpg|jpeg)$"),  # E
    ],
)
def test_nginx_documentation_example(uri, expected):
    assert served(DOCS_EXAMPLE, uri) == expected


def test_nginx_documentation_auto_redirect_and_exact_match():
    """A prefix ending in "/" with proxy_pass: the URI without the slash gets a 301 to it,
    unless an exact location takes that URI (the documentation's /user example)."""
    site = """
        server {
            location /user/ { proxy_pass http://user.example.com; }
            location = /user { proxy_pass http://login.example.com; }
            location /group/ { proxy_pass http://user.example.com; }
            location ~ ^/group { }
        }
    """
    cfg = config(site)
    (server,) = cfg.servers()
    assert served(site, "/user") == "location = /user"
    match = ngx.match_location(server, "/group")
    assert match.redirect and match.location.describe() == "location /group/"
    assert not ngx.match_location(server, "/group/x").redirect


def test_regex_beats_a_prefix_named_as_the_uri():
    """Issue 21: a regex location nginx picks for /notify/events over the prefix location."""
    site = """
        server {
            location /notify/events { proxy_pass http://127.0.0.1:8000; }
            location ~ ^/notify/ { return 404; }
        }
    """
    assert served(site, "/notify/events") == "location ~ ^/notify/"


def test_noregex_stops_the_regexes_only_as_the_longest_prefix():
    site = """
        server {
            location ^~ /static/ { }
            location /static/img/ { }
            location ~ \\.png$ { }
        }
    """
    assert served(site, "/static/a.png") == "location ^~ /static/"
    assert served(site, "/static/img/a.png") == "location ~ \\.png$"  # longest is not ^~


def test_nested_noregex_stops_only_the_nested_regexes():
    site = """
        server {
            location /a/ {
                location ^~ /a/b/ { }
                location ~ /a/b/n { }
            }
            location ~ /a/b/c { }
        }
    """
    assert served(site, "/a/b/n") == "location /a/ > location ^~ /a/b/"
    assert served(site, "/a/b/c") == "location ~ /a/b/c"  # the outer regexes still run


def test_nested_locations_of_a_regex_location():
    site = """
        server {
            location ~ ^/api/ {
                location ~ /events$ { }
            }
        }
    """
    assert served(site, "/api/x/events") == "location ~ ^/api/ > location ~ /events$"
    assert served(site, "/api/x") == "location ~ ^/api/"


def test_regex_locations_are_tried_in_order():
    site = """
        server {
            location ~ ^/notify { }
            location ~ ^/notify/events$ { }
        }
    """
    assert served(site, "/notify/events") == "location ~ ^/notify"


def test_modifier_written_together_with_the_name():
    site = """
        server {
            location =/notify/events { }
            location ~*^/NOTIFY { }
            location /notify/ { }
        }
    """
    assert served(site, "/notify/events") == "location = /notify/events"
    assert served(site, "/notify/x") == "location ~* ^/NOTIFY"


def test_pcre_named_groups_work():
    site = "server { location ~ ^/(?<topic>[a-z]+)/events$ { } }"
    assert served(site, "/notify/events") == "location ~ ^/(?<topic>[a-z]+)/events$"


def test_bad_regex_is_reported_and_skipped():
    cfg = config("server { location ~ ^/(unclosed { } location / { } }")
    errors: list[str] = []
    chain = ngx.find_location(cfg.servers()[0], "/x", errors)
    assert [loc.describe() for loc in chain] == ["location /"]
    assert "cannot evaluate" in errors[0]


# --- inheritance ----------------------------------------------------------------------------


def test_healthy_location_has_no_critical_or_warning_findings():
    result, found = findings_for(GOOD, keepalive=30)
    assert {f["severity"] for f in found.values()} <= {"info"}
    assert result["target"]["servers"] == ["127.0.0.1:8000"]
    assert result["settings"]["proxy_read_timeout"]["seconds"] == 3600


def test_buffering_inherited_from_server_with_ignored_header_is_critical():
    site = """
        server {
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            location /notify/events {
                proxy_pass http://127.0.0.1:8000;
                proxy_http_version 1.1;
            }
        }
    """
    _, found = findings_for(site)
    f = found["nginx.proxy_buffering"]
    assert f["severity"] == "critical"
    assert f["where"] == "/etc/nginx/conf.d/site.conf:2"
    assert "proxy_ignore_headers X-Accel-Buffering at /etc/nginx/conf.d/site.conf:3" in f["message"]


def test_default_buffering_without_ignore_is_a_warning_that_needs_the_header():
    _, found = findings_for("server { location /notify/events { proxy_pass http://b:1; } }")
    f = found["nginx.proxy_buffering"]
    assert f["severity"] == "warning" and f["needs_backend_header"] is True
    assert "on by default" in f["message"]


def test_location_buffering_off_overrides_server_on():
    site = """
        server {
            proxy_buffering on;
            location /notify/events { proxy_pass http://b:1; proxy_buffering off; }
        }
    """
    _, found = findings_for(site)
    assert "nginx.proxy_buffering" not in found


@pytest.mark.parametrize(
    ("directive", "keepalive", "severity"),
    [
        ("proxy_read_timeout 1s;", 2, "critical"),
        ("proxy_read_timeout 2;", 2, "critical"),  # equal: closes right as it arrives
        ("", 60, "critical"),  # nginx's default 60 s against a 60 s keepalive
        ("proxy_read_timeout 45s;", 30, "warning"),
        ("proxy_read_timeout 1m30s;", 30, None),
        ("proxy_read_timeout 500ms;", 1, "critical"),
    ],
)
def test_read_timeout_against_keepalive(directive, keepalive, severity):
    site = f"server {{ {directive} location /notify/events {{ proxy_pass http://b:1; }} }}"
    _, found = findings_for(site, keepalive=keepalive)
    got = found.get("nginx.proxy_read_timeout")
    assert (got or {}).get("severity") == severity
    if got and directive:
        assert got["where"] == "/etc/nginx/conf.d/site.conf:1"


def test_read_timeout_from_http_level():
    main = "http { proxy_read_timeout 5s; include conf.d/*.conf; }"
    _, found = findings_for(
        "server { location /notify/events { proxy_pass http://b:1; } }", keepalive=10, main=main
    )
    assert found["nginx.proxy_read_timeout"]["where"] == "/etc/nginx/nginx.conf:1"


def test_send_timeouts_shorter_than_keepalive_are_warnings():
    site = (
        "server { send_timeout 5s;"
        " location /notify/events { proxy_pass http://b:1; proxy_send_timeout 3; } }"
    )
    _, found = findings_for(site, keepalive=10)
    assert found["nginx.proxy_send_timeout"]["severity"] == "warning"
    assert found["nginx.send_timeout"]["severity"] == "warning"


def test_proxy_set_header_in_location_replaces_the_server_ones():
    site = """
        server {
            proxy_set_header Connection '';
            location /notify/events {
                proxy_pass http://b:1;
                proxy_http_version 1.1;
                proxy_set_header Host $host;
            }
        }
    """
    result, found = findings_for(site)
    f = found["nginx.connection_header"]
    assert "/etc/nginx/conf.d/site.conf:2 is not inherited" in f["message"]
    assert "lines at /etc/nginx/conf.d/site.conf:6 replace ALL" in f["message"]
    assert result["settings"]["connection_header"]["value"].startswith("close")
    assert result["settings"]["proxy_set_header"]["replaced"] == ["/etc/nginx/conf.d/site.conf:2"]


def test_proxy_set_header_inherited_when_location_sets_none():
    site = """
        server {
            proxy_set_header Connection '';
            location /notify/events { proxy_pass http://b:1; proxy_http_version 1.1; }
        }
    """
    result, found = findings_for(site)
    assert "nginx.connection_header" not in found
    assert result["settings"]["connection_header"]["where"] == "/etc/nginx/conf.d/site.conf:2"


def test_add_header_replacement_loses_x_accel_buffering():
    site = """
        server {
            add_header X-Accel-Buffering no;
            location /notify/events {
                proxy_pass http://b:1;
                add_header Cache-Control no-cache;
            }
        }
    """
    _, found = findings_for(site)
    f = found["nginx.x_accel_buffering"]
    assert f["severity"] == "warning"
    assert "site.conf:2 is not inherited" in f["message"]


def test_http_version_default_is_a_warning():
    _, found = findings_for("server { location /notify/events { proxy_pass http://b:1; } }")
    assert "nginx default" in found["nginx.proxy_http_version"]["message"]


def test_gzip_only_matters_with_event_stream_type():
    _, found = findings_for("server { location /notify/events { proxy_pass http://b:1; } }")
    assert found["nginx.gzip"]["severity"] == "info"  # gzip on in http, default gzip_types
    site = (
        "server { gzip_types text/event-stream;"
        " location /notify/events { proxy_pass http://b:1; } }"
    )
    _, found = findings_for(site)
    assert found["nginx.gzip"]["severity"] == "warning"


def test_proxy_cache_is_critical():
    _, found = findings_for(
        "server { location /notify/events { proxy_pass http://b:1; proxy_cache zone; } }"
    )
    assert found["nginx.proxy_cache"]["severity"] == "critical"


def test_location_without_proxy_pass_is_critical():
    _, found = findings_for("server { location /notify/ { return 200; } }")
    assert found["nginx.no_proxy_pass"]["severity"] == "critical"


def test_regex_location_serves_with_its_own_settings():
    site = """
        server {
            location /notify/ { proxy_pass http://b:1; proxy_buffering off; }
            location ~ /events$ { proxy_pass http://b:1; proxy_read_timeout 1s; }
        }
    """
    _, found = findings_for(site, keepalive=2)
    assert found["nginx.proxy_read_timeout"]["where"] == "/etc/nginx/conf.d/site.conf:3"
    assert found["nginx.proxy_buffering"]["severity"] == "warning"  # the regex one buffers


# --- targets, servers, logs ---------------------------------------------------------------


def test_proxy_target_resolves_upstream_and_uri():
    site = """
        upstream app {
            server 10.0.0.1:8000 down;
            server 10.0.0.2:8000 weight=2;
            server 10.0.0.3:8000 backup;
        }
        server {
            location /notify/ { proxy_pass http://app/stream/; }
            location /plain/ { proxy_pass http://127.0.0.1:9000; }
            location /host/ { proxy_pass http://backend.local; }
        }
    """
    cfg = config(site)
    server = cfg.servers()[0]

    def target(uri):
        return ngx.proxy_target(cfg, ngx.find_location(server, uri)[-1], uri)

    t = target("/notify/events")
    assert t["servers"] == ["10.0.0.2:8000"] and t["uri"] == "/stream/events"
    assert t["upstream"]["name"] == "app"
    assert target("/plain/x")["servers"] == ["127.0.0.1:9000"]
    assert target("/plain/x")["uri"] == "/plain/x"
    assert target("/host/x")["servers"] == ["backend.local:80"]


def test_listen_and_server_name_helpers():
    site = """
        server { listen 80; server_name example.com *.example.org; return 301 https://$host; }
        server {
            listen [::]:8443 ssl; listen 127.0.0.1:8443 ssl;
            server_name ~^sse\\d+\\.example\\.com$;
        }
    """
    cfg = config(site)
    plain, tls = cfg.servers()
    assert ngx.redirects_everything(plain).name == "return"
    assert ngx.redirects_everything(tls) is None
    assert ngx.server_matches(plain, "a.example.org") and ngx.server_matches(plain, "EXAMPLE.com")
    assert ngx.server_matches(tls, "sse1.example.com") and not ngx.server_matches(
        tls, "x.example.com"
    )
    assert [(x["address"], x["port"], x["ssl"]) for x in ngx.listens(tls)] == [
        ("[::]", 8443, True),
        ("127.0.0.1", 8443, True),
    ]


def test_access_log_of_the_location_and_log_formats():
    main = """
        http {
            log_format timed 'status=$status rt=$request_time';
            access_log /var/log/nginx/access.log timed;
            include conf.d/*.conf;
        }
    """
    site = """
        server {
            access_log /var/log/nginx/site.log timed buffer=32k;
            location /notify/events { proxy_pass http://b:1; }
            location /quiet/ { proxy_pass http://b:1; access_log off; }
        }
    """
    cfg = config(site, main)
    server = cfg.servers()[0]
    logs = ngx.access_logs(
        ngx.levels_for(cfg.http(), server, ngx.find_location(server, "/notify/events"))
    )
    assert logs == [
        {
            "path": "/var/log/nginx/site.log",
            "format": "timed",
            "where": "/etc/nginx/conf.d/site.conf:2",
        }
    ]
    assert (
        ngx.access_logs(ngx.levels_for(cfg.http(), server, ngx.find_location(server, "/quiet/x")))
        == []
    )
    assert cfg.log_formats()["timed"] == "status=$status rt=$request_time"
    assert "combined" in cfg.log_formats()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("60", 60),
        ("1h", 3600),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1h30", 3630),
        ("x", None),
        ("", None),
    ],
)
def test_nginx_seconds(value, seconds):
    assert ngx.nginx_seconds(value) == seconds


def test_the_project_template_as_rendered_on_a_host():
    """The site the sse_nginx role writes (as nginx -T prints it) gets no critical finding."""
    site = """
        upstream sse_backend {
            server 127.0.0.1:8000;
        }
        server {
            listen 80;
            server_name localhost;
            return 301 https://$host$request_uri;
        }
        server {
            listen 443 ssl;
            server_name localhost;
            access_log /var/log/nginx/sse_access.log sse_timed;
            add_header Strict-Transport-Security "max-age=63072000" always;
            location /notify/events {
                proxy_pass http://sse_backend;
                proxy_http_version 1.1;
                proxy_set_header Connection '';
                proxy_set_header Host $host;
                proxy_buffering off;
                proxy_cache off;
                proxy_read_timeout 1h;
                proxy_send_timeout 1h;
                gzip off;
                add_header X-Accel-Buffering no always;
                add_header Cache-Control no-cache always;
            }
            location / {
                proxy_pass http://sse_backend;
            }
        }
    """
    cfg = config(site)
    plain, tls = cfg.servers()
    assert ngx.redirects_everything(plain) is not None
    chain = ngx.find_location(tls, "/notify/events")
    _, found = ngx_findings.analyze_location(cfg, tls, chain, "/notify/events", 30)
    assert [f for f in found if f["severity"] != "info"] == []
