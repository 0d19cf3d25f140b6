#!/usr/bin/env python3
"""Write each role's README variables table from its meta/argument_specs.yml.

The argument spec is the one source of a role's interface: ansible-core checks every
input against it at role start, and this tool renders it into the part of
roles/<role>/README.md between the two marker lines

    <!-- BEGIN generated: variables (tools/role_docs.py) -->
    <!-- END generated -->

as a table (Variable | Type | Default | Required | Description; choices, list element
types and the suboptions of a list of dicts each on their own row), followed by what the
entry points other than `main` take and the spec's constraints between options. Every
role under roles/ with meta/argument_specs.yml and a README.md is handled; a README
without the markers is an error (add the two lines where the table goes, then run the
tool). Option descriptions use Ansible's markup (C(code), I(italic), B(bold), U(url),
L(text,url)); defaults are shown as YAML.

    python tools/role_docs.py            rewrite the generated parts
    python tools/role_docs.py --check    exit 1 listing the READMEs that differ
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN generated: variables (tools/role_docs.py) -->"
END = "<!-- END generated -->"
MAIN = "main"

# Ansible's documentation markup -> Markdown. C() V() O() E() RV() are code; the
# semantic forms O(name=value) and P(fqcn#type) are shown as written.
_MARKUP = re.compile(r"\b(RV|[CVOEMPIBUL])\(([^)]*)\)")
_NUMERIC = re.compile(r"[0-9][0-9.]*")


def markup(text: str) -> str:
    """Ansible doc markup (C(x), I(x), B(x), U(url), L(text,url), ...) as Markdown."""

    def convert(match: re.Match[str]) -> str:
        kind, body = match.groups()
        if kind == "I":
            return f"*{body}*"
        if kind == "B":
            return f"**{body}**"
        if kind == "U":
            return f"<{body}>"
        if kind == "L":
            label, _, url = body.rpartition(",")
            return f"[{label.strip()}]({url.strip()})"
        return f"`{body}`"

    return _MARKUP.sub(convert, text)


def cell(text: str) -> str:
    """Text fit for one Markdown table cell: one line, `|` escaped (also in code spans)."""
    return " ".join(text.split()).replace("|", r"\|")


def describe(option: Mapping[str, Any]) -> str:
    description = option.get("description", "")
    if isinstance(description, str):
        description = [description]
    return cell(markup(" ".join(str(part) for part in description)))


def _plain(text: str) -> bool:
    """True when YAML reads `text` back as this string unquoted, also inside [ ] or { }.
    Versions (`1.0.0`) are quoted too: written bare, `2.1` would be a number."""
    if not text or text != text.strip() or "\n" in text or _NUMERIC.fullmatch(text):
        return False
    try:
        return yaml.safe_load(text) == text and yaml.safe_load(f"[{text}]") == [text]
    except yaml.YAMLError:
        return False


def flow_yaml(value: Any) -> str:
    """A value as one line of YAML (flow style), as a user would write it in vars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if _plain(value) else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{flow_yaml(k)}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow_yaml(item) for item in value) + "]"
    raise TypeError(f"cannot show a default of type {type(value).__name__}: {value!r}")


def type_of(option: Mapping[str, Any]) -> str:
    kind = str(option.get("type", "str"))
    if kind == "list" and option.get("elements"):
        kind = f"list of {option['elements']}"
    choices = option.get("choices")
    if choices:
        kind += ", one of " + ", ".join(f"`{flow_yaml(choice)}`" for choice in choices)
    return cell(kind)


