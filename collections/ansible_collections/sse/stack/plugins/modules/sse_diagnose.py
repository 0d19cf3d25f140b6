#!/usr/bin/python
"""Ansible module: read-only diagnosis of interrupted SSE streams on one host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sse_diagnose
short_description: Diagnose why Server-Sent Events streams get interrupted, changing nothing
description:
  - Reads the nginx configuration as nginx sees it (C(nginx -T)), finds the location that
    serves each SSE path exactly as nginx matches locations, and checks the directives in
    effect there (buffering, cache, timeouts against the keepalive interval, gzip, HTTP
    version, Connection and X-Accel-Buffering headers), each finding with its file and line;
    tells the configuration nginx runs from an edit on disk it has not loaded.
  - Finds the backend's systemd unit (system manager and every lingering user's manager),
    checks it is active (quoting the app's own error when not), that the processes running
    the app started after its code was written (Gunicorn's workers after a HUP reload),
    its Gunicorn worker class and timeout, its journal, and that nginx's upstream is where
    the unit listens.
  - Summarizes the access log over a window and holds one stream through nginx and one
    straight to the backend with the project's probe (C(sseprobe)), then names the most
    likely cause in one sentence.
  - Never changes the host and never reports C(changed); safe in check mode.
  - Uses the collection's module_utils C(sseprobe) and C(sse_diagnose_*).
options:
  paths:
    description: SSE request paths.
    type: list
    elements: str
    default: ["/notify/events"]
  since:
    description: Window of the access log and the journal, e.g. C(1h), C(30m), C(2d).
    type: str
    default: 1h
  keepalive_interval:
    description: Seconds between the backend's C(:keepalive) comments.
    type: float
    default: 30
  tolerance:
    description: Seconds a keepalive may be late.
    type: float
    default: 2
  hold:
    description: Seconds each live probe holds the stream.
    type: float
    default: 33
  first_byte_timeout:
    description: Seconds the probes wait for the first byte.
    type: float
    default: 5
  proxy:
    description: This host runs nginx in front of the backend.
    type: bool
    default: true
  backend:
    description: This host runs the backend.
    type: bool
    default: true
  probe:
    description: Run the live probes.
    type: bool
    default: true
  server_name:
    description: Only nginx server blocks serving this host name (empty, all).
    type: str
    default: ""
  url:
    description: Public stream URL to probe through nginx (empty, from the nginx configuration).
    type: str
    default: ""
  resolve:
    description: C(HOST:PORT:ADDR) for O(url).
    type: str
    default: ""
  cacert:
    description: CA file to verify nginx's certificate (empty, not verified).
    type: str
    default: ""
  backend_url:
    description:
      - Backend stream URL (empty, the upstream in nginx's configuration or the unit's
        socket).
    type: str
    default: ""
  backend_unit:
    description:
      - Backend unit name (empty, any service running gunicorn, uvicorn, hypercorn, daphne
        or granian).
    type: str
    default: ""
  access_log:
    description: Access log to read (empty, the one the configuration writes for the SSE location).
    type: str
    default: ""
author:
  - sse-deploy maintainers
"""

EXAMPLES = r"""
- name: Diagnose this host
  sse_diagnose:
    paths: [/notify/events]
    since: 1h
    keepalive_interval: 30
  register: diagnosis
"""

RETURN = r"""
report:
  description: Findings, the evidence per hop and the verdict (see the role's README).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_host import (  # noqa: E402
    NGINX_DIRS,
    diagnose,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "default": ["/notify/events"]},
            "since": {"type": "str", "default": "1h"},
            "keepalive_interval": {"type": "float", "default": 30.0},
            "tolerance": {"type": "float", "default": 2.0},
            "hold": {"type": "float", "default": 33.0},
            "first_byte_timeout": {"type": "float", "default": 5.0},
            "proxy": {"type": "bool", "default": True},
            "backend": {"type": "bool", "default": True},
            "probe": {"type": "bool", "default": True},
            "server_name": {"type": "str", "default": ""},
            "url": {"type": "str", "default": ""},
            "resolve": {"type": "str", "default": ""},
            "cacert": {"type": "str", "default": ""},
            "backend_url": {"type": "str", "default": ""},
            "backend_unit": {"type": "str", "default": ""},
            "access_log": {"type": "str", "default": ""},
        },
        supports_check_mode=True,  # reads only: the same run in check mode
    )
    params = dict(module.params)
    if not params["paths"] or any(not p.startswith("/") for p in params["paths"]):
        module.fail_json(msg=f"paths must be absolute request paths, got {params['paths']}")

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            rc, out, err = module.run_command(
                argv,
                check_rc=False,
                handle_exceptions=False,
                errors="surrogate_or_replace",
                expand_user_and_vars=False,
                environ_update={"LC_ALL": "C", "SYSTEMD_COLORS": "0"},
            )
        except OSError as exc:  # a command that is not there is evidence, not a crash
            return 127, "", str(exc)
        return rc, out, err

    def which(name: str) -> str | None:
        return module.get_bin_path(name, opt_dirs=NGINX_DIRS)

    try:
        report = diagnose(params, run, which)
    except ValueError as exc:  # invalid since, mostly
        module.fail_json(msg=f"invalid parameter: {exc}")
    module.exit_json(changed=False, report=report, msg=report["sentence"])


if __name__ == "__main__":
    main()
