"""The release's locked dependency set (issue 15) on Debian 12 (Python 3.11) and Debian 13
(Python 3.13): each host got the wheelhouse built for its own Python, and its virtualenv
holds exactly what the release's lock pins, nothing more or less; pip on the host refuses
a wheel whose bytes are not the locked ones. (That a no-change run installs and restarts
nothing is the scenario's idempotence step; a newer upstream dependency changing nothing
is tests/unit/test_backend_build.py.) Cost: about 10 s per host (one scratch virtualenv)."""

from __future__ import annotations

import json
import re

from conftest import USER, python_command

RELEASE = f"/var/lib/{USER}/sse-backend/current"
# what pip itself brings into a virtualenv (not the release's)
VENV_OWN = {"pip", "setuptools", "wheel"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked(text: str) -> dict[str, str]:
    """name -> version of every entry of a lock shipped to a host (markers already dropped)."""
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", text, re.MULTILINE)
    return {_normalize(name): version for name, version in entries}


def test_the_virtualenv_holds_exactly_the_lock(host):
    lock = host.file(f"{RELEASE}/requirements.lock")
    assert lock.exists and lock.mode == 0o644 and lock.user == "root"
    text = lock.content_string
    assert "--hash=sha256:" in text
    locked = _locked(text)
    assert {"gunicorn", "starlette", "uvicorn", "uvicorn-worker", "sse-app"} <= set(locked), locked
    listed = host.check_output(f"{RELEASE}/venv/bin/python -m pip list --format=json")
    installed = {
        _normalize(d["name"]): d["version"]
        for d in json.loads(listed)
        if _normalize(d["name"]) not in VENV_OWN
    }
    assert installed == locked
    assert "requirements.lock sha1" in host.file(f"{RELEASE}/.installed").content_string


def test_the_wheelhouse_was_built_for_the_hosts_python(host):
    system = host.check_output("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    venv = host.check_output(
        f"{RELEASE}/venv/bin/python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
    )
    assert venv == system
    expected = {"debian-12": "3.11", "debian-13": "3.13"}
    release = host.system_info.distribution + "-" + host.system_info.release.split(".")[0]
    assert system == expected.get(release, system), (release, system)
    wheels = host.check_output(f"tar -tf {RELEASE}/wheelhouse.tar").split()
    tags = {
        re.sub(r"^.*-([^-]+-[^-]+-[^-]+)\.whl$", r"\1", w) for w in wheels if w.endswith(".whl")
    }
    cp = "cp" + system.replace(".", "")
    # every wheel is pure Python or made for this very Python
    assert all(t.startswith(("py3-", f"{cp}-")) or "-abi3-" in t for t in tags), tags


def test_a_tampered_wheel_is_refused_on_the_host(host):
    """The install of tasks/release.yml into a scratch virtualenv, from a copy of the
    release's wheelhouse with one wheel's bytes changed: pip refuses it; untouched, the
    same install passes (the control)."""
    script = f"""
import pathlib, shutil, subprocess, sys, tempfile
work = pathlib.Path(tempfile.mkdtemp(prefix="lock-test-"))
try:
    shutil.copytree("{RELEASE}/wheelhouse", work / "wheelhouse")
    shutil.copy("{RELEASE}/requirements.lock", work / "requirements.lock")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    install = [str(work / "venv/bin/pip"), "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--find-links", "wheelhouse", "--force-reinstall",
               "--only-binary=:all:", "--require-hashes", "-r", "requirements.lock"]
    wheel = sorted((work / "wheelhouse").glob("h11-*.whl"))[0]
    good = wheel.read_bytes()
    wheel.write_bytes(good + b"tampered")
    refused = subprocess.run(install, cwd=work, capture_output=True, text=True)
    wheel.write_bytes(good)
    control = subprocess.run(install, cwd=work, capture_output=True, text=True)
    print(refused.returncode, "DO NOT MATCH THE HASHES" in refused.stderr, control.returncode)
    print(refused.stderr[-400:], control.stderr[-400:])
finally:
    shutil.rmtree(work)
"""
    out = host.check_output(python_command(script))
    assert out.splitlines()[0] == "1 True 0", out
