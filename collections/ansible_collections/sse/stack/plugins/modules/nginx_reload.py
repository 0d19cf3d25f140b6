#!/usr/bin/python
"""Ansible module: reload nginx and prove the new configuration is live."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nginx_reload
short_description: Reload nginx and prove the new configuration is live
description:
  - Runs C(systemctl reload nginx), which only signals the master and exits 0 even when the
    master cannot apply the new configuration (a C(listen) on a port in use passes
    C(nginx -t), which binds nothing).
  - Then waits until a new generation of workers runs and no worker from before takes
    connections (live), or an C([emerg]) or C([alert]) line appears in O(error_log) after
    the reload (failed; nginx keeps serving the previous configuration), or O(timeout)
    passes (failed).
  - Always reports C(changed) (a reload happened); fails with the cause unless
    O(fail_on_error=false).
options:
  error_log:
    description: The error log the nginx master writes to (C(error_log) in nginx.conf).
    type: path
    default: /var/log/nginx/error.log
  timeout:
    description: Seconds to wait for the new generation of workers.
    type: float
    default: 30
  fail_on_error:
    description: Fail the task when the reload did not take effect.
    type: bool
    default: true
author: sse-deploy
"""

RETURN = r"""
live:
  description: Whether the new configuration is live.
  returned: always
  type: bool
cause:
  description: Why the reload did not take effect (nginx's own message when it logged one).
  returned: always
  type: str
  sample: "bind() to 0.0.0.0:8081 failed (98: Address already in use)"
waited_s:
  description: Seconds from the reload to the verdict.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sse.stack.plugins.module_utils.nginx_reload import (  # noqa: E402
    reload_and_prove,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "error_log": {"type": "path", "default": "/var/log/nginx/error.log"},
            "timeout": {"type": "float", "default": 30.0},
            "fail_on_error": {"type": "bool", "default": True},
        },
        supports_check_mode=False,
    )

    def reload() -> tuple[int, str]:
        rc, out, err = module.run_command(["systemctl", "reload", "nginx"])
        return rc, out + err

    result = reload_and_prove(reload, module.params["error_log"], module.params["timeout"])
    answer = dict(changed=True, **result.to_dict())
    if not result.live and module.params["fail_on_error"]:
        module.fail_json(msg=f"nginx did not apply the new configuration: {result.cause}", **answer)
    module.exit_json(**answer)


if __name__ == "__main__":
    main()
