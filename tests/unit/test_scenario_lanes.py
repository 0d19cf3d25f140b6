"""The lanes `make test` runs the molecule scenarios in: scenarios that create the same
containers never share a moment, every scenario runs exactly once, the lanes are balanced."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "scenario_runner", ROOT / "tests" / "scenarios" / "test_molecule.py"
)
assert _spec and _spec.loader
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

ALL = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
MAKE_TEST = ["smoke", "default", "nginx", "faults", "diagnose", "cluster", "existing-site"]


def test_scenarios_sharing_containers_share_a_lane() -> None:
    for count in (2, 3, 4):
        lane_of = runner.lanes(ALL, count)
        assert sorted(lane_of) == ALL
        for a in ALL:
            for b in ALL:
                if runner.platforms(a) & runner.platforms(b):
                    assert lane_of[a] == lane_of[b], (a, b, count)


def test_smoke_and_default_create_the_same_containers() -> None:
    # the case the rule is for: both use the shared config's platforms
    assert runner.platforms("smoke") == runner.platforms("default") != set()


def test_two_lanes_are_balanced_for_make_test() -> None:
    lane_of = runner.lanes(MAKE_TEST, 2)
    load = [sum(runner.COST[s] for s in MAKE_TEST if lane_of[s] == lane) for lane in (0, 1)]
    assert min(load) > 0
    assert max(load) - min(load) <= max(runner.COST.values())


def test_one_lane_keeps_everything_in_order() -> None:
    assert set(runner.lanes(MAKE_TEST, 1).values()) == {0}
