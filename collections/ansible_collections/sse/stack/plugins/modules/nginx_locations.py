#!/usr/bin/python
"""Ansible module: put the SSE locations into an nginx the role does not own."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nginx_locations
short_description: Put SSE locations into a server block the role does not own, never live-broken
description:
  - Reads the live configuration as nginx does (C(nginx -T)); fails when nginx rejects it
    already, unless what nginx rejects is one of the role's own O(files) (edited by hand,
    say) - those get their planned content first and nginx reads the configuration again.
  - Plans every change in memory first - the role's own O(files) (rendered on the
    controller), and with O(site_file) one marked C(include) line for
    O(snippet) in the one server block whose C(server_name) names O(server_name) - and
    checks, on the configuration with those changes in, that every O(paths) entry is
    served by the snippet's own location exactly as nginx picks locations (an C(=),
    C(^~), regular expression or duplicate location that would win is quoted with its file
    and line). Nothing is written when a check fails.
  - Then writes the changed files in place, each old content kept, and runs C(nginx -t),
    which reads every file of the configuration including absolute includes. When nginx
    rejects it, every file is put back byte for byte (same mode, owner and times) and
    files the module created are removed, before the module fails quoting nginx; nginx is
    never reloaded here (the caller reloads on C(changed)).
  - O(state=absent) takes the include line out of O(site_file) and removes O(files) from
    O(dest_dir), tested the same way.
options:
  files:
    description:
      - The role's own files, each C(path) (relative to O(dest_dir)) and C(content) (its
        whole text; ignored for O(state=absent)).
    type: list
    elements: dict
    required: true
  dest_dir:
    description: The nginx configuration folder the O(files) go to.
    type: path
    default: /etc/nginx
  snippet:
    description: Absolute path of the SSE locations' snippet (in O(dest_dir), one of O(files)).
    type: path
    required: true
  site_file:
    description: A server file nginx reads (a symlink's target is written); empty, none.
    type: str
    default: ""
  server_name:
    description: The server_name of the server block in O(site_file) that gets the include.
    type: str
    default: ""
  site:
    description: Site name, in the include line's marker comment.
    type: str
    required: true
  paths:
    description: The SSE location paths the snippet holds.
    type: list
    elements: str
    default: []
  state:
    description: C(present) or C(absent).
    type: str
    default: present
    choices: [present, absent]
author: sse-deploy
"""

RETURN = r"""
changed_files:
  description: Files written or removed (or that would be, in check mode).
  returned: always
  type: list
included_in:
  description: Server blocks that include the snippet (C(server NAMES at FILE:LINE)).
  returned: always
  type: list
"""

