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

want=$(sha256sum "$root/requirements-dev.txt" | cut -c1-16)
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
echo "$want" > "$venv/.stamp"
