#!/usr/bin/env bash
# `make demo`: start a local systemd container (Debian 12), deploy site.yml into it,
# verify the stream through nginx from the host, and print where the stream is.
#   tools/demo.sh [destroy]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
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
ansible-playbook -i inventory/local site.yml

# The play above verified the stream from inside the container; check it once more from
# this host through the published port, trusting the demo's own certificate only.
ca="$root/.cache/demo-ca.crt"
podman cp "$name:/etc/nginx/tls/sse-ca.crt" "$ca"
"$root/.venv/bin/sseprobe" check --cacert "$ca" --hold 5 "https://localhost:$https_port/notify/events" \
  || die "the stream does not work through 127.0.0.1:$https_port (see the checks above)"

cat <<MSG

The demo is up in container '$name' (podman), published on 127.0.0.1 only.
  page:     https://localhost:$https_port/notify/  (self-signed: the certificate is $ca)
  stream:   https://localhost:$https_port/notify/events
  watch:    curl -N --cacert $ca https://localhost:$https_port/notify/events
  check:    .venv/bin/sseprobe check --cacert $ca --hold 35 https://localhost:$https_port/notify/events
  publish:  curl --cacert $ca -H 'Authorization: Bearer demo-publish-token' \\
              -d '{"data": "hello"}' https://localhost:$https_port/notify/publish
  logs:     podman exec $name journalctl -f
  remove:   make demo-destroy
MSG
