#!/usr/bin/env bash
# Build a systemd-capable Debian base image from Debian's packages (no registry needed)
# and load it into podman. Cached: the image is tagged with a hash of this recipe,
# so it is rebuilt only when the recipe changes.
#   tools/build-image.sh bookworm|trixie
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/lib.sh
. "$here/lib.sh"

suite=${1:?usage: build-image.sh bookworm|trixie}
case "$suite" in
  bookworm) name=debian12 ;;
  trixie) name=debian13 ;;
  *) die "unknown Debian suite '$suite' (expected bookworm or trixie)" ;;
esac

# What a target needs before Ansible runs, as on a real fleet: systemd as PID 1, a user
# manager (dbus, dbus-user-session, libpam-systemd), python3 for modules, openssh-server
# and a non-root user `deploy` with passwordless sudo for `become` (the scenarios connect
# as that user over SSH; its authorized key is installed per run by the scenario).
packages=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,python3,python3-apt,sudo,procps,iproute2,ca-certificates,openssh-server
mirror=${SSE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
recipe_hash=$( { cat "$0"; echo "$suite $packages $mirror"; } | sha256sum | cut -c1-12)
image="localhost/sse-$name-systemd"
tag="$image:$recipe_hash"

podman_env
if podman image exists "$tag"; then
  echo "image $tag is up to date"
  exit 0
fi

# Host keys are made by each container at its first start, never shared through the image.
export ssh_keygen_dropin='[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t'

cache_dir="$here/../.cache/images"
mkdir -p "$cache_dir"
tarball="$cache_dir/$name-$recipe_hash.tar"
start=$(date +%s)
echo "building $tag from Debian $suite packages (mmdebstrap)..."
# keep the package lists, so apt on a fresh container can install without an update
mmdebstrap --quiet --variant=minbase --include="$packages" --skip=cleanup/apt/lists \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; touch "$1"/etc/machine-id' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service getty@tty1.service console-getty.service >/dev/null 2>&1 || true' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='mkdir -p "$1"/etc/systemd/system/ssh.service.d && printf "%s\n" "$ssh_keygen_dropin" > "$1"/etc/systemd/system/ssh.service.d/host-keys.conf' \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash deploy' \
  --customize-hook='echo "deploy ALL=(ALL:ALL) NOPASSWD: ALL" > "$1"/etc/sudoers.d/deploy && chmod 0440 "$1"/etc/sudoers.d/deploy' \
  "$suite" "$tarball" "$mirror"
podman import --quiet \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL org.sse-deploy.recipe=$recipe_hash" \
  "$tarball" "$tag" >/dev/null
podman tag "$tag" "$image:latest"
rm -f "$tarball"
echo "built $tag in $(( $(date +%s) - start )) s"
