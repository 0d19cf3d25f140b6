"""Each molecule scenario as one test, so `make test` ends with one pytest summary.

Scenarios come from $SCENARIOS (space-separated, in order). Molecule's own output is kept
in .cache/logs/molecule-<scenario>.log, and streamed live when the scenarios run in this
process (`make test SCENARIO_JOBS=0`).

With pytest-xdist (`-n 2 --dist loadscope`, as `make test` runs them) the scenarios go into
lanes, one test class each (TestLane0, ...), balanced by their measured cost: a lane runs
its scenarios in order, the lanes side by side. Most of a scenario's wall time is waiting
(streams held, keepalives awaited, services restarting), so two lanes fit on two cores.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED_CONFIG = ROOT / ".config" / "molecule" / "config.yml"
SCENARIOS = os.environ.get("SCENARIOS", "smoke").split()
LANES = max(1, int(os.environ.get("SCENARIO_JOBS", "1")))
# minutes each scenario took alone over SSH on our 2-core machines (README, Numbers);
# only their proportions matter, to balance the lanes
COST = {
    "smoke": 1,
    "default": 4,
    "nginx": 6,
    "faults": 6.5,
    "diagnose": 2.5,
    "cluster": 7,
    "existing-site": 7,
}


def platforms(scenario: str) -> set[str]:
    """The container names a scenario creates (its own, or the shared config's)."""
    for config in (ROOT / "molecule" / scenario / "molecule.yml", SHARED_CONFIG):
        if not config.is_file():  # no such scenario: its test says so
            continue
        found = (yaml.safe_load(config.read_text()) or {}).get("platforms")
        if found:
            return {p["name"] for p in found}
    return set()


def lanes(scenarios: list[str], count: int) -> dict[str, int]:
    """Each scenario's lane. Scenarios that create the same containers (smoke and default
    share the shared config's) never run side by side: they form one unit. Units go
    longest first, each to the lane with the least work so far; a lane keeps the order
    of $SCENARIOS."""
    names = {name: platforms(name) for name in scenarios}  # each molecule.yml read once
    units: list[list[str]] = []
    for name in scenarios:
        joined = [u for u in units if any(names[name] & names[other] for other in u)]
        merged = [s for u in joined for s in u] + [name]
        units = [u for u in units if u not in joined] + [merged]
    cost = {tuple(u): sum(COST.get(s, 5) for s in u) for u in units}
    load = [0.0] * count
    lane_of: dict[str, int] = {}
    for unit in sorted(units, key=lambda u: -cost[tuple(u)]):
        lane = min(range(count), key=lambda i: load[i])
        for name in unit:
            lane_of[name] = lane
        load[lane] += cost[tuple(unit)]
    return lane_of


LANE_OF = lanes(SCENARIOS, LANES)


def run_scenario(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
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
    if rc != 0:
        # under xdist nothing was shown live: the end of the log says what failed
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-60:])
        pytest.fail(f"molecule test -s {scenario} failed (exit {rc}); log: {log_path}\n{tail}")


def _lane(number: int) -> type:
    """A test class per lane: `--dist loadscope` sends a class to one worker, whose tests
    run in order (xdist_group marks are not honoured with pytest 9)."""

    class Lane:
        @pytest.mark.molecule
        @pytest.mark.parametrize("scenario", [s for s in SCENARIOS if LANE_OF[s] == number])
        def test_scenario(self, scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
            run_scenario(scenario, capsys)

    Lane.__name__ = Lane.__qualname__ = f"TestLane{number}"
    return Lane


for _number in sorted(set(LANE_OF.values())):
    globals()[f"TestLane{_number}"] = _lane(_number)
