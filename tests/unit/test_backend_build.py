"""The release's locked dependency set (issue 15), on the controller only: the role's
`build` entry point run by ansible-playbook against this machine (its `python3` is the
target Python), with a tiny package set served by `python -m http.server`'s handler on
127.0.0.1 as the package index (pip and uv both read its folder listings as a simple index).

- A no-change run builds a byte-identical archive even after the index gains a newer
  version of a dependency: with a lock given, with the lock the role resolved once for a
  source that has none, and with the archive rebuilt from scratch (no reuse).
- A wheel whose bytes are not the locked ones is refused: by the build (the index serves a
  tampered file) and by pip on the target (a tampered wheel in the release's wheelhouse,
  installed the way tasks/release.yml installs it).
- A locked package with no wheel for the target's Python fails the build naming the
  package and the Python, with nothing past the build run.
- With sse_backend_pip_index_url, pip installs the lock from the index with
  --require-hashes: the locked versions, and a changed file is refused.

Cost: about 80 s here (nine ansible-playbook runs of the build, two virtualenvs); no
container.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tripwire import RC_HOST_FAILED, ROOT, Played, role_playbook, run_ansible_json

HOST = "sse-build-target"
# the target Python: this machine's python3, which the build reads as the target's
TARGET_PYTHON = subprocess.run(
    ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
    capture_output=True,
    text=True,
    check=True,
).stdout.strip()
TARGET_TAG = "cp" + TARGET_PYTHON.replace(".", "")


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
    payload: str = "",
) -> Path:
    """A minimal, valid wheel (fixed time stamps, so the same arguments give the same bytes)."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{payload}",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        f"Root-Is-Purelib: true\nTag: {tag}\n",
    }
    record = (
        "".join(
            f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}\n"
            for path, text in files.items()
        )
        + f"{dist}.dist-info/RECORD,,\n"
    )
    files[f"{dist}.dist-info/RECORD"] = record
    wheel = folder / f"{dist}-{tag}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_of(*wheels: Path) -> str:
    """A hashed lock pinning these wheels (name==version --hash)."""
    return "".join(
        f"{w.name.split('-')[0]}=={w.name.split('-')[1]} \\\n    --hash=sha256:{sha256(w)}\n"
        for w in wheels
    )


class Index:
    """A folder served on 127.0.0.1 as a simple package index: simple/<name>/<files>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "simple").mkdir(parents=True)
        handler = partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name: str, version: str, **kwargs: Any) -> Path:
        return make_wheel(self.root / "simple" / name, name, version, **kwargs)

    def env(self) -> dict[str, str]:
        """pip and uv on the controller see this index only (no configuration file), and
        cache nothing."""
        return {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_FIND_LINKS": "",
            "PIP_INDEX_URL": self.url,
            "PIP_NO_CACHE_DIR": "1",
            "UV_DEFAULT_INDEX": self.url,
            "UV_NO_CACHE": "1",
        }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    served = Index(tmp_path / "index")
    yield served
    served.server.shutdown()


def build(workdir: Path, index: Index, **variables: Any) -> Played:
    """The role's `build` entry point on this machine as the target (local connection)."""
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = workdir / "inventory.json"  # JSON is YAML
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(json.dumps({"all": {"hosts": {HOST: host}}}))
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(variables))
    playbook = role_playbook(workdir, "sse_backend", "build")
    args = ["-i", str(inventory), str(playbook), "-e", f"@{extra}"]
    return run_ansible_json(workdir, args, index.env())


def archive(cache: Path) -> Path:
    (tar,) = cache.glob(f"sse-backend-*-{TARGET_TAG}-*.tar")
    return tar


def wheels_in(tar: Path) -> list[str]:
    with tarfile.open(tar) as packed:
        return sorted(Path(name).name for name in packed.getnames() if name.endswith(".whl"))


def status(played: Played, task: str) -> str:
    (found,) = [t.status for t in played.tasks if task in t.name]
    return found


