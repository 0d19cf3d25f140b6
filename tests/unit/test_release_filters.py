"""The filters of the rolling release (sse.stack's release.py) pick the proxies to drain and
to probe from, as playbooks/backend.yml's Jinja loops did.

Views as roles/sse_release/tasks/preflight.yml notes them: a backend's `name`, `upstream`,
`local_only`; a proxy's `name`, `upstreams`, `site_name`, `staging_dir`, `probe`, `live`.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sse.stack.plugins.filter import release

unfronted = release.sse_release_unfronted
plan = release.sse_release_plan


def backend(name: str, upstream: str, local_only: bool = False) -> dict[str, Any]:
    return {"name": name, "upstream": upstream, "local_only": local_only, "url": "http://x/"}


def proxy(name: str, *upstreams: str, live: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "upstreams": list(upstreams),
        "site_name": f"site-{name}",
        "staging_dir": f"/stage/{name}",
        "probe": {"url": f"https://{name}/events", "hold": 35},
        "live": live,
    }


B1 = backend("b1", "10.0.0.1:8000")
B2 = backend("b2", "10.0.0.2:8000")
B3 = backend("b3", "10.0.0.3:8000")
P = proxy("p", "10.0.0.1:8000", "10.0.0.2:8000")


def drained(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "proxy": p["name"],
        "site_name": p["site_name"],
        "upstreams": p["upstreams"],
        "staging_dir": p["staging_dir"],
    }


def probed(p: dict[str, Any]) -> dict[str, Any]:
    return {**p["probe"], "proxy": p["name"]}


# --- sse_release_unfronted -------------------------------------------------------------


def test_every_backend_fronted():
    assert unfronted([B1, B2], [P]) == []


def test_backends_in_no_upstream_listed_in_order():
    assert unfronted([B3, B1, backend("b4", "b4:8000")], [P]) == [
        "b3 (10.0.0.3:8000)",
        "b4 (b4:8000)",
    ]


def test_no_proxy_fronts_nothing():
    assert unfronted([B1], []) == ["b1 (10.0.0.1:8000)"]


def test_loopback_backend_only_fronted_by_a_proxy_on_its_host():
    local = backend("b1", "127.0.0.1:8000", local_only=True)
    other_host = proxy("p", "127.0.0.1:8000")
    same_host = proxy("b1", "127.0.0.1:8000")
    assert unfronted([local], [other_host]) == ["b1 (127.0.0.1:8000)"]
    assert unfronted([local], [other_host, same_host]) == []
    # sse_release_upstream given: reached from anywhere, even at a loopback address
    assert unfronted([backend("b1", "127.0.0.1:8000")], [other_host]) == []


# --- sse_release_plan --------------------------------------------------------------------


def test_one_of_two_backends_drained_and_probed():
    assert plan([B1], [P]) == {
        "hosts": ["b1"],
        "drain": [drained(P)],
        "probe": [probed(P)],
        "drained": True,
    }


def test_whole_upstream_in_the_batch_probed_not_drained():
    # nginx would have no backend left: the batch goes in place (not drained)
    assert plan([B1, B2], [P]) == {
        "hosts": ["b1", "b2"],
        "drain": [],
        "probe": [probed(P)],
        "drained": False,
    }


def test_proxy_without_nginx_yet_untouched():
    # a first deploy: nothing to drain, nothing to probe from
    assert plan([B1], [proxy("p", "10.0.0.1:8000", "10.0.0.2:8000", live=False)]) == {
        "hosts": ["b1"],
        "drain": [],
        "probe": [],
        "drained": False,
    }


def test_only_the_proxies_in_front_of_the_batch():
    other = proxy("q", "10.0.0.3:8000", "10.0.0.4:8000")
    both = proxy("r", "10.0.0.1:8000", "10.0.0.3:8000")
    result = plan([B1], [P, other, both])
    assert [d["proxy"] for d in result["drain"]] == ["p", "r"]
    assert [p["proxy"] for p in result["probe"]] == ["p", "r"]
    assert result["drained"] is True


def test_alone_behind_one_proxy_drained_behind_another():
    alone = proxy("q", "10.0.0.1:8000")
    result = plan([B1], [alone, P])
    assert result["drain"] == [drained(P)]
    assert result["probe"] == [probed(alone), probed(P)]


def test_loopback_backend_planned_only_on_its_own_host():
    local = backend("b1", "127.0.0.1:8000", local_only=True)
    same_host = proxy("b1", "127.0.0.1:8000", "10.0.0.2:8000")
    other_host = proxy("p", "127.0.0.1:8000", "10.0.0.2:8000")
    result = plan([local], [other_host, same_host])
    assert [d["proxy"] for d in result["drain"]] == ["b1"]
    assert [p["proxy"] for p in result["probe"]] == ["b1"]


def test_plan_does_not_change_its_inputs():
    p = proxy("p", "10.0.0.1:8000", "10.0.0.2:8000")
    result = plan([B1], [p])
    result["drain"][0]["upstreams"].append("x")
    result["probe"][0]["hold"] = 0
    assert p == proxy("p", "10.0.0.1:8000", "10.0.0.2:8000")


# --- bad input names the variable ----------------------------------------------------------


@pytest.mark.parametrize(
    ("backends", "proxies", "message"),
    [
        ([{**B1, "upstream": 8000}], [P], r"^sse_release_upstream of b1: 8000 is not a host:port"),
        ([B1], [{**P, "upstreams": "10.0.0.1:8000"}], r"^sse_nginx_upstreams of p: '10\.0\.0\.1"),
        ([{**B1, "local_only": "no"}], [P], r"^sse_release_upstream of b1: 'no' is not a boolean"),
        ("b1", [P], r"^sse_release_\w+: (backends|batch): expected a list"),
        ([B1], {"p": P}, r"^sse_release_\w+: proxies: expected a list"),
        (["b1"], [P], r"(backends|batch): expected a host's view"),
        ([{"name": "b1"}], [P], r"(backends|batch): 'b1' has no 'upstream'"),
    ],
)
def test_bad_input_names_the_variable(backends: Any, proxies: Any, message: str) -> None:
    for function in (unfronted, plan):
        with pytest.raises(AnsibleFilterError, match=message):
            function(backends, proxies)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("site_name", None, r"^sse_nginx_site_name of p: None is not a string"),
        ("staging_dir", 1, r"^sse_nginx_staging_dir of p: 1 is not a string"),
        ("probe", [], r"^sse_verify_\* of p: \[\] is not a mapping"),
        ("live", "yes", r"^live of p: 'yes' is not a boolean"),
    ],
)
def test_bad_proxy_view_for_the_plan(key: str, value: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        plan([B1], [{**P, key: value}])


def test_registered_as_filters():
    assert release.FilterModule().filters() == {
        "sse_release_unfronted": unfronted,
        "sse_release_plan": plan,
    }
