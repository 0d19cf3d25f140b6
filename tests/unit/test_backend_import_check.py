"""The release completeness check follows sse_backend_worker_class and Gunicorn's version.

`__sse_backend_import_check` (roles/sse_backend/vars/main.yml) is the argv that decides
whether a release is complete before `current` switches to it (release.yml). Its script is
run here as the role runs it (`python -B -c SCRIPT app worker minimum module`), with this
checkout's virtualenv standing in for a release's: it passes for Gunicorn's own gthread and
a Uvicorn worker, and refuses, saying what the app's dependencies need, a worker module
that does not import (gevent is not installed here), a Gunicorn older than the minimum, and
an app module that is not there. Cost: well under a second a case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

VARS = Path(__file__).resolve().parents[2] / "roles/sse_backend/vars/main.yml"
ROLE_VARS = yaml.safe_load(VARS.read_text())
SCRIPT: str = ROLE_VARS["__sse_backend_import_check"][3]
MODULES: dict[str, str] = ROLE_VARS["__sse_backend_worker_modules"]
MINIMUM: str = ROLE_VARS["__sse_backend_gunicorn_minimum"]


def check(app: str, worker: str, minimum: str = MINIMUM) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-B", "-c", SCRIPT, app, worker, minimum, MODULES[worker]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("worker", ["gthread", "uvicorn_worker.UvicornH11Worker"])
def test_complete_release_passes(worker: str) -> None:
    done = check("json", worker)
    assert done.returncode == 0, done.stderr


def test_worker_module_missing_is_named() -> None:
    # gevent is not installed in this virtualenv: the case means something only then
    assert subprocess.run([sys.executable, "-c", "import gevent"], check=False).returncode != 0
    done = check("json", "gevent")
    assert done.returncode != 0
    assert "sse_backend_worker_class gevent" in done.stderr, done.stderr
    assert "gevent" in done.stderr and "among the app dependencies" in done.stderr, done.stderr


def test_old_gunicorn_is_refused_naming_the_requirement() -> None:
    done = check("json", "gthread", minimum="99.0")
    assert done.returncode != 0
    assert "is older than 99.0" in done.stderr and "gunicorn>=99.0" in done.stderr, done.stderr


def test_missing_app_module_is_named() -> None:
    done = check("no_such_app_module", "gthread")
    assert done.returncode != 0
    assert "no module named no_such_app_module" in done.stderr, done.stderr
