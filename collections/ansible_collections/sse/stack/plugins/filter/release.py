"""Filters of the rolling release (role sse_release): which proxy fronts which backend.

Both read the views that sse_release's preflight notes on each host:

- a backend's view (`__sse_release_backend`): `name` (inventory_hostname), `upstream` (its
  entry in the proxies' sse_nginx_upstreams: sse_release_upstream, or its bind address)
  and `local_only` (a loopback bind without sse_release_upstream: only a proxy on the same
  host reaches it);
- a proxy's view (`__sse_release_proxy`): `name`, `upstreams` (sse_nginx_upstreams),
  `site_name`, `staging_dir`, `probe` (its sse_verify_* settings) and, once looked up,
  `live` (nginx is set up there).

    "{{ backends | sse.stack.sse_release_unfronted(proxies) }}"  -> ["b1 (10.0.0.1:8000)"]
    "{{ batch | sse.stack.sse_release_plan(proxies) }}"          -> {hosts, drain, probe, drained}

Input that is not shaped like that raises AnsibleFilterError naming the variable it comes
from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - only for use without Ansible installed

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        pass


def _views(value: object, name: str, keys: dict[str, type | tuple[type, ...]]) -> list[Mapping]:
    """`value` as a list of mappings holding `keys` with those types, or an error naming
    `name` and the variable behind the wrong key (keys are named after their variable)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise AnsibleFilterError(f"{name}: expected a list of host views, got {value!r}")
    for view in value:
        if not isinstance(view, Mapping):
            raise AnsibleFilterError(f"{name}: expected a host's view (a mapping), got {view!r}")
        for key, kind in keys.items():
            if key not in view:
                raise AnsibleFilterError(f"{name}: {view.get('name', view)!r} has no {key!r}")
            if not isinstance(view[key], kind):
                raise AnsibleFilterError(
                    f"{_VARIABLE.get(key, key)} of {view.get('name', '?')}: {view[key]!r} is not"
                    f" {_KIND[key]}"
                )
    return list(value)


# the inventory variable each key of a view comes from, for the error messages
_VARIABLE = {
    "upstream": "sse_release_upstream",
    "local_only": "sse_release_upstream",
    "upstreams": "sse_nginx_upstreams",
    "site_name": "sse_nginx_site_name",
    "staging_dir": "sse_nginx_staging_dir",
    "probe": "sse_verify_*",
}
_KIND = {
    "name": "a host name",
    "upstream": "a host:port string",
    "local_only": "a boolean",
    "upstreams": "a list of host:port strings",
    "site_name": "a string",
    "staging_dir": "a string",
    "probe": "a mapping of the stream check's settings",
    "live": "a boolean",
}
_BACKEND = {"name": str, "upstream": str, "local_only": bool}
_PROXY = {"name": str, "upstreams": (list, tuple)}
_LIVE_PROXY = {**_PROXY, "site_name": str, "staging_dir": str, "probe": Mapping, "live": bool}


def _fronts(proxy: Mapping, backend: Mapping) -> bool:
    """The proxy sends streams to the backend: the backend's upstream is in its upstreams,
    and a loopback-only backend is on the proxy's own host."""
    return backend["upstream"] in proxy["upstreams"] and (
        proxy["name"] == backend["name"] or not backend["local_only"]
    )


def sse_release_unfronted(backends: object, proxies: object) -> list[str]:
    """ "name (upstream)" of each backend that no proxy fronts (the release could not drain
    it), in the order given."""
    backend_views = _views(backends, "sse_release_unfronted: backends", _BACKEND)
    proxy_views = _views(proxies, "sse_release_unfronted: proxies", _PROXY)
    return [
        f"{b['name']} ({b['upstream']})"
        for b in backend_views
        if not any(_fronts(p, b) for p in proxy_views)
    ]


def sse_release_plan(batch: object, proxies: object) -> dict[str, Any]:
    """The batch's plan: `hosts` (its names), `probe` (each live proxy that fronts one of
    them: its stream check settings plus `proxy`), `drain` (those of them that keep another
    backend up while the batch is down: `proxy`, `site_name`, `upstreams`, `staging_dir`)
    and `drained` (some proxy drains it: the batch is released behind a drain; otherwise in
    place, while nginx keeps sending it streams; either way gated on its checks)."""
    batch_views = _views(batch, "sse_release_plan: batch", _BACKEND)
    proxy_views = _views(proxies, "sse_release_plan: proxies", _LIVE_PROXY)
    drain: list[dict[str, Any]] = []
    probe: list[dict[str, Any]] = []
    for p in proxy_views:
        if not p["live"]:
            continue  # a first deploy: nginx is not set up there, nothing to drain
        down = [b["upstream"] for b in batch_views if _fronts(p, b)]
        if not down:
            continue
        probe.append({**p["probe"], "proxy": p["name"]})
        # a proxy that only fronts the batch would have no backend left: not drained
        if any(u not in down for u in p["upstreams"]):
            drain.append(
                {
                    "proxy": p["name"],
                    "site_name": p["site_name"],
                    "upstreams": list(p["upstreams"]),
                    "staging_dir": p["staging_dir"],
                }
            )
    return {
        "hosts": [b["name"] for b in batch_views],
        "drain": drain,
        "probe": probe,
        "drained": len(drain) > 0,
    }


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "sse_release_unfronted": sse_release_unfronted,
            "sse_release_plan": sse_release_plan,
        }
