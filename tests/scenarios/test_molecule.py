"""Each molecule scenario as one test, so `make test` ends with one pytest summary.

Scenarios come from $SCENARIOS (space-separated, in order). Molecule's own output is
streamed live and also kept in .cache/logs/molecule-<scenario>.log.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = os.environ.get("SCENARIOS", "smoke").split()


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (ROOT / "molecule" / scenario / "molecule.yml").is_file(), f"no scenario {scenario}"
    log_dir = ROOT / ".cache" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"molecule-{scenario}.log"
    with capsys.disabled(), log_path.open("w") as log:
        print(f"\n=== molecule test -s {scenario} (log: {log_path})", flush=True)
        proc = subprocess.Popen(
            ["molecule", "test", "-s", scenario],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            # a site-wide pip config points at local indexes that do not exist here
            if "is ignored: it is neither a file nor a directory" in line:
                continue
            log.write(line)
            print(line, end="", flush=True)
        rc = proc.wait()
    assert rc == 0, f"molecule test -s {scenario} failed (exit {rc}); log: {log_path}"
