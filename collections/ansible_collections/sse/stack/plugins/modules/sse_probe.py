#!/usr/bin/python
"""Ansible module wrapping the shared SSE probe (the collection's module_utils sseprobe)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sse_probe
short_description: Hold a Server-Sent Events stream and verify it
description:
  - Opens one HTTP(S) request to an SSE endpoint, holds the stream for O(hold) seconds and
    checks the status, the content type, the time to the first body byte, the first body line
    (normally the C(:ok) comment), the gaps between C(:keepalive) comments and that the stream
    stays open.
  - Each failure is reported under one check name - C(connect), C(tls), C(status),
    C(content_type), C(first_byte), C(first_comment), C(keepalive), C(stream_closed),
    C(protocol).
  - The probe is read-only, so it also runs in check mode, and it never reports C(changed).
  - By default failed checks do not fail the task; inspect RV(ok) and RV(failures), or set
    O(fail_on_error=true).
  - The same probe is available on the controller as C(sseprobe check) (C(make venv) installs
    it into C(.venv/bin)); only the check's module_utils are shipped to the target.
options:
  url:
    description: http:// or https:// URL of the event stream.
    type: str
    required: true
  hold:
    description: Seconds to hold the stream, counted from sending the request.
    type: float
    default: 35
  keepalive_interval:
    description: Expected seconds between C(:keepalive) comments.
    type: float
    default: 30
  tolerance:
    description: Extra seconds allowed on top of O(keepalive_interval) before a gap fails.
    type: float
    default: 2
  first_byte_timeout:
    description: Seconds allowed for connecting and for the first body byte.
    type: float
    default: 5
  expect_first:
    description: Required first body line; an empty string disables the check.
    type: str
    default: ":ok"
  cacert:
    description: CA bundle used instead of the system store to verify an https server.
    type: path
  insecure:
    description: Do not verify the server certificate.
    type: bool
    default: false
  headers:
    description: Extra request headers.
    type: dict
    default: {}
  resolve:
    description:
      - C(HOST:PORT:ADDR), like curl C(--resolve) - connect to ADDR while keeping HOST for the
        Host header, SNI and certificate verification.
    type: str
  fail_on_error:
    description: Fail the task when any check fails.
    type: bool
    default: false
author:
  - sse-deploy maintainers
"""

EXAMPLES = r"""
- name: Verify the stream through nginx on this host
  sse_probe:
    url: https://events.example.test/stream
    resolve: events.example.test:443:127.0.0.1
    cacert: /etc/ssl/certs/internal-ca.pem
  register: probe

- name: Fail the play if the stream is unhealthy
  sse_probe:
    url: http://127.0.0.1:8000/stream
    hold: 35
    keepalive_interval: 30
    fail_on_error: true
"""

RETURN = r"""
ok:
  description: True when every check passed.
  returned: always
  type: bool
failures:
  description: Failed checks, in the order they were detected.
  returned: always
  type: list
  elements: dict
  sample: [{"check": "keepalive", "message": "33.10 s without a :keepalive comment or an event"}]
checks:
  description: Each check name mapped to pass, fail or skip (not evaluated).
  returned: always
  type: dict
status:
  description: HTTP status code, null when no response head was read.
  returned: always
  type: int
headers:
  description: Response headers, names lower-cased.
  returned: always
  type: dict
content_type:
  description: The Content-Type response header.
  returned: always
  type: str
first_line:
  description: The first line of the body.
  returned: always
  type: str
first_byte_ms:
  description: Milliseconds from sending the request to the first body byte, or null.
  returned: always
  type: float
comments:
  description: Number of comment lines.
  returned: always
  type: int
keepalives:
  description: Number of C(:keepalive) comment lines.
  returned: always
  type: int
max_gap_s:
  description: Longest gap without a keepalive, counted from the first body byte to the end.
  returned: always
  type: float
held_s:
  description: Seconds the stream was held.
  returned: always
  type: float
events:
  description: Number of dispatched events.
  returned: always
  type: int
last_event_id:
  description: Last event ID seen, or null.
  returned: always
  type: str
elapsed_s:
  description: Total seconds the probe took.
  returned: always
  type: float
url:
  description: The probed URL.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sse.stack.plugins.module_utils.sseprobe import ProbeConfig, check  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "hold": {"type": "float", "default": 35.0},
            "keepalive_interval": {"type": "float", "default": 30.0},
            "tolerance": {"type": "float", "default": 2.0},
            "first_byte_timeout": {"type": "float", "default": 5.0},
            "expect_first": {"type": "str", "default": ":ok"},
            "cacert": {"type": "path"},
            "insecure": {"type": "bool", "default": False},
            "headers": {"type": "dict", "default": {}},
            "resolve": {"type": "str"},
            "fail_on_error": {"type": "bool", "default": False},
        },
        supports_check_mode=True,  # read-only: probing in check mode is safe and useful
    )
    p = module.params
    try:
        config = ProbeConfig(
            url=p["url"],
            hold=p["hold"],
            keepalive_interval=p["keepalive_interval"],
            tolerance=p["tolerance"],
            first_byte_timeout=p["first_byte_timeout"],
            expect_first=p["expect_first"],
            cacert=p["cacert"],
            insecure=p["insecure"],
            headers=p["headers"],
            resolve=p["resolve"],
        )
    except ValueError as exc:
        # ConfigError messages start with the parameter name, e.g. "hold must be > 0".
        module.fail_json(msg=f"invalid parameter: {exc}", changed=False)
    result = check(config).to_dict()
    problems = "; ".join(f"{f['check']}: {f['message']}" for f in result["failures"])
    if problems and p["fail_on_error"]:
        module.fail_json(msg=problems, changed=False, **result)
    module.exit_json(changed=False, msg=problems or "all SSE checks passed", **result)


if __name__ == "__main__":
    main()
