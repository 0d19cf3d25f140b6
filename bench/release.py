#!/usr/bin/env python3
"""`make bench-release`: what a release costs on the cluster, from Ansible's profile_tasks.

Deploys the molecule scenario `cluster` (one proxy, two backends on a podman network),
then runs `site.yml` from the controller against its inventory, each run with
profile_tasks (ansible.cfg) and its output kept in .cache/bench-release/logs/:

  first      the first deploy (1.0.0), for scale
  no-change  site.yml again, --repeat times: must change nothing and restart nothing
             (each backend's MainPID and nginx's worker PIDs are compared)
  one-host   a release to one backend (--limit proxy,backendN), once per backend
  rolling    a release to both backends, batch by batch (drain, restart, verify,
             undrain, verify through nginx), --repeat times

once per Ansible strategy (--strategies: linear, then mitogen_linear), each on fresh
containers, and writes bench/results/RELEASE.md and release.json: the median wall time of
each kind and its range, changed tasks per host, the goals of issue 13 (with the last
passing `make test` from .cache/make-test.json), the ratios between kinds and strategies
(same run, same machine), and the slowest tasks of the median run. Bounded: every
playbook has a timeout; the containers are destroyed at the end (--keep leaves them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "cluster"
PROXY = "cluster-proxy"
BACKENDS = ("cluster-backend1", "cluster-backend2")
EPHEMERAL = ROOT / ".cache" / "bench-release" / "molecule"
LOGS = ROOT / ".cache" / "bench-release" / "logs"
RESULTS = ROOT / "bench" / "results"
PLAYBOOK_TIMEOUT = 900.0
# issue 13's goals: a no-change run, a one-host and a two-backend rolling release, and
# `make test` on a fresh machine
GOALS_S = {"no-change": 30.0, "one-host": 45.0, "rolling": 90.0}
MAKE_TEST_GOAL_S = 20 * 60.0
MAKE_TEST_RECORD = ROOT / ".cache" / "make-test.json"  # written by `make test` when it passes
USER = "sse"
UNIT = "sse-backend.service"

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
# profile_tasks' summary: "<role> : <task> ------ 12.34s"
TASK_TIME = re.compile(r"^(.*\S) -{2,} (\d+\.\d+)s$")
# profile_tasks' banner of each task: "... (0:00:01.234)       0:01:02.345 ****"
ELAPSED = re.compile(r"\((\d+):(\d+):(\d+\.\d+)\)\s+(\d+):(\d+):(\d+\.\d+)")


def seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def sh(cmd: list[str]) -> str:
    """A command's output; empty when it fails (before the first deploy there is no user,
    no service and no nginx to read)."""
    return subprocess.run(cmd, check=False, capture_output=True, text=True).stdout


def pids() -> dict[str, str]:
    """Each backend's service MainPID and nginx's worker PIDs: what a restart or a
    reload would change."""
    found = {}
    for name in BACKENDS:
        uid = sh(["podman", "exec", name, "id", "-u", USER]).strip()
        found[name] = sh(
            ["podman", "exec", name, "runuser", "-u", USER, "--", "env",
             f"XDG_RUNTIME_DIR=/run/user/{uid}", "systemctl", "--user", "show",
             "-p", "MainPID", "--value", UNIT]
        ).strip()  # fmt: skip
    found[f"{PROXY} nginx workers"] = " ".join(
        sorted(sh(["podman", "exec", PROXY, "pgrep", "-f", "nginx: worker"]).split())
    )
    return found


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = dict(
            os.environ,
            MOLECULE_EPHEMERAL_DIRECTORY=str(EPHEMERAL),
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            # no colour codes in the logs that are parsed
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            # every task in profile_tasks' summary, not only the slowest 20
            PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
        )
        # the strategy is set per site.yml run, never for molecule's own playbooks
        self.env.pop("ANSIBLE_STRATEGY", None)
        self.runs: list[dict[str, Any]] = []
        self.failed: dict[str, str] = {}
        self.strategy = "linear"
        LOGS.mkdir(parents=True, exist_ok=True)

    def molecule(self, action: str) -> None:
        log = LOGS / f"molecule-{action}.log"
        with log.open("w") as out:
            subprocess.run(
                ["molecule", action, "-s", SCENARIO], cwd=ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, check=True, timeout=PLAYBOOK_TIMEOUT,
            )  # fmt: skip

    def site(self, kind: str, *extra: str, expect_restart: bool) -> dict[str, Any]:
        number = len(self.runs) + 1
        cmd = ["ansible-playbook", "-i", str(EPHEMERAL / "inventory"), "site.yml", *extra]
        before = pids()
        log = LOGS / f"{number:02d}-{self.strategy}-{kind}.log"
        env = dict(self.env, ANSIBLE_STRATEGY=self.strategy)
        start = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT,
        )  # fmt: skip
        wall = time.monotonic() - start
        log.write_text(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
        after = pids()
        run = parse(proc.stdout)
        run.update(
            kind=kind,
            strategy=self.strategy,
            args=" ".join(extra),
            wall_s=round(wall, 1),
            exit=proc.returncode,
            log=str(log.relative_to(ROOT)),
            restarted=sorted(k for k in before if before[k] != after[k]),
        )
        print(
            f"{number:2d} {self.strategy:14s} {kind:9s} {wall:6.1f} s  exit {proc.returncode}"
            f"  changed {run['changed']}  restarted/reloaded {run['restarted'] or 'nothing'}",
            flush=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed, see {log}")
        if not expect_restart and (any(run["changed"].values()) or run["restarted"]):
            raise SystemExit(f"a no-change run changed something, see {log}")
        self.runs.append(run)
        return run

    def run(self) -> None:
        """The same sequence once per strategy, each on fresh containers. The strategy is
        set for the site.yml runs only: molecule's own create playbook waits forever on its
        async task under mitogen (mitogen-hq/mitogen#835)."""
        for strategy in self.args.strategies:
            self.strategy = strategy
            try:
                self.run_strategy()
            except SystemExit as failure:  # one strategy failing does not hide the others
                self.failed[strategy] = str(failure)
                self.runs = [r for r in self.runs if r["strategy"] != strategy]
                print(f"{strategy}: {failure}", flush=True)

    def run_strategy(self) -> None:
        a = self.args
        self.molecule("destroy")
        self.molecule("create")
        self.molecule("prepare")  # the SSH key, known_hosts and config of this run
        try:
            self.site("first", expect_restart=True)
            for _ in range(a.repeat):
                self.site("no-change", expect_restart=False)
            version = 2
            for backend in BACKENDS:
                self.site(
                    "one-host", "-e", f"sse_backend_version={version}.0.0",
                    "--limit", f"{PROXY},{backend}", expect_restart=True,
                )  # fmt: skip
            for _ in range(a.repeat):
                version += 1
                release = f"sse_backend_version={version}.0.0"
                self.site("rolling", "-e", release, expect_restart=True)
        finally:
            if not a.keep:
                self.molecule("destroy")


def parse(out: str) -> dict[str, Any]:
    changed: dict[str, int] = {}
    tasks: list[tuple[str, float]] = []
    plays: list[list[Any]] = []  # [name, seconds, tasks], in order
    elapsed = 0.0
    in_summary = False
    for line in out.splitlines():
        if m := RECAP.match(line):
            changed[m.group(1)] = int(m.group(3))
        if line.startswith("PLAY [") and not in_summary:
            plays.append([line[6:].split("]")[0], 0.0, 0])
        if line.startswith("TASK [") and plays:
            plays[-1][2] += 1
        if m := ELAPSED.search(line):
            now = seconds(*m.group(4, 5, 6))
            if plays:
                plays[-1][1] = round(plays[-1][1] + now - elapsed, 1)
            elapsed = now
        if line.startswith("=" * 20):
            in_summary = True
        elif in_summary and (m := TASK_TIME.match(line.strip())):
            tasks.append((m.group(1), float(m.group(2))))
    return {"changed": changed, "ansible_s": round(elapsed, 1), "tasks": tasks, "plays": plays}


def connection() -> str:
    """How Ansible reached the containers: the molecule connection options and SSH
    settings (the strategy is given per run)."""
    import yaml  # ansible's dependency, in the venv

    shared = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
    provisioner = shared["provisioner"]
    options = provisioner["connection_options"]
    ssh = provisioner["config_options"]["ssh_connection"]
    return (
        f"{options['ansible_connection']} as {options['ansible_user']} with become,"
        f" pipelining {'on' if ssh['pipelining'] else 'off'}, `{ssh['ssh_args']}`"
    )


def machine() -> dict[str, Any]:
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_end": round(os.getloadavg()[0], 1),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "connection": connection(),
    }


