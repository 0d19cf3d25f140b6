"""Every molecule scenario reaches its containers as a fleet is reached: SSH to a port
published on 127.0.0.1 only, as a non-root user with become, prepared per run by the
shared prepare playbook. A scenario that forgets one of these would silently fall back to
`podman exec` as root, the path users do not have."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
SSH_PORT = "127.0.0.1::22/tcp"


def scenario(name: str) -> dict:
    return yaml.safe_load((ROOT / "molecule" / name / "molecule.yml").read_text()) or {}


def test_shared_connection_is_ssh_as_a_non_root_user() -> None:
    options = SHARED["provisioner"]["connection_options"]
    assert options["ansible_connection"] == "ssh"
    assert options["ansible_user"] not in ("root", "")
    # one SSH config per scenario, written by the shared prepare playbook
    assert "/.cache/ssh/${MOLECULE_SCENARIO_NAME}/config" in options["ansible_ssh_common_args"]
    ssh = SHARED["provisioner"]["config_options"]["ssh_connection"]
    assert ssh["pipelining"] is True
    assert "ControlPersist" in ssh["ssh_args"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_platform_publishes_ssh_on_loopback_only(name: str) -> None:
    platforms = scenario(name).get("platforms") or SHARED["platforms"]
    for platform in platforms:
        ports = platform.get("published_ports", [])
        assert SSH_PORT in ports, f"{name}: {platform['name']} does not publish {SSH_PORT}"
        assert all(p.startswith("127.0.0.1:") for p in ports), f"{name}: {ports}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_prepare_runs_the_shared_ssh_preparation_before_converge(name: str) -> None:
    config = scenario(name)
    sequence = (
        config.get("scenario", {}).get("test_sequence") or SHARED["scenario"]["test_sequence"]
    )
    assert "prepare" in sequence, f"{name}: no prepare step, so no SSH key is authorized"
    assert sequence.index("create") < sequence.index("prepare") < sequence.index("converge")
    prepare = config.get("provisioner", {}).get("playbooks", {}).get("prepare")
    if prepare is None:
        assert SHARED["provisioner"]["playbooks"]["prepare"] == "../_shared/prepare.yml"
    else:
        plays = yaml.safe_load((ROOT / "molecule" / name / prepare).read_text())
        assert plays[0].get("ansible.builtin.import_playbook") == "../_shared/prepare.yml", (
            f"{name}: its own {prepare} must import the shared SSH preparation first"
        )
