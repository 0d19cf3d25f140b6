"""Every module's DOCUMENTATION, EXAMPLES and RETURN is YAML that ansible-doc can read.

ansible-lint only logs "Unable to parse documentation" and still exits 0, so a broken
block would otherwise land unnoticed (a plain scalar with ": " in it did, once)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted(
    (
        Path(__file__).resolve().parents[2]
        / "collections/ansible_collections/sse/stack/plugins/modules"
    ).glob("*.py")
)


def doc_blocks(path: Path) -> dict[str, str]:
    blocks: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in (
                    "DOCUMENTATION",
                    "EXAMPLES",
                    "RETURN",
                ):
                    blocks[target.id] = node.value.value
    return blocks


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_module_documentation_is_yaml(path: Path) -> None:
    blocks = doc_blocks(path)
    assert "DOCUMENTATION" in blocks, f"{path.name} has no DOCUMENTATION"
    for name, text in blocks.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as error:
            pytest.fail(f"{path.name} {name} is not YAML: {error}")
    doc = yaml.safe_load(blocks["DOCUMENTATION"])
    assert doc["module"] == path.stem