def make_test_row() -> str:
    """The last passing `make test` on this machine (the Makefile writes its wall time)."""
    goal = f"`make test` on a fresh machine: {MAKE_TEST_GOAL_S / 60:.0f} min or less"
    if not MAKE_TEST_RECORD.is_file():
        return f"| {goal} | not measured here yet (run `make test`) | - |"
    run = json.loads(MAKE_TEST_RECORD.read_text())
    wall = run["wall_s"]
    return (
        f"| {goal} | {wall // 60:.0f} min {wall % 60:.0f} s ({run['finished']}, scenarios"
        f" {run['scenarios']} in {run['lanes']} lanes, strategy {run['strategy']}) |"
        f" {'met' if wall <= MAKE_TEST_GOAL_S else 'missed'} |"
    )


KINDS = ["first", "no-change", "one-host", "rolling"]
LABELS = {
    "first": "first deploy (1.0.0)",
    "no-change": "no-change `site.yml`",
    "one-host": "one-host release (`--limit proxy,backendN`)",
    "rolling": "rolling release, 2 backends, `serial: 1`",
}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind (of one strategy's runs): count, median, range, what changed, the run
    nearest the median."""
    summary: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        of_kind = [r for r in runs if r["kind"] == kind]
        walls = sorted(r["wall_s"] for r in of_kind)
        median = statistics.median(walls)
        summary[kind] = {
            "n": len(walls),
            "median_s": round(median, 1),
            "min_s": walls[0],
            "max_s": walls[-1],
            "changed": [r["changed"] for r in of_kind],
            "restarted": [r["restarted"] for r in of_kind],
            "median_run": min(of_kind, key=lambda r: abs(r["wall_s"] - median)),
        }
    return summary


def goal_met(kind: str, k: dict[str, Any]) -> bool:
    met = k["median_s"] <= GOALS_S[kind]
    if kind == "no-change":  # and it really changed and restarted nothing
        met = met and not any(any(c.values()) for c in k["changed"]) and not any(k["restarted"])
    return met


def time_split(kind: str, strategy: str, run: dict[str, Any], top: int) -> list[str]:
    tasks = sorted(run["tasks"], key=lambda t: -t[1])[:top]
    total = sum(t for _, t in run["tasks"])
    # over 0.2 s: the tasks that ran a module in a container (the rest are checks,
    # skips and facts on the controller)
    remote = [t for _, t in run["tasks"] if t > 0.2] or [0.0]
    return [
        f"## Where the median {kind} run spends its time, {strategy} ({run['log']})",
        "",
        f"{len(run['tasks'])} task results, {total:.1f} s of task time; {len(remote)} of them"
        f" over 0.2 s (a module run in a container) take {sum(remote):.1f} s, median"
        f" {statistics.median(remote):.2f} s each. Wall {run['wall_s']:.1f} s"
        f" (profile_tasks' clock {run['ansible_s']:.1f} s, the rest is Ansible's start).",
        "",
        "| play | s | tasks |",
        "| --- | --- | --- |",
        *(f"| {name} | {t:.1f} | {n} |" for name, t, n in run["plays"]),
        "",
        "| task | s |",
        "| --- | --- |",
        *(f"| {name} | {t:.2f} |" for name, t in tasks),
        "",
    ]


def why_missed(strategy: str, summary: dict[str, dict[str, Any]]) -> list[str]:
    """Where a missed release goal's time goes, from the median no-change run."""
    missed = [kind for kind in GOALS_S if not goal_met(kind, summary[kind])]
    if not missed:
        return []
    run = summary["no-change"]["median_run"]
    named = {"hold": "Hold the stream open", "wheelhouse": "Build the wheelhouse"}
    fixed = {k: sum(t for n, t in run["tasks"] if v in n) for k, v in named.items()}
    remote = [t for n, t in run["tasks"] if t > 0.2 and not any(v in n for v in named.values())]
    return [
        f"Why {', '.join(missed)} missed with {strategy}: in the median no-change run the"
        f" stream checks hold {fixed['hold']:.1f} s, the wheelhouse is rebuilt on the controller"
        f" ({fixed['wheelhouse']:.1f} s), and {len(remote)} other module runs on the hosts take"
        f" {sum(remote):.1f} s (median {statistics.median(remote or [0.0]):.2f} s each over SSH"
        " with pipelining). What would move it: fewer tasks per batch (the per-batch play"
        " runs every step even when nothing changed), a wheelhouse that is a cache hit when"
        " the locked dependencies did not change, and a connection that costs less per task"
        " (mitogen, measured beside it here).",
        "",
    ]


def _intro(meta: dict[str, Any], strategies: list[str]) -> list[str]:
    return [
        "# Benchmark: what a release costs on the cluster (profile_tasks)",
        "",
        f"Generated by `make bench-release` ({meta['generated']}); raw figures in `release.json`,"
        " each run's full output (profile_tasks summary included) in"
        " `.cache/bench-release/logs/`. One run on one machine:"
        f" {meta['cores']} cores, {meta['platform']}, load average {meta['load_end']} at the"
        " end. Molecule scenario `cluster`: one proxy and two backend"
        " containers on one podman network, each reached on a port published on 127.0.0.1."
        f" Connection: {meta.get('connection', 'podman exec')}; each strategy"
        f" ({', '.join(strategies)}) on fresh containers, one after the other. Keepalive 2 s,"
        " stream check hold 7 s.",
        "",
    ]


def _kinds_table(summary: dict[str, dict[str, Any]], strategies: list[str]) -> list[str]:
    lines = [
        "| strategy | run | n | median wall (s) | range (s) | changed tasks per host"
        " | restarted or reloaded |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for strategy in strategies:
        for kind in KINDS:
            k = summary[strategy][kind]
            changed = "; ".join(
                ", ".join(f"{h.replace('cluster-', '')} {n}" for h, n in sorted(c.items()))
                for c in k["changed"]
            )
            restarted = "; ".join(
                ", ".join(x.replace("cluster-", "") for x in r) or "nothing" for r in k["restarted"]
            )
            lines.append(
                f"| {strategy} | {LABELS[kind]} | {k['n']} | {k['median_s']:.1f}"
                f" | {k['min_s']:.1f}-{k['max_s']:.1f} | {changed} | {restarted} |"
            )
    return lines


def _goals_table(summary: dict[str, dict[str, Any]], strategies: list[str]) -> list[str]:
    lines = [
        "",
        "## Goals (issue 13)",
        "",
        "| goal | " + " | ".join(f"{s} (median)" for s in strategies) + " |",
        "| --- |" + " --- |" * len(strategies),
    ]
    for kind, goal in GOALS_S.items():
        cells = []
        for strategy in strategies:
            k = summary[strategy][kind]
            verdict = "met" if goal_met(kind, k) else "missed"
            cells.append(f"{k['median_s']:.1f} s over {k['n']}: {verdict}")
        extra = ", changed=0, nothing restarted" if kind == "no-change" else ""
        lines.append(f"| {LABELS[kind]}: {goal:.0f} s or less{extra} | " + " | ".join(cells) + " |")
    lines += ["", "| goal | measured | verdict |", "| --- | --- | --- |", make_test_row(), ""]
    return lines


def _ratios(summary: dict[str, dict[str, Any]], strategies: list[str]) -> list[str]:
    base = summary[strategies[0]]
    ratios = [
        f"rolling release / one-host release"
        f" {base['rolling']['median_s'] / base['one-host']['median_s']:.2f}x",
        f"one-host release / no-change run"
        f" {base['one-host']['median_s'] / base['no-change']['median_s']:.2f}x",
    ]
    for strategy in strategies[1:]:
        ratios += [
            f"{kind} {strategies[0]} / {strategy}"
            f" {base[kind]['median_s'] / summary[strategy][kind]['median_s']:.2f}x"
            for kind in ("no-change", "one-host", "rolling")
        ]
    return [f"Ratios (same run): {'; '.join(ratios)}.", ""]


def write_report(
    runs: list[dict[str, Any]],
    meta: dict[str, Any],
    args: argparse.Namespace,
    failed: dict[str, str] | None = None,
) -> None:
    strategies = list(dict.fromkeys(r.get("strategy", "linear") for r in runs))
    summary = {
        strategy: summarize([r for r in runs if r.get("strategy", "linear") == strategy])
        for strategy in strategies
    }
    failed = failed if failed is not None else meta.get("failed", {})
    meta["failed"] = failed
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "release.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=1) + "\n"
    )
    other = sh(["podman", "ps", "--format", "{{.Names}}"]).split() if args.keep else []
    lines = _intro(meta, strategies) + _kinds_table(summary, strategies)
    lines += _goals_table(summary, strategies)
    lines += [
        f"Strategy {name} failed and is not in the tables: {why}" for name, why in failed.items()
    ]
    lines += [""] if failed else []
    lines += why_missed(strategies[0], summary[strategies[0]])
    lines += _ratios(summary, strategies)
    for strategy in strategies:
        for kind in ("no-change", "one-host", "rolling"):
            run = summary[strategy][kind]["median_run"]
            lines += time_split(kind, strategy, run, args.top)
    if other:
        lines.append(f"Containers left running (--keep): {', '.join(other)}.")
    (RESULTS / "RELEASE.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {RESULTS / 'RELEASE.md'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="no-change and rolling runs")
    parser.add_argument("--top", type=int, default=12, help="slowest tasks listed per kind")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument(
        "--strategies",
        type=lambda v: v.split(","),
        default=["linear", "mitogen_linear"],
        help="Ansible strategies, comma-separated, each measured in turn (default: %(default)s)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from release.json"
    )
    args = parser.parse_args()
    if not 1 <= args.repeat <= 10:
        parser.error(f"--repeat must be 1..10, got {args.repeat}")
    if args.report_only:  # the runs of release.json again, their logs parsed anew
        saved = json.loads((RESULTS / "release.json").read_text())
        for run in saved["runs"]:
            run.update(parse((ROOT / run["log"]).read_text()))
        write_report(saved["runs"], saved["meta"], args)
        return 0
    bench = Bench(args)
    bench.run()
    if not bench.runs:
        raise SystemExit(f"every strategy failed: {bench.failed}")
    write_report(bench.runs, machine(), args, bench.failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
