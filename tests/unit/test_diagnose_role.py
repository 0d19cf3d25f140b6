"""The role as Ansible runs it, on the controller: the probe comes from role sse_verify's
module_utils (loaded by import_role, none of its tasks runs), nothing is changed, and the
report is written, also in check mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sse_fault_server import INTERVAL, FaultServer

ROOT = Path(__file__).resolve().parents[2]


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
    )
    return env


def run_role(
    tmp_path: Path, backend_url: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    report_dir = tmp_path / "reports"
    playbook = tmp_path / "diagnose.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Diagnose the controller",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "roles": [
                        {
                            "role": "sse_diagnose",
                            "vars": {
                                "sse_diagnose_proxy": False,
                                "sse_diagnose_backend": False,
                                "sse_diagnose_paths": ["/healthy"],
                                "sse_diagnose_backend_url": backend_url,
                                "sse_diagnose_keepalive_interval": INTERVAL,
                                "sse_diagnose_tolerance": 0.3,
                                "sse_diagnose_report_dir": str(report_dir),
                            },
                        }
                    ],
                }
            ]
        )
    )
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        cwd=tmp_path,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report_file = report_dir / "localhost.json"
    return proc, json.loads(report_file.read_text()) if report_file.is_file() else None


@pytest.fixture(scope="module")
def server():
    with FaultServer() as s:
        yield s


@pytest.mark.parametrize("mode", [[], ["--check"]], ids=["run", "check-mode"])
def test_role_probes_with_sse_verify_probe_and_changes_nothing(tmp_path, server, mode):
    proc, report = run_role(tmp_path, server.url("/healthy"), *mode)
    assert proc.returncode == 0 and report, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "changed=0" in proc.stdout.split("PLAY RECAP", 1)[1]
    assert "sse_verify :" not in proc.stdout  # loaded for its module_utils, never run
    assert report["healthy"] is True, report["sentence"]
    assert report["probes"]["backend"]["ok"] and report["probes"]["backend"]["keepalives"] >= 1
    assert report["host"] == "localhost"


def test_role_reports_a_backend_fault(tmp_path, server):
    proc, report = run_role(tmp_path, server.url("/no-keepalive"))
    assert proc.returncode == 0 and report  # a diagnosis reports; it does not fail the play
    assert report["cause"]["id"] == "backend.no_keepalive"
    assert "localhost: Most likely cause of interrupted streams on /healthy" in proc.stdout


def test_playbook_syntax_and_bad_input_stops_in_preflight(tmp_path, server):
    proc = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", "localhost,", "playbooks/diagnose.yml"],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, report = run_role(tmp_path, server.url("/healthy"), "-e", "sse_diagnose_since=soon")
    assert proc.returncode != 0 and report is None
    assert "sse_diagnose_since must be a time span" in proc.stdout
