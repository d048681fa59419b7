#!/usr/bin/env bash
# Prepare this machine for the demo lab and the tests: Debian packages, the
# project's virtualenv, a running libvirtd and the test guest. Safe to re-run:
# every step skips what is already in place.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KVM_IMAGES_VENV:-$root/.venv}
lab_dir=${KVM_IMAGES_LAB:-/var/lib/kvm-images-lab}
python=${KVM_IMAGES_PYTHON:-}

apt_packages=(
  qemu-utils qemu-system-x86
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
  linux-image-cloud-amd64 busybox-static cpio gzip
  fio e2fsprogs util-linux xorriso shellcheck rsync chromium strace
  openssh-server openssh-client python3-libvirt python3-lxml mmdebstrap
)

log() { printf '==> %s\n' "$*"; }

install_packages() {
  local missing=()
  local pkg
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages present"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

pick_python() {
  if [ -n "$python" ]; then echo "$python"; return; fi
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))'; then
      command -v "$candidate"; return
    fi
  done
  echo "no Python 3.11-3.13 found" >&2
  exit 1
}

make_venv() {
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(cat "$root/requirements.txt" "$root/tests/requirements.txt" | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "virtualenv up to date: $venv"
    return
  fi
  log "building virtualenv $venv"
  "$(pick_python)" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$root/requirements.txt" -r "$root/tests/requirements.txt"
  echo "$want" > "$stamp"
}

log "host setup"
install_packages
make_venv
"$root/tools/seed-ansible-test-pip.sh" "$venv"
"$root/tools/start-libvirt.sh"
"$root/tests/guest/build.sh" "$lab_dir/guest"
log "ready: venv $venv, lab $lab_dir"
