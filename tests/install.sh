#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (as root):
# Debian's Subversion, the podman tool set for the container tests, and the
# Python packages (the runner itself, editable, with its test extras).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(subversion openssl
  # the service toolkit's Redis mode (tests/toolkit start a real redis-server)
  redis-server
  # deploy/compose's nginx.conf, run in front of replicas (tests/test_compose_nginx.py)
  nginx
  # the container tests (tests/container/build.sh installs these too when run alone)
  podman buildah runc crun fuse-overlayfs slirp4netns uidmap debootstrap
  containernetworking-plugins iptables catatonit
  # deploy/compose: containers find each other by name on podman's CNI networks
  golang-github-containernetworking-plugin-dnsname)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts the servers it installs (nginx on :80, redis on :6379); the
  # tests start their own on free ports, so none is started here.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# The service toolkit (a distribution of its own), with every extra its tests use.
python3 -m pip install -q --disable-pip-version-check -e './toolkit[redis,prometheus,openapi]'
