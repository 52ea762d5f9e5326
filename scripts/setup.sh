#!/usr/bin/env bash
# One-command, idempotent setup for a fresh machine: Debian packages, the project venv, the lab guest image.
# Called by `make setup` (and so by `make test` and `make demo`). Relies on nothing left on the machine by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(openvswitch-switch-dpdk openvswitch-common dpdk dpdk-dev qemu-system-x86 libvirt-daemon-system libvirt-clients
      libxml2-utils libvirt-dev pkg-config busybox-static linux-image-amd64 containernetworking-plugins iproute2 cpio
      kmod procps psmisc util-linux containerd runc mmdebstrap buildah linux-perf iputils-ping
      prometheus podman xz-utils)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: PID 1 is not systemd here; keep package scripts from starting services we start by hand.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
else
  echo "setup: Debian packages present"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.vhostplug-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing vhostplug (editable) and dev tools into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,libvirt,lab]'
  touch "$stamp"
else
  echo "setup: .venv up to date"
fi

# The lab's guest (Debian kernel + busybox initramfs with virtio_net), built once and cached.
if [ -x scripts/build-guest.sh ]; then
  scripts/build-guest.sh
fi
echo "setup: done"
