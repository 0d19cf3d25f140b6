"""A role's interface is written once: meta/argument_specs.yml.

For every role under roles/ with meta/argument_specs.yml and a README.md:
- the README's variables table is what tools/role_docs.py generates from the spec
  (`python tools/role_docs.py --check`, as `make lint` runs it);
- defaults/main.yml sets exactly the options of the `main` entry point, to the spec's
  `default` (templated values included, as written);
- the other entry points take options of `main`, defined alike (YAML anchors);
- every option is role-prefixed, typed (lists with their element type) and described.
The generator itself is tested on small specs and on a copy of a role.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
TOOL = ROOT / "tools" / "role_docs.py"
sys.path.insert(0, str(TOOL.parent))  # tools/ is not a package

import role_docs  # noqa: E402

DOCUMENTED = [role.name for role in role_docs.documented_roles(ROLES)]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def spec(role: str) -> dict[str, Any]:
    return _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]


def defaults(role: str) -> dict[str, Any]:
    return _yaml(ROLES / role / "defaults" / "main.yml") or {}


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False
    )


def test_some_role_is_documented() -> None:
    assert {"sse_backend", "sse_nginx", "sse_verify", "sse_diagnose"} <= set(DOCUMENTED)


def test_readmes_are_generated_from_the_specs() -> None:
    checked = run_tool("--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("role", DOCUMENTED)
def test_defaults_are_the_spec_defaults(role: str) -> None:
    options = spec(role)["main"]["options"]
    values = defaults(role)
    assert sorted(set(options) - set(values)) == [], "in argument_specs, not in defaults/main.yml"
    assert sorted(set(values) - set(options)) == [], "in defaults/main.yml, not in argument_specs"
    wrong = {
        name: {"argument_specs": option.get("default"), "defaults/main.yml": values[name]}
        for name, option in options.items()
        if option.get("default") != values[name]
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
        if option != main.get(name)
    ]
    assert wrong == [], "not an option of main, or defined differently (use main's anchor)"


def _untyped(options: dict[str, Any], prefix: str = "") -> list[str]:
    wrong = []
    for name, option in options.items():
        if not option.get("type") or not option.get("description"):
            wrong.append(f"{prefix}{name}: type and description")
        if option.get("type") == "list" and not option.get("elements"):
            wrong.append(f"{prefix}{name}: elements")
        wrong += _untyped(option.get("options") or {}, f"{prefix}{name}.")
    return wrong


@pytest.mark.parametrize("role", DOCUMENTED)
def test_options_are_prefixed_typed_and_described(role: str) -> None:
    for entry, entry_spec in spec(role).items():
        options = entry_spec.get("options") or {}
        assert [name for name in options if not name.startswith(f"{role}_")] == [], entry
        assert _untyped(options) == [], entry


# --- the generator -------------------------------------------------------------------

SMALL = yaml.safe_load(
    textwrap.dedent(
        """
        main:
          options:
            demo_mode: &mode
              type: str
              default: fast
              choices: [fast, safe]
              description: C(safe) waits for I(every) host.
            demo_sites:
              type: list
              elements: dict
              default: [{path: /a}]
              description: [Sites., "Each one a B(site)."]
              options:
                path: {type: str, required: true, description: "C(/x|/y) prefix"}
            demo_version: {type: str, default: "2.1", description: Release.}
            demo_home: {type: str, default: "{{ lookup('env', 'HOME') }}/x", description: Home.}
          mutually_exclusive: [[demo_mode, demo_version]]
          required_if: [[demo_mode, safe, [demo_sites]]]
        drain:
          options:
            demo_mode: *mode
        """
    )
)

SMALL_RENDERED = """\
| Variable | Type | Default | Required | Description |
| --- | --- | --- | --- | --- |
| `demo_mode` | str, one of `fast`, `safe` | `fast` | no | `safe` waits for *every* host. |
| `demo_sites` | list of dict | `[{path: /a}]` | no | Sites. Each one a **site**. |
| `demo_sites[].path` | str |  | yes | `/x\\|/y` prefix |
| `demo_version` | str | `"2.1"` | no | Release. |
| `demo_home` | str | `"{{ lookup('env', 'HOME') }}/x"` | no | Home. |

