# Two commands for users: `make demo` and `make test`. Each does its own set-up:
# host packages, the pinned .venv, base images; a second run skips what is there.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(ROOT)/.cache/containers.conf
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export NO_COLOR := 1
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0

# Molecule scenarios run by `make test`, in order (override: make test SCENARIOS=smoke).
SCENARIOS ?= smoke default nginx faults diagnose cluster existing-site
export SCENARIOS
# Lanes of scenarios run side by side (tests/scenarios/test_molecule.py balances them);
# 0 or a single scenario: one after another in this process, molecule's output live.
SCENARIO_JOBS ?= 3
export SCENARIO_JOBS
SCENARIO_LANES = $(if $(filter 0 1,$(SCENARIO_JOBS))$(filter 1,$(words $(SCENARIOS))),-n 0,-n $(SCENARIO_JOBS) --dist loadscope -v)

.PHONY: help host host-check venv node-deps images lint unit molecule test test-steps demo demo-destroy clean bench bench-release lock

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

host: ## install missing host packages (podman, runc, mmdebstrap, ...)
	@tools/host-setup.sh

host-check: images ## prove the capabilities scenarios need (systemd container, names on a network, SSH)
	@tools/host-check.sh

venv: ## .venv with the pinned toolchain (requirements-dev.txt)
	@tools/venv.sh

# The Firefox test's driver (npm's puppeteer-core) exactly as package-lock.json pins it;
# `npm ci` again only when package.json or the lock changed (a stamp holds their hash).
# No install script runs and no browser is downloaded: the test drives Debian's firefox-esr.
E2E := molecule/default/e2e
node-deps: host ## Node packages of the Firefox test (npm ci from molecule/default/e2e/package-lock.json)
	@want=$$(cat $(E2E)/package.json $(E2E)/package-lock.json | sha256sum | cut -c1-16); \
	  [ "$$(cat $(E2E)/node_modules/.stamp 2>/dev/null)" = "$$want" ] && exit 0; \
	  echo "installing the Firefox test's Node packages (npm ci in $(E2E))..."; \
	  (cd $(E2E) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund \
	    --loglevel=error) >/dev/null; \
	  echo "$$want" > $(E2E)/node_modules/.stamp

images: host ## build the Debian 12 and 13 systemd base images (cached by recipe)
	@tools/build-image.sh bookworm
	@tools/build-image.sh trixie

lint: venv ## yamllint, ansible-lint, syntax check, ruff, offline collections, EE build context
	yamllint --strict .
	ansible-lint --profile production
	ansible-playbook --syntax-check -i inventory/local site.yml
	ruff check .
	ruff format --check .
	python tools/role_docs.py --check
	ansible-galaxy collection install --offline -r requirements.yml
	ansible-builder create -f execution-environment.yml -c .cache/ee >/dev/null

unit: venv ## unit tests (probe, reference app, tools); no containers
	pytest -m "not molecule"

molecule: venv node-deps host-check ## molecule scenarios in $(SCENARIOS), in $(SCENARIO_JOBS) lanes
	pytest -m molecule $(SCENARIO_LANES)

test: ## everything that must pass: set-up, lint, unit tests, molecule scenarios
	@start=$$(date +%s); $(MAKE) --no-print-directory test-steps; \
	  printf '{"wall_s": %d, "finished": "%s", "scenarios": "%s", "lanes": %s, "strategy": "%s"}\n' \
	    $$(( $$(date +%s) - start )) "$$(date -u '+%Y-%m-%d %H:%M UTC')" "$(SCENARIOS)" \
	    "$(SCENARIO_JOBS)" "$${ANSIBLE_STRATEGY:-linear}" > .cache/make-test.json; \
	  echo "make test passed in $$(( ($$(date +%s) - start) / 60 )) min (.cache/make-test.json)"

# The unit tests run beside the scenario lanes (their log: .cache/logs/unit.log, printed
# at the end): the lanes mostly wait on containers, and this saves the unit tests' 4-5 min.
test-steps: venv host node-deps host-check lint
	@mkdir -p .cache/logs; \
	  pytest -m "not molecule" > .cache/logs/unit.log 2>&1 & unit=$$!; \
	  scenarios=0; pytest -m molecule $(SCENARIO_LANES) || scenarios=$$?; \
	  units=0; wait $$unit || units=$$?; \
	  echo "== unit tests, run beside the scenarios (.cache/logs/unit.log)"; \
	  if [ $$units -eq 0 ]; then tail -n 3 .cache/logs/unit.log; else cat .cache/logs/unit.log; fi; \
	  [ $$scenarios -eq 0 ] && [ $$units -eq 0 ]

demo: venv images ## deploy into a local systemd container and verify the stream
	@tools/demo.sh

demo-destroy: ## remove the demo container
	@tools/demo.sh destroy

# `make bench` sizes (issue 9's goals: BENCH_STREAMS=10000 BENCH_HOLD=120
# BENCH_RELOAD_STREAMS=5000, about 20 minutes here; the defaults finish in about 10).
BENCH_STREAMS ?= 2000
BENCH_HOLD ?= 60
BENCH_RELOAD_STREAMS ?= $(BENCH_STREAMS)
BENCH_RESTART_STREAMS ?= 1000

bench: venv images ## benchmark (not in `make test`): load through nginx, reload, restart, naive baseline
	@cmp -s bench/requirements.txt $(VENV)/.bench-requirements \
	  || { $(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt \
	       && cp bench/requirements.txt $(VENV)/.bench-requirements; }
	python bench/bench.py --streams $(BENCH_STREAMS) --hold $(BENCH_HOLD) \
	  --reload-streams $(BENCH_RELOAD_STREAMS) --restart-streams $(BENCH_RESTART_STREAMS)

bench-release: venv images ## release timings on the cluster scenario (profile_tasks): no-change, one-host, rolling
	python bench/release.py

# The reference app's locked dependency set: exact versions and hashes of every dependency
# of app/pyproject.toml, for every Python the targets run (--universal: markers, not the
# controller's Python, decide what applies; 3.11 is the oldest target). Deploys install
# exactly this; only this target changes it (to the newest versions the ranges allow).
lock: venv ## resolve app/requirements.lock anew (exact versions + hashes; deploys never resolve)
	cd app && UV_CUSTOM_COMPILE_COMMAND="make lock" uv pip compile --quiet --universal \
	  --python-version 3.11 --generate-hashes --upgrade pyproject.toml -o requirements.lock

clean: demo-destroy ## remove .venv and caches (images stay; `podman rmi` them by hand)
	rm -rf .venv .cache .pytest_cache .ruff_cache
