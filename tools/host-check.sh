#!/usr/bin/env bash
# Check the capabilities the scenarios rely on, not only the packages, before any scenario
# starts: a systemd container reaches `running`, two containers on a scenario network
# resolve each other by name, and sshd in a container answers on a port published on
# 127.0.0.1. Each failure is one line: what is missing and how to fix it. About 5 s.
#   tools/host-check.sh [image]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/lib.sh
. "$here/lib.sh"
podman_env

image=${1:-localhost/sse-debian12-systemd:latest}
network=sse-hostcheck
first=sse-hostcheck-a
second=sse-hostcheck-b

cleanup() {
  podman rm -f -t 0 "$first" "$second" >/dev/null 2>&1 || true
  podman network rm -f "$network" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

podman image exists "$image" || die "no base image $image: run 'make images'"
podman network create "$network" >/dev/null \
  || die "podman cannot create a network ('podman network create $network' fails)"
# the SSH port is published like the scenarios publish theirs: loopback, a port podman picks
podman run -d --name "$first" --hostname "$first" --network "$network" --systemd=always \
  -p 127.0.0.1::22 "$image" /lib/systemd/systemd >/dev/null \
  || die "podman cannot start a systemd container from $image: see 'podman run --systemd=always $image /lib/systemd/systemd' (on a cgroup v1 host runc is needed: 'make host')"
podman run -d --name "$second" --hostname "$second" --network "$network" --systemd=always \
  "$image" /lib/systemd/systemd >/dev/null || die "podman cannot start a second container"

state=starting
for _ in $(seq 1 60); do
  state=$(podman exec "$first" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.5
done
[ "$state" = running ] || die "systemd in a container does not reach 'running' (state: $state; failed units: $(podman exec "$first" systemctl --failed --plain --no-legend 2>/dev/null | awk '{print $1}' | xargs)): check the cgroup setup and 'make host'"

podman exec "$first" getent hosts "$second" >/dev/null \
  || die "containers on a podman network do not resolve each other by name: with the CNI network backend install the dnsname plugin (apt-get install golang-github-containernetworking-plugin-dnsname, done by 'make host'), or use netavark"

port=$(podman port "$first" 22/tcp | sed -n 's/^127\.0\.0\.1://p' | head -n 1)
[ -n "$port" ] || die "podman did not publish the container's port 22 on 127.0.0.1"
banner=""
for _ in $(seq 1 20); do
  banner=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 7 <&3" 2>/dev/null || true)
  [ "$banner" = SSH-2.0 ] && break
  sleep 0.5
done
[ "$banner" = SSH-2.0 ] || die "sshd in a container does not answer on 127.0.0.1:$port: rebuild the base image ('make images') and check 'podman exec $first systemctl status ssh'"

echo "host checks passed: systemd container running, names resolve on a podman network, sshd reachable on 127.0.0.1"