def passed(played: Played) -> None:
    assert played.rc == 0 and not played.failed(), played.describe()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The source: a wheel on the controller that needs tinydep>=1."""
    return make_wheel(tmp_path / "source", "tinyapp", "1.0", requires=("tinydep>=1",))


def test_a_newer_dependency_upstream_changes_nothing(
    tmp_path: Path, index: Index, app: Path
) -> None:
    dep = index.add("tinydep", "1.0")
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_of(dep))
    cache = tmp_path / "cache"
    variables = {
        "sse_backend_source": str(app),
        "sse_backend_lock_file": str(lock),
        "sse_backend_controller_cache": str(cache),
    }
    first = build(tmp_path / "run1", index, **variables)
    passed(first)
    tar = archive(cache)
    before = tar.read_bytes()
    assert wheels_in(tar) == ["tinyapp-1.0-py3-none-any.whl", "tinydep-1.0-py3-none-any.whl"]
    shipped = tar.with_suffix(".lock").read_text()
    assert f"--hash=sha256:{sha256(app)}" in shipped and f"--hash=sha256:{sha256(dep)}" in shipped

    index.add("tinydep", "1.1")  # upstream moves on
    # the control: anything resolving from the ranges now picks 1.1
    resolved = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--no-header", "-"],
        input="tinydep>=1\n",
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **index.env()},
    ).stdout
    assert "tinydep==1.1" in resolved, resolved

    second = build(tmp_path / "run2", index, **variables)
    passed(second)
    assert tar.read_bytes() == before, "a no-change build changed the archive"
    # and built again from the lock and the index, not reused from the cache
    tar.unlink()
    third = build(tmp_path / "run3", index, **variables)
    passed(third)
    assert tar.read_bytes() == before, "a rebuild from the same lock changed the archive"


def test_a_source_without_a_lock_is_resolved_once_and_kept(
    tmp_path: Path, index: Index, app: Path
) -> None:
    index.add("tinydep", "1.0")
    cache = tmp_path / "cache"
    variables = {"sse_backend_source": str(app), "sse_backend_controller_cache": str(cache)}
    said = "Say that a lock was resolved"
    first = build(tmp_path / "run1", index, **variables)
    passed(first)
    assert status(first, said) == "ok", first.describe()
    (resolved,) = cache.glob("*.resolved.lock")
    entries = [
        line for line in resolved.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    assert "tinydep==1.0 \\" in entries, entries
    assert not [line for line in entries if line.startswith("tinyapp")], entries  # hashed as built
    before = archive(cache).read_bytes()

    index.add("tinydep", "1.1")
    second = build(tmp_path / "run2", index, **variables)
    passed(second)
    assert status(second, said) == "skipped", second.describe()
    assert "tinydep==1.0" in resolved.read_text()
    assert archive(cache).read_bytes() == before


def test_a_tampered_wheel_is_refused_by_the_build(tmp_path: Path, index: Index, app: Path) -> None:
    dep = index.add("tinydep", "1.0")
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_of(dep))
    index.add("tinydep", "1.0", payload="EVIL = True\n")  # same name, other bytes
    played = build(
        tmp_path / "run",
        index,
        sse_backend_source=str(app),
        sse_backend_lock_file=str(lock),
        sse_backend_controller_cache=str(tmp_path / "cache"),
    )
    assert played.rc == RC_HOST_FAILED, played.describe()
    (message,) = played.failures()
    assert "tinydep" in message and f"Python {TARGET_PYTHON}" in message, message
    assert "Expected sha256" in message and "No host was changed" in message, message
    assert not list((tmp_path / "cache").glob("*.tar")), "an archive was left to ship"


def test_a_tampered_wheel_is_refused_on_the_target(tmp_path: Path, index: Index, app: Path) -> None:
    dep = index.add("tinydep", "1.0")
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_of(dep))
    cache = tmp_path / "cache"
    passed(
        build(
            tmp_path / "run",
            index,
            sse_backend_source=str(app),
            sse_backend_lock_file=str(lock),
            sse_backend_controller_cache=str(cache),
        )
    )
    release = tmp_path / "release"
    (release / "wheelhouse").mkdir(parents=True)
    shutil.copy(archive(cache), release / "wheelhouse.tar")
    shutil.copy(archive(cache).with_suffix(".lock"), release / "requirements.lock")
    with tarfile.open(release / "wheelhouse.tar") as packed:
        packed.extractall(release / "wheelhouse", filter="data")
    subprocess.run(["python3", "-m", "venv", str(release / "venv")], check=True)
    # the install of tasks/release.yml (no index; the lock's hashes checked)
    install = [
        str(release / "venv/bin/pip"),
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--find-links",
        "wheelhouse",
        "--force-reinstall",
        "--only-binary=:all:",
        "--require-hashes",
        "-r",
        "requirements.lock",
    ]
    evil = make_wheel(tmp_path / "evil", "tinydep", "1.0", payload="EVIL = True\n")
    shutil.copy(evil, release / "wheelhouse" / evil.name)
    refused = subprocess.run(install, cwd=release, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr
    shutil.copy(dep, release / "wheelhouse" / dep.name)  # the control: the locked bytes install
    subprocess.run(install, cwd=release, capture_output=True, text=True, check=True)
    # and that is the install the role runs
    role_install = "--find-links wheelhouse --force-reinstall"
    role_locked = "'--only-binary=:all: --require-hashes -r requirements.lock'"
    release_yml = (ROOT / "roles/sse_backend/tasks/release.yml").read_text()
    assert role_install in release_yml and role_locked in release_yml


def test_no_wheel_for_the_target_python_fails_naming_package_and_python(
    tmp_path: Path, index: Index, app: Path
) -> None:
    other = "cp30" if TARGET_TAG != "cp30" else "cp29"
    compiled = index.add("tinydep", "1.0", tag=f"{other}-{other}-manylinux_2_17_x86_64")
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_of(compiled))
    played = build(
        tmp_path / "run",
        index,
        sse_backend_source=str(app),
        sse_backend_lock_file=str(lock),
        sse_backend_controller_cache=str(tmp_path / "cache"),
    )
    assert played.rc == RC_HOST_FAILED, played.describe()
    (message,) = played.failures()
    assert "tinydep==1.0" in message and f"Python {TARGET_PYTHON}" in message, message
    assert HOST in message and "No host was changed" in message, message
    past = [t.name for t in played.tasks if t.status != "skipped"]
    assert "Fail when a target Python has no wheel" in past[-1], played.describe()


def test_the_index_mode_installs_the_lock_with_hashes(tmp_path: Path, index: Index) -> None:
    """sse_backend_pip_index_url: pip on the target installs sse_backend_lock_file from the
    index as tasks/release.yml runs it (its configuration in a file, --require-hashes -r
    requirements.lock): exactly the locked versions though the index has newer ones, and
    a file whose bytes changed on the index is refused."""
    app = index.add("myapp", "2.1", requires=("tinydep>=1",))
    dep = index.add("tinydep", "1.0")
    index.add("tinydep", "1.1")
    release = tmp_path / "release"
    release.mkdir()
    (release / "requirements.lock").write_text(lock_of(app, dep))
    conf = release / "pip-index.conf"
    conf.write_text(f"[global]\nindex-url = {index.url}\n")
    subprocess.run(["python3", "-m", "venv", str(release / "venv")], check=True)
    pip = str(release / "venv/bin/pip")
    install = [
        pip,
        "install",
        "--disable-pip-version-check",
        "--require-hashes",
        "-r",
        str(release / "requirements.lock"),
    ]
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": str(conf),
        "PIP_NO_CACHE_DIR": "1",
        "PIP_FIND_LINKS": "",
    }
    done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [pip, "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    versions = {d["name"]: d["version"] for d in json.loads(listed)}
    assert versions.get("tinydep") == "1.0" and versions.get("myapp") == "2.1", versions
    index.add("myapp", "2.1", requires=("tinydep>=1",), payload="EVIL = True\n")
    refused = subprocess.run(
        [*install, "--force-reinstall"], capture_output=True, text=True, env=env, check=False
    )
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr
    # and that is the install the role runs with an index
    release_yml = (ROOT / "roles/sse_backend/tasks/release.yml").read_text()
    assert "+ ['--require-hashes', '-r', __sse_backend_release_dir ~ '/requirements.lock']" in (
        release_yml
    )
    assert 'PIP_CONFIG_FILE: "{{ __sse_backend_pip_conf }}"' in release_yml
