#!/usr/bin/env bash
# Create .venv with the pinned controller toolchain (requirements-dev.txt).
# Re-runs only when the pins change (a stamp holds their hash).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/lib.sh
. "$here/lib.sh"
root="$here/.."
venv="$root/.venv"
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 /usr/bin/python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || die "python3.11 not found: apt-get install python3 python3-venv (Debian 12) or set PYTHON=/path/to/python3.11"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = 3.11 ] || die "the toolchain is pinned for Python 3.11 but $python is $version: set PYTHON=/path/to/python3.11"

want=$( { cat "$root/requirements-dev.txt" "$root/pyproject.toml" "$0"; } | sha256sum | cut -c1-16)
if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ]; then
  exit 0
fi
echo "creating .venv with the pinned toolchain ($python)..."
"$python" -m venv "$venv" || die "'$python -m venv' failed: apt-get install python3-venv"
log="$venv/pip-install.log"
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements-dev.txt" >"$log" 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -20 >&2
  die "pip could not install requirements-dev.txt into .venv (full log: $log)"
fi
# the `sseprobe` command: the repository's own package (pyproject.toml), editable so the
# probe in collections/ is used as it is on disk (pip builds it with setuptools from the index)
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check \
    --no-deps -e "$root" >"$log" 2>&1; then
  tail -20 "$log" >&2
  die "pip could not install the repository's sseprobe package into .venv (full log: $log)"
fi
# `source .venv/bin/activate` then plain `molecule test|converge|login`: the same podman
# settings and ansible.cfg that `make` exports (the file is written by tools/lib.sh).
cat >> "$venv/bin/activate" <<ACTIVATE

# added by tools/venv.sh: what \`make\` exports, for molecule and ansible run by hand
CONTAINERS_CONF="$(cd "$root" && pwd)/.cache/containers.conf"
ANSIBLE_CONFIG="$(cd "$root" && pwd)/ansible.cfg"
export CONTAINERS_CONF ANSIBLE_CONFIG
[ -f "\$CONTAINERS_CONF" ] || echo "sse-deploy: run 'make host' once: \$CONTAINERS_CONF is missing" >&2
ACTIVATE
echo "$want" > "$venv/.stamp"
