#!/bin/sh
# /init of the test guest. Prints, on the first serial port:
#   KVMIMAGES-BOOT <uptime>
#   KVMIMAGES-CHECKSUM <disk> <sha256 of the whole disk>   (one line per virtio disk)
#   KVMIMAGES-HEARTBEAT <counter> <uptime>                 (every 0.25 s)
# and powers off on an ACPI power button event (virsh shutdown).
# kvmimages.writer=MIB[,RATE] on the kernel command line: a busy guest. After
# the checksum it rewrites the first MIB MiB of vda over and over (1 MiB direct
# writes of zeros; RATE caps the average at RATE MiB/s by pausing between
# passes), each pass's first sector stamped "KVMIMAGES-PASS <pass>", and prints
# after each pass (the uptimes around its writes, pauses left out):
#   KVMIMAGES-WRITER <pass> <MiB> <start uptime> <end uptime>
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

writer_spec=
read -r cmdline < /proc/cmdline
for word in $cmdline; do
  case $word in
    kvmimages.writer=*) writer_spec=${word#kvmimages.writer=} ;;
  esac
done
writer_mib=${writer_spec%%,*}
writer_rate=0
case $writer_spec in
  *,*) writer_rate=${writer_spec#*,} ;;
esac

# Hundredths of a second since boot.
centiseconds() {
  read -r up _ < /proc/uptime
  echo "${up%.*}${up#*.}" | sed 's/^0*//;s/^$/0/'
}

# The stamp comes first, so a pass the serial port reports is on the disk whole.
writer() {
  pass=0
  while :; do
    pass=$((pass + 1))
    start=$(cut -d' ' -f1 /proc/uptime)
    began=$(centiseconds)
    printf 'KVMIMAGES-PASS %d\n' "$pass" | dd of=/dev/vda bs=512 count=1 conv=sync oflag=direct status=none
    dd if=/dev/zero of=/dev/vda bs=1M seek=1 count=$((writer_mib - 1)) oflag=direct status=none
    echo "KVMIMAGES-WRITER $pass $writer_mib $start $(cut -d' ' -f1 /proc/uptime)"
    if [ "$writer_rate" -gt 0 ]; then
      left=$((writer_mib * 100 / writer_rate - $(centiseconds) + began))
      [ "$left" -gt 0 ] && usleep $((left * 10000))
    fi
  done
}
if [ -n "$writer_spec" ] && [ -b /dev/vda ]; then
  writer &
fi

while :; do sleep 3600; done
