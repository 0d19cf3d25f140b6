"""Filters that read a hashed dependency lock (pip's requirements format, as
`uv pip compile --generate-hashes` and `pip-compile --generate-hashes` write it) for one
target Python, on the controller (roles/sse_backend/tasks/build.yml).

    {{ text | sse.stack.lock_problems }}            -> ["line 3: foo>=1 is not pinned with =="]
    {{ text | sse.stack.lock_for_target(target) }}  -> the entries whose markers hold there
    {{ target | sse.stack.wheel_platforms }}        -> ["manylinux_2_36_x86_64", ...]

A target is what tasks/build.yml reads from the host's `python3`: `python` ("3.13"),
`python_full` ("3.13.5"), `implementation` ("cpython"), `machine` ("x86_64") and `glibc`
("2.41"). `lock_for_target` evaluates each entry's environment marker for that Python
(pip evaluates markers for the Python it runs in, not for `--python-version`) and writes
every entry that applies as `name==version` with its hashes, markers dropped.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError
from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement

_HASH = re.compile(r"--hash[=\s]+(\S+)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_OLDEST_GLIBC_MINOR = 5  # manylinux1 is glibc 2.5
_LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}


def _entries(text: str) -> list[tuple[int, str]]:
    """(first line number, logical line without comments) of each entry; a trailing
    backslash continues a line, as pip reads it."""
    entries: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(str(text).splitlines(), 1):
        line = _COMMENT.sub("", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            entries.append((start, logical))
    if pending.strip():
        entries.append((start, pending.strip()))
    return entries


def _parse(number: int, logical: str) -> tuple[Requirement | None, list[str], str]:
    """The requirement, its hashes, and a problem ("" when none)."""
    hashes = _HASH.findall(logical)
    spec = _HASH.sub("", logical).strip()
    if spec.startswith("-"):
        return None, hashes, f"line {number}: option {spec.split()[0]} (a lock holds entries only)"
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as error:
        return None, hashes, f"line {number}: {spec!r} is not a requirement ({error})"
    pins = list(requirement.specifier)
    if requirement.url or len(pins) != 1 or pins[0].operator not in ("==", "==="):
        return requirement, hashes, f"line {number}: {spec} is not pinned with =="
    if "*" in pins[0].version:
        return requirement, hashes, f"line {number}: {spec} is not pinned to one version"
    if not hashes:
        return requirement, hashes, f"line {number}: {requirement.name} has no --hash"
    return requirement, hashes, ""


def lock_problems(text: Any) -> list[str]:
    """What keeps `text` from being a lock pip installs with --require-hashes: an entry
    not pinned with ==, without a hash, an option line, or no entry at all."""
    problems = [
        problem
        for number, line in _entries(str(text))
        for problem in [_parse(number, line)[2]]
        if problem
    ]
    if not _entries(str(text)):
        problems.append("it has no entry")
    return problems


def _environment(target: dict[str, Any]) -> dict[str, str]:
    python = str(target["python"])
    full = str(target.get("python_full") or f"{python}.0")
    implementation = str(target.get("implementation") or "cpython")
    return {
        "implementation_name": implementation,
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": str(target["machine"]),
        "platform_python_implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(
            implementation, implementation
        ),
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": python,
        "sys_platform": "linux",
        "extra": "",
    }


def lock_for_target(text: Any, target: dict[str, Any]) -> str:
    """The lock's entries that apply on `target`, one `name==version` with its hashes
    each; a lock with a problem (see lock_problems) raises."""
    problems = lock_problems(text)
    if problems:
        raise AnsibleFilterError("not a hashed lock: " + "; ".join(problems))
    environment = _environment(target)
    kept: list[str] = []
    for number, logical in _entries(str(text)):
        requirement, hashes, _ = _parse(number, logical)
        assert requirement is not None  # lock_problems found none
        try:
            applies = requirement.marker is None or Marker(str(requirement.marker)).evaluate(
                environment
            )
        except InvalidMarker as error:  # pragma: no cover - Requirement parsed it already
            raise AnsibleFilterError(f"line {number}: {error}") from error
        if not applies:
            continue
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pin = f"{requirement.name}{extras}{requirement.specifier}"
        kept.append(" \\\n".join([pin, *(f"    --hash={value}" for value in hashes)]))
    return "".join(entry + "\n" for entry in kept)


def wheel_platforms(target: dict[str, Any]) -> list[str]:
    """pip's --platform values for a glibc Linux target: manylinux_2_N down to 2_5, and
    the legacy manylinux2014/2010/1 names (pip expands none of them by itself)."""
    machine = str(target["machine"])
    match = re.fullmatch(r"(\d+)\.(\d+)", str(target.get("glibc", "")))
    if not match or match.group(1) != "2":
        raise AnsibleFilterError(f"target glibc {target.get('glibc')!r} is not a glibc 2.N version")
    newest = int(match.group(2))
    tags = [
        f"manylinux_2_{minor}_{machine}" for minor in range(newest, _OLDEST_GLIBC_MINOR - 1, -1)
    ]
    tags += [
        f"{legacy}_{machine}" for legacy, minor in _LEGACY_MANYLINUX.items() if minor <= newest
    ]
    return tags


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "lock_problems": lock_problems,
            "lock_for_target": lock_for_target,
            "wheel_platforms": wheel_platforms,
        }
