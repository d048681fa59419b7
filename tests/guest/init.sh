#!/bin/sh
# /init of the test guest. Prints, on the first serial port:
#   KVMIMAGES-BOOT <uptime>
#   KVMIMAGES-CHECKSUM <disk> <sha256 of the whole disk>   (one line per virtio disk)
#   KVMIMAGES-HEARTBEAT <counter> <uptime>                 (every 0.25 s)
# and powers off on an ACPI power button event (virsh shutdown).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/ttyS0 2>&1

while read -r module; do
  insmod "/modules/$module.ko"
done < /modules/order

echo "KVMIMAGES-BOOT $(cut -d' ' -f1 /proc/uptime)"

mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho KVMIMAGES-POWEROFF\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
# acpid opens the event devices present when it starts: wait for the button.
tries=0
while ! grep -q 'Power Button' /proc/bus/input/devices && [ "$tries" -lt 50 ]; do
  usleep 100000
  tries=$((tries + 1))
done
# -d: stay in the foreground and log to stderr; with no syslogd in the guest
# the daemonised acpid never ran its action.
# kvmimages.noacpi on the kernel command line: a guest that ignores ACPI shutdown.
if ! grep -q kvmimages.noacpi /proc/cmdline; then
  acpid -d -c /etc/acpi &
fi

heartbeat() {
  n=0
  while :; do
    echo "KVMIMAGES-HEARTBEAT $n $(cut -d' ' -f1 /proc/uptime)"
    n=$((n + 1))
    usleep 250000
  done
}
heartbeat &

tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
  usleep 100000
  tries=$((tries + 1))
done
for disk in /dev/vd?; do
  [ -b "$disk" ] || continue
  sum=$(sha256sum "$disk" | cut -d' ' -f1)
  echo "KVMIMAGES-CHECKSUM ${disk#/dev/} $sum"
done

while :; do sleep 3600; done
