#!/usr/bin/env bash
# Build the tiny bootable test guest from Debian packages (no downloads):
# the cloud kernel for direct kernel boot and an initramfs holding a static
# busybox, the virtio and ACPI button modules, and tests/guest/init.sh.
# Usage: build.sh OUTDIR   -> OUTDIR/vmlinuz, OUTDIR/initrd.img
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
modules_wanted=(virtio_pci virtio_blk button evdev)

kver=$(find /lib/modules -maxdepth 1 -name '*-cloud-amd64' -printf '%f\n' | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "linux-image-cloud-amd64 is not installed" >&2; exit 1; }
kernel=/boot/vmlinuz-$kver
busybox=/bin/busybox
inputs=("$kernel" "$busybox" "$here/init.sh" "$here/build.sh")

if [ -s "$out/initrd.img" ] && [ -s "$out/vmlinuz" ]; then
  fresh=yes
  for input in "${inputs[@]}"; do
    [ "$input" -nt "$out/initrd.img" ] && fresh=no
  done
  if [ "$fresh" = yes ]; then
    echo "==> test guest up to date: $out"
    exit 0
  fi
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,etc,modules,tmp}
cp "$busybox" "$stage/bin/busybox"
cp "$here/init.sh" "$stage/init"
ln -s busybox "$stage/bin/sh"
chmod 755 "$stage/init"

# Resolve module dependencies from modules.dep, dependencies first.
declare -A seen=()
order=()
add_module() {
  local name=$1 line path dep
  [ -n "${seen[$name]:-}" ] && return
  seen[$name]=1
  line=$(grep -E "/${name}\.ko:" "/lib/modules/$kver/modules.dep") ||
    { echo "module $name not found for $kver" >&2; exit 1; }
  path=${line%%:*}
  for dep in ${line#*:}; do
    dep=${dep##*/}
    add_module "${dep%.ko}"
  done
  cp "/lib/modules/$kver/$path" "$stage/modules/$name.ko"
  order+=("$name")
}
for module in "${modules_wanted[@]}"; do
  add_module "$module"
done
printf '%s\n' "${order[@]}" > "$stage/modules/order"

mkdir -p "$out"
chmod 755 "$out" "$(dirname "$out")"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img.tmp"
cp "$kernel" "$out/vmlinuz.tmp"
chmod 644 "$out/initrd.img.tmp" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "==> test guest built: $out (kernel $kver, modules: ${order[*]})"