import os  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sse.stack.plugins.module_utils.nginx_locations import (  # noqa: E402
    LocationsError,
    dump_name,
    plan_include,
    remove_include,
    shadowing,
    simulate,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import (  # noqa: E402
    NginxSyntaxError,
    split_dump,
)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_like(
    path: str, content: bytes, like: os.stat_result | None, keep_times: bool = False
) -> None:
    """Replace ``path`` atomically; keep the old file's mode and owner (new: root 0644),
    and with ``keep_times`` its times (a restore: as if it was never touched)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sse-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if like is not None:
            os.chmod(tmp, like.st_mode & 0o7777)
            os.chown(tmp, like.st_uid, like.st_gid)
            if keep_times:
                os.utime(tmp, ns=(like.st_atime_ns, like.st_mtime_ns))
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _emerg(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    picked = [line for line in lines if "[emerg]" in line] or lines
    return " | ".join(picked)


class Transaction:
    """Files written or removed, each with what it was: rollback() puts every one back
    byte for byte (mode, owner and times too) and removes folders made for new files."""

    def __init__(self) -> None:
        self.before: dict[str, bytes | None] = {}
        self.stats: dict[str, os.stat_result] = {}
        self.made_dirs: list[str] = []

    def write(self, path: str, content: bytes | None) -> None:
        if path not in self.before:
            self.before[path] = _read(path)
            if self.before[path] is not None:
                self.stats[path] = os.stat(path)
        if content is None:
            if os.path.lexists(path):
                os.unlink(path)
            return
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            self.made_dirs.append(folder)
        _write_like(path, content, self.stats.get(path))

    def rollback(self) -> None:
        for path in reversed(list(self.before)):
            old = self.before[path]
            if old is None:
                if os.path.lexists(path):
                    os.unlink(path)
            else:
                _write_like(path, old, self.stats[path], keep_times=True)
        for folder in reversed(self.made_dirs):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        self.before.clear()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "dest_dir": {"type": "path", "default": "/etc/nginx"},
            "snippet": {"type": "path", "required": True},
            "site_file": {"type": "str", "default": ""},
            "server_name": {"type": "str", "default": ""},
            "site": {"type": "str", "required": True},
            "paths": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    present = p["state"] == "present"
    tx = Transaction()
    result: dict[str, Any] = {"changed": False, "changed_files": [], "included_in": []}

    def fail(msg: str, **extra: Any) -> NoReturn:
        """Put back what was written so far (nothing was reloaded), then fail."""
        restored = bool(tx.before)
        tx.rollback()
        if restored:
            rc, _, err = module.run_command(["nginx", "-t", "-q"])
            msg += "" if rc == 0 else f" -- after the restore nginx -t fails: {_emerg(err)}"
        module.fail_json(msg=msg, **result, **extra)
        raise AssertionError  # fail_json exits

    # planned content of the role's own files: bytes, or None (absent)
    own: dict[str, bytes | None] = {}
    for item in p["files"]:
        content = item.get("content")
        if present and not isinstance(content, str):
            module.fail_json(msg=f"files: {item.get('path')} has no content")
        own[os.path.join(p["dest_dir"], item["path"])] = (
            content.encode("utf-8") if present else None
        )

    rc, dump, err = module.run_command(["nginx", "-T"])
    if rc != 0:
        # a broken file of the role's own (e.g. edited by hand) is repaired: its planned
        # content goes in first; anything else broken is the server's to fix
        if not any(f" in {path}:" in err for path in own) or module.check_mode:
            module.fail_json(
                msg="nginx -t rejects the live configuration before any change, so the role "
                f"changes nothing; fix it first. nginx said: {_emerg(err)}"
            )
        for path, content in own.items():
            if _read(path) != content:
                tx.write(path, content)
        rc, dump, err = module.run_command(["nginx", "-T"])
        if rc != 0:
            fail(
                "nginx -t rejects the live configuration, also with the role's own files "
                f"rewritten, so every file is back as it was. nginx said: {_emerg(err)}"
            )

    planned = dict(own)
    if p["site_file"]:
        if dump_name(split_dump(dump), p["site_file"]) is None:
            fail(
                f"sse_nginx_site_file {p['site_file']} is not part of the configuration "
                "nginx loads (nginx -T does not list it): enable the site first (e.g. a "
                "symlink in sites-enabled/), or name the file nginx reads"
            )
        site_real = os.path.realpath(p["site_file"])
        text = (_read(site_real) or b"").decode("utf-8", errors="surrogateescape")
        try:
            new = (
                plan_include(text, p["site_file"], p["server_name"], p["site"], p["snippet"])
                if present
                else remove_include(text, p["site"])
            )
        except LocationsError as exc:
            fail(str(exc))
        planned[site_real] = new.encode("utf-8", errors="surrogateescape")

    if present:
        texts = {
            path: (None if data is None else data.decode("utf-8", errors="surrogateescape"))
            for path, data in planned.items()
        }
        try:
            plan = shadowing(simulate(dump, texts), p["snippet"], p["paths"])
        except NginxSyntaxError as exc:
            fail(f"the planned configuration cannot be read: {exc}")
        if plan.problems:
            fail(
                "the SSE locations would not win, so nothing was changed: "
                + " | ".join(plan.problems),
                problems=plan.problems,
            )
        for warning in plan.warnings:
            module.warn(warning)
        if not plan.included_in:
            module.warn(
                f"no server block includes {p['snippet']} yet: add 'include {p['snippet']};' "
                "to your server block, or set sse_nginx_site_file so the role adds it"
            )
        result["included_in"] = plan.included_in

    changed = [path for path in planned if _read(path) != planned[path]]
    result["changed_files"] = sorted(set(changed) | set(tx.before))
    result["changed"] = bool(result["changed_files"])
    if (not changed and not tx.before) or module.check_mode:
        module.exit_json(**result)

    try:
        for path in changed:
            tx.write(path, planned[path])
        rc, out, err = module.run_command(["nginx", "-t", "-q"])
    except OSError as exc:
        fail(f"writing failed, so every file is back as it was: {exc}")
    if rc != 0:
        fail(
            "nginx -t rejected the change, so every file is back as it was (nginx was not "
            f"reloaded and keeps serving the previous configuration). nginx said: "
            f"{_emerg(out + err)}"
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
