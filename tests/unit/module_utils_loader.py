"""Load a role's module_utils file under the name Ansible ships it as
(ansible.module_utils.<name>), so modules that import each other resolve as on a target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIAGNOSE_UTILS = ROOT / "roles" / "sse_diagnose" / "module_utils"
PROBE_UTILS = ROOT / "roles" / "sse_verify" / "module_utils"


def load_module_util(name: str, folder: Path = DIAGNOSE_UTILS):
    full = f"ansible.module_utils.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]