Entry points (`tasks_from`) other than `main` take:

- `drain`: `demo_mode`.

Rules between variables:

- `main`: `demo_mode`, `demo_version` exclude each other.
- `main`: `demo_sites` required when `demo_mode` is `safe`.
"""


def test_render_a_small_spec() -> None:
    assert role_docs.render(SMALL) == SMALL_RENDERED


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("sse", "sse"),
        ("", '""'),
        ("1.0.0", '"1.0.0"'),  # bare, 2.1 would be a float
        ("30", '"30"'),
        (":ok", '":ok"'),
        ("yes", '"yes"'),  # a bool to YAML 1.1
        ("127.0.0.1:8000", "127.0.0.1:8000"),
        ("{{ x }}", '"{{ x }}"'),
        (30, "30"),
        (2.5, "2.5"),
        (True, "true"),
        ([], "[]"),
        ({}, "{}"),
        (["a", "b c"], "[a, b c]"),
        ([{"path": "/a", "t": "1h"}], "[{path: /a, t: 1h}]"),
    ],
)
def test_defaults_are_shown_as_yaml_that_reads_back(value: Any, shown: str) -> None:
    assert role_docs.flow_yaml(value) == shown
    assert yaml.safe_load(shown) == value


def test_markup() -> None:
    text = "C(a) I(b) B(c) U(https://x) L(the docs,https://y) V(v) O(o=1) E(HOME) RV(r)"
    assert role_docs.markup(text) == (
        "`a` *b* **c** <https://x> [the docs](https://y) `v` `o=1` `HOME` `r`"
    )
    assert role_docs.markup("API(x) and MAC(y)") == "API(x) and MAC(y)"  # whole words only


@pytest.fixture
def role_copy(tmp_path: Path) -> Path:
    """roles/sse_verify copied (meta and README) into a roles folder of its own."""
    for part in ("meta", "README.md"):
        source = ROLES / "sse_verify" / part
        target = tmp_path / "sse_verify" / part
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return tmp_path / "sse_verify"


def test_check_fails_on_a_hand_edited_table_and_a_run_repairs_it(role_copy: Path) -> None:
    readme = role_copy / "README.md"
    committed = readme.read_text()
    readme.write_text(committed.replace("| Seconds a keepalive may be late. |", "| Edited. |"))
    roles_dir = str(role_copy.parent)

    checked = run_tool("--check", "--roles-dir", roles_dir)
    assert checked.returncode == 1
    assert f"{readme}: variables table differs" in checked.stderr
    assert readme.read_text() != committed  # --check changes nothing

    assert run_tool("--roles-dir", roles_dir).returncode == 0
    assert readme.read_text() == committed
    assert run_tool("--check", "--roles-dir", roles_dir).returncode == 0


def test_a_spec_change_shows_in_the_table(role_copy: Path) -> None:
    specs = role_copy / "meta" / "argument_specs.yml"
    specs.write_text(specs.read_text().replace("default: 35", "default: 40"))
    roles_dir = str(role_copy.parent)
    assert run_tool("--check", "--roles-dir", roles_dir).returncode == 1
    assert run_tool("--roles-dir", roles_dir).returncode == 0
    assert "| `sse_verify_hold` | float | `40` | no |" in (role_copy / "README.md").read_text()


def test_a_readme_without_markers_is_an_error(role_copy: Path) -> None:
    readme = role_copy / "README.md"
    readme.write_text(readme.read_text().replace(role_docs.END, ""))
    for args in (["--check"], []):
        ran = run_tool(*args, "--roles-dir", str(role_copy.parent))
        assert ran.returncode == 1
        assert "no generated part: put a line <!-- BEGIN generated" in ran.stderr
