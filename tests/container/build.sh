#!/usr/bin/env bash
# Builds the workspace image with podman, from nothing to a tagged image.
#
#   bash tests/container/build.sh [IMAGE]     (default IMAGE: localhost/workspace-runner:test)
#
# Idempotent and fast when cached: the podman tools are installed only when
# missing, the Debian base is made once per machine (debootstrap, no registry
# needed) and tagged as the Dockerfile's default BASE_IMAGE, and podman reuses
# the layers of earlier builds. Prints the image name as its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="${1:-localhost/workspace-runner:test}"
base_image="docker.io/library/debian:bookworm-slim"
export CONTAINERS_CONF="$here/containers.conf"

log() { echo "[build.sh] $*" >&2; }

install_tools() {
  local tools=(podman buildah runc crun fuse-overlayfs slirp4netns uidmap debootstrap
               containernetworking-plugins iptables catatonit)
  local missing=()
  for pkg in "${tools[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The Debian mirror this machine uses (registries other than Debian's and
# PyPI may be unreachable, so the base comes from debootstrap, not a pull).
debian_mirror() {
  local uri
  uri="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources \
         2>/dev/null || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
  if podman image exists "$base_image"; then
    return
  fi
  rootfs="$(mktemp -d /var/tmp/debian-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT  # also when debootstrap fails
  log "making the base $base_image with debootstrap (once per machine)"
  debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >&2
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm >&2
  podman tag localhost/debian:bookworm "$base_image"
  rm -rf "$rootfs"
  trap - EXIT
}

# A machine behind a TLS-inspecting proxy trusts it through certificates in
# /usr/local/share/ca-certificates; the build sees them there too, so Debian's
# ca-certificates adds them to the image's store (pip and the runner's
# downloads use that store: REQUESTS_CA_BUNDLE in the Dockerfile).
build_volumes() {
  local local_cas=/usr/local/share/ca-certificates
  if compgen -G "$local_cas/*.crt" >/dev/null; then
    echo "--volume=$local_cas:$local_cas:ro"
  fi
}

install_tools
make_base
log "building $image"
# shellcheck disable=SC2046 # build_volumes prints zero or one whole argument
podman build --format docker --layers $(build_volumes) -t "$image" "$root" >&2
echo "$image"