def rows(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One table row per option, then one per suboption (`name[].sub` in a list's items)."""
    lines = []
    for name, option in options.items():
        default = f"`{cell(flow_yaml(option['default']))}`" if "default" in option else ""
        required = "yes" if option.get("required") else "no"
        cells = [f"`{prefix}{name}`", type_of(option), default, required, describe(option)]
        lines.append("| " + " | ".join(cells) + " |")
        if option.get("options"):
            inner = f"{prefix}{name}[]." if option.get("type") == "list" else f"{prefix}{name}."
            lines.extend(rows(option["options"], inner))
    return lines


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def constraints(entry: str, spec: Mapping[str, Any]) -> list[str]:
    """The entry point's rules between options (mutually_exclusive, required_if, ...)."""
    where = f"`{entry}`: "
    lines = [
        where + f"{_names(group)} exclude each other."
        for group in spec.get("mutually_exclusive") or []
    ]
    lines += [
        where + f"{_names(group)} are set together."
        for group in spec.get("required_together") or []
    ]
    lines += [
        where + f"one of {_names(group)} is required."
        for group in spec.get("required_one_of") or []
    ]
    for rule in spec.get("required_if") or []:
        key, value, needed = rule[0], rule[1], rule[2]
        which = "one of " if len(rule) > 3 and rule[3] else ""
        lines.append(
            where + f"{which}{_names(needed)} required when `{key}` is `{flow_yaml(value)}`."
        )
    for key, needed in (spec.get("required_by") or {}).items():
        needed = [needed] if isinstance(needed, str) else needed
        lines.append(where + f"`{key}` requires {_names(needed)}.")
    return lines


def render(specs: Mapping[str, Any]) -> str:
    """The generated part of a README for one role's `argument_specs` mapping."""
    options: dict[str, Any] = {}
    for entry in sorted(specs, key=lambda name: name != MAIN):  # main's order first
        for name, option in (specs[entry].get("options") or {}).items():
            options.setdefault(name, option)
    lines = [
        "| Variable | Type | Default | Required | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += rows(options)

    # entry points taking the same variables share a line
    takes: dict[tuple[str, ...], list[str]] = {}
    for entry, spec in specs.items():
        if entry != MAIN:
            takes.setdefault(tuple(spec.get("options") or ()), []).append(entry)
    if takes:
        lines += ["", f"Entry points (`tasks_from`) other than `{MAIN}` take:", ""]
        for names, entries in takes.items():
            what = f"every variable of `{MAIN}`" if list(names) == list(options) else _names(names)
            lines.append(f"- {_names(entries)}: {what or 'no variable'}.")
    rules = [line for entry, spec in specs.items() for line in constraints(entry, spec)]
    if rules:
        lines += ["", "Rules between variables:", ""] + [f"- {rule}" for rule in rules]
    return "\n".join(lines) + "\n"


def regenerate(readme: str, generated: str) -> str:
    """The README with the part between the markers replaced (ValueError: no markers)."""
    begin = readme.find(BEGIN + "\n")
    end = readme.find("\n" + END, begin)
    if begin < 0 or end < 0 or readme.count(BEGIN) != 1:
        raise ValueError(
            f"no generated part: put a line {BEGIN} and, below it, a line {END} where the"
            " variables table goes (under '## Variables'), then run python tools/role_docs.py"
        )
    head = readme[: begin + len(BEGIN) + 1]
    return f"{head}\n{generated}\n{readme[end + 1 :]}"


def documented_roles(roles_dir: Path) -> list[Path]:
    """Roles with meta/argument_specs.yml (or .yaml) and a README.md."""
    return sorted(
        role
        for role in roles_dir.iterdir()
        if (role / "README.md").is_file() and spec_file(role) is not None
    )


def spec_file(role: Path) -> Path | None:
    for name in ("argument_specs.yml", "argument_specs.yaml"):
        if (role / "meta" / name).is_file():
            return role / "meta" / name
    return None


def role_readme(role: Path) -> tuple[str, str]:
    """(README as committed, README as generated) of one role."""
    path = spec_file(role)
    if path is None:
        raise ValueError("no meta/argument_specs.yml")
    specs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("argument_specs")
    if not isinstance(specs, dict) or not specs:
        raise ValueError(f"{path.relative_to(role.parent)}: no `argument_specs` mapping")
    current = (role / "README.md").read_text(encoding="utf-8")
    return current, regenerate(current, render(specs))


def shown(path: Path) -> str:
    """A path as the messages name it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a README differs"
    )
    parser.add_argument("--roles-dir", type=Path, default=ROOT / "roles")
    parser.add_argument("roles", nargs="*", help="role names (default: every documented role)")
    args = parser.parse_args(argv)
    roles = [args.roles_dir / name for name in args.roles] or documented_roles(args.roles_dir)
    problems = []
    for role in roles:
        readme = role / "README.md"
        try:
            current, wanted = role_readme(role)
        except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
            problems.append(f"{shown(readme)}: {error}")
            continue
        if current == wanted:
            continue
        if args.check:
            problems.append(
                f"{shown(readme)}: variables table differs from meta/argument_specs.yml"
            )
        else:
            readme.write_text(wanted, encoding="utf-8")
            print(f"rewrote {shown(readme)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and args.check:
        print("run: python tools/role_docs.py", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
