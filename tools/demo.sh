#!/usr/bin/env bash
# `make demo`: start a local systemd container (Debian 12), deploy site.yml into it,
# verify the stream through nginx from the host, and print where the stream is.
#   tools/demo.sh [destroy]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root="$here/.."
# shellcheck source=tools/lib.sh
. "$here/lib.sh"
podman_env

name=sse-demo
image=${SSE_DEMO_IMAGE:-localhost/sse-debian12-systemd:latest}
https_port=${SSE_DEMO_HTTPS_PORT:-8443}

if [ "${1:-}" = destroy ]; then
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
  echo "demo container removed"
  exit 0
fi

if ! podman container exists "$name"; then
  # Published on 127.0.0.1 only: nothing outside this machine reaches the demo.
  podman run -d --name "$name" --hostname "$name" --systemd=always \
    -p "127.0.0.1:$https_port:443" "$image" /lib/systemd/systemd >/dev/null \
    || die "could not start the demo container from $image (run 'make images' first)"
elif [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ]; then
  podman start "$name" >/dev/null
fi
for _ in $(seq 1 30); do
  state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 1
done

cd "$root"
ansible-playbook -i inventory/local site.yml -e "sse_demo_https_port=$https_port"

cat <<MSG

The demo is up in container '$name' (podman), published on 127.0.0.1 only.
  page:     https://localhost:$https_port/notify/  (self-signed: trust $name:/etc/nginx/tls/sse.crt)
  stream:   https://localhost:$https_port/notify/events
  watch:    curl -kN https://localhost:$https_port/notify/events
  check:    bin/sseprobe check --insecure --hold 35 https://localhost:$https_port/notify/events
  logs:     podman exec $name journalctl -f
  remove:   make demo-destroy
MSG
