"""Each role's README variables table agrees with meta/argument_specs.yml and defaults/main.yml.

Checked for every role under roles/ that has both meta/argument_specs.yml and README.md:
the same variable names in the `main` entry point, in defaults/main.yml and in the README's
table (both ways), the README's default column equal to the value in defaults/main.yml, and
the argument spec's default equal to it too (except where defaults/main.yml computes the
value with a template; the spec then shows a readable stand-in). Options of the other entry
points must be options of `main` with the same default.

README table format, under a heading "## Variables":

    | Variable | Default | Description |
    | --- | --- | --- |
    | `sse_x_name` | `value as YAML` | what it does |
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
DOCUMENTED = sorted(
    spec.parents[1].name
    for spec in ROLES.glob("*/meta/argument_specs.yml")
    if (spec.parents[1] / "README.md").is_file()
)
ROW = re.compile(r"^\|\s*`(?P<name>[A-Za-z_][A-Za-z0-9_]*)`\s*\|\s*`(?P<default>[^`]*)`\s*\|")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def spec(role: str) -> dict[str, Any]:
    return _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]


def defaults(role: str) -> dict[str, Any]:
    return _yaml(ROLES / role / "defaults" / "main.yml") or {}


def readme_table(role: str) -> list[tuple[str, Any]]:
    """(name, default) of each row of the table under "## Variables", in order."""
    text = (ROLES / role / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Variables\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"roles/{role}/README.md has no '## Variables' section"
    rows = []
    for line in section.group(1).splitlines():
        match = ROW.match(line.strip())
        if match:
            rows.append((match["name"], yaml.safe_load(match["default"])))
        elif line.startswith("| `"):
            pytest.fail(f"roles/{role}/README.md: unreadable table row: {line}")
    assert rows, f"roles/{role}/README.md: no rows in the variables table"
    return rows


def test_some_role_is_documented():
    assert DOCUMENTED, "no role has both meta/argument_specs.yml and README.md"


@pytest.mark.parametrize("role", DOCUMENTED)
def test_same_variables_everywhere(role: str) -> None:
    options = set(spec(role)["main"]["options"])
    in_defaults = set(defaults(role))
    names = [name for name, _ in readme_table(role)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == [], f"README lists twice: {duplicates}"
    in_readme = set(names)
    assert options - in_defaults == set(), "in argument_specs, not in defaults/main.yml"
    assert in_defaults - options == set(), "in defaults/main.yml, not in argument_specs"
    assert options - in_readme == set(), "in argument_specs, not in the README table"
    assert in_readme - options == set(), "in the README table, not in argument_specs"


@pytest.mark.parametrize("role", DOCUMENTED)
def test_readme_defaults_are_the_defaults(role: str) -> None:
    values = defaults(role)
    wrong = {
        name: {"README": default, "defaults/main.yml": values.get(name)}
        for name, default in readme_table(role)
        if name in values and default != values[name]
    }
    assert wrong == {}


@pytest.mark.parametrize("role", DOCUMENTED)
def test_spec_defaults_are_the_defaults(role: str) -> None:
    values = defaults(role)
    wrong = {
        name: {"argument_specs": option.get("default"), "defaults/main.yml": values[name]}
        for name, option in spec(role)["main"]["options"].items()
        if name in values
        and not (isinstance(values[name], str) and "{{" in values[name])
        and option.get("default") != values[name]
    }
    assert wrong == {}


@pytest.mark.parametrize("role", DOCUMENTED)
def test_other_entry_points_use_main_options(role: str) -> None:
    specs = spec(role)
    main = specs["main"]["options"]
    wrong = [
        f"{entry}: {name}"
        for entry, entry_spec in specs.items()
        if entry != "main"
        for name, option in (entry_spec.get("options") or {}).items()
        if name not in main or option.get("default") != main[name].get("default")
    ]
    assert wrong == []
