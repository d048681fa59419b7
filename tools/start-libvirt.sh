#!/usr/bin/env bash
# Start virtlogd and libvirtd by hand (PID 1 is not systemd on these machines).
# Idempotent: a daemon whose pidfile names a live process is left alone.
set -euo pipefail

uri=qemu:///system

running() {
  local pidfile=$1
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# QEMU runs as libvirt-qemu:kvm; fix the node before libvirtd probes it, or
# every define waits for the failing capability probe.
if [ -e /dev/kvm ]; then
  chgrp kvm /dev/kvm
  chmod 660 /dev/kvm
fi

# The lab keeps images beside files that qemu must reach; the default
# dynamic ownership is kept so owner/mode behaviour matches production hosts.
mkdir -p /run/libvirt

running /run/virtlogd.pid || virtlogd -d
if ! running /run/libvirtd.pid; then
  libvirtd -d
fi

for _ in $(seq 1 60); do
  if virsh -c "$uri" version >/dev/null 2>&1; then
    echo "==> libvirtd answers on $uri"
    exit 0
  fi
  sleep 0.5
done
echo "libvirtd did not answer on $uri within 30 s" >&2
exit 1
