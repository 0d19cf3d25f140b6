"""sse_nginx documents every public variable alike in defaults, argument_specs and README."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "sse_nginx"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"][
    "main"
]["options"]
README = (ROLE / "README.md").read_text()
ROW = re.compile(r"^\| `(sse_nginx_\w+)` \| (.*?) \| (.*?) \| (.*) \|$", re.M)
TABLE = {m.group(1): m.groups()[1:] for m in ROW.finditer(README.split("## Facts")[0])}


def test_same_variables_everywhere():
    assert set(DEFAULTS) == set(SPECS) == set(TABLE)


def test_every_variable_is_role_prefixed():
    assert all(name.startswith("sse_nginx_") for name in DEFAULTS)


def test_spec_defaults_match_defaults():
    for name, spec in SPECS.items():
        assert spec.get("default") == DEFAULTS[name], name


def test_specs_have_type_and_description():
    for name, spec in SPECS.items():
        assert spec.get("type") and spec.get("description"), name
        if spec["type"] == "list":
            assert spec.get("elements"), name
        for option, sub in spec.get("options", {}).items():
            assert sub.get("type") and sub.get("description"), f"{name}.{option}"


def test_readme_types_match_specs():
    for name, (_, kind, _) in TABLE.items():
        spec = SPECS[name]
        expected = f"list of {spec['elements']}" if spec["type"] == "list" else spec["type"]
        assert kind == expected, name


def test_readme_defaults_match():
    for name, (default, _, _) in TABLE.items():
        cell = default.strip("`")
        value = DEFAULTS[name]
        if isinstance(value, (list, int)):
            assert yaml.safe_load(cell) == value, name
        else:
            assert cell == (value or '""'), name
