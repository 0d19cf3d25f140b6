#!/usr/bin/env bash
# Install the host packages the project needs, only those missing, and check that
# this host can run systemd containers. One clear line names whatever is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/lib.sh
. "$here/lib.sh"

# podman + runc + mmdebstrap: systemd containers built from Debian's packages;
# uidmap/slirp4netns/fuse-overlayfs: rootless podman; openssl: test certificates;
# python3-venv: the controller's .venv; openssh-client: Ansible reaches the scenario
# containers over SSH, as it reaches a fleet; chromium: the browser end-to-end test drives
# Debian's build through Playwright (no browser is ever downloaded); libnss3-tools: its
# certutil makes the browsers trust the local CA the way a user does (an NSS database, a
# Firefox profile's cert9.db); firefox-esr: the incident's own browser, driven headless over
# WebDriver BiDi by the Firefox end-to-end test (again Debian's build, never a download);
# redis-server: the app's broker-mode tests start their own on a free loopback port
# (tests/app/redis_helpers.py; Debian also enables its service, on loopback only).
packages=(podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs openssl python3-venv openssh-client chromium libnss3-tools firefox-esr redis-server)

command -v dpkg-query >/dev/null 2>&1 || die "this set-up needs a Debian-like host with apt (dpkg-query not found)"

install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    die "missing host packages (${missing[*]}) and no root or passwordless sudo to install them: run 'sudo apt-get install ${missing[*]}' and retry"
  fi
  echo "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed: check the host's apt sources and network"
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/sse-host-setup.log 2>&1; then
    die "could not install ${missing[*]} with apt-get (log: /tmp/sse-host-setup.log)"
  fi
}

install_missing "${packages[@]}"
# Node.js + npm run the Firefox test's driver (puppeteer-core, pinned by npm's lock file,
# `make node-deps`); Debian's packages unless this host already has a node and npm of its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  install_missing nodejs npm
fi

podman_env
podman info >/dev/null 2>&1 || die "podman cannot start on this host ('podman info' fails): check 'podman info' output; rootless use needs subuid/subgid entries"
# Containers on a scenario network reach each other by name (the cluster's proxy -> its
# backends). Netavark has that built in (aardvark-dns); CNI, podman 4's default on
# Debian 12, only with the dnsname plugin. tools/host-check.sh proves it works.
if [ "$(podman info --format '{{.Host.NetworkBackend}}')" = cni ]; then
  install_missing golang-github-containernetworking-plugin-dnsname
fi
echo "host ready: podman $(podman version --format '{{.Client.Version}}'), containers.conf at $CONTAINERS_CONF"
