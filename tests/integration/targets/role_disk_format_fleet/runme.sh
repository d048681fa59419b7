#!/usr/bin/env bash
# A fleet of two Debian generations on this machine: hv1..hv3, users of this
# Debian 12 host with a qemu:///session libvirtd each behind one sshd
# (tests/fleet/fleet.sh), and trixie, a Debian 13 root in namespaces of its own
# with its own sshd and libvirtd (tests/fleet/trixie.sh). Every run covers the
# whole fleet: the plan; a migration that converges hv1, hv2 and trixie while
# hv3, short of space, fails alone and keeps its guests running on intact
# images; a second migration that changes nothing; a rollback that brings every
# disk back to raw at its original path. tests/fleet/verify.yml checks after each.
set -euo pipefail

# ansible-test runs a copy of this target; the collection it tests is on the collections path.
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images
fleet=$collection/tests/fleet
export KVM_IMAGES_LAB=${KVM_IMAGES_LAB_DIR:-${KVM_IMAGES_LAB:-/var/lib/kvm-images-lab}}
dir=$KVM_IMAGES_LAB/scratch/role_disk_format_fleet
report=$dir/report
debian12=(hv1 hv2 hv3)

fail() { echo "FAILED: $*" >&2; exit 1; }
# Each step's time, printed at the end: the trixie host's share of the target.
timings=()
timed() {
  local name=$1 started=$EPOCHREALTIME
  shift
  "$@"
  timings+=("$(awk -v a="$started" -v b="$EPOCHREALTIME" -v n="$name" 'BEGIN { printf "%-26s %6.1f s", n, b - a }')")
}
# A host's recap line in a run's log: reachable, with CHANGED and FAILED (regular expressions).
recap() {
  local log=$1 host=$2 changed=$3 failed=$4
  grep -Eq "^$host +: ok=[0-9]+ +changed=$changed +unreachable=0 +failed=$failed " "$log" ||
    fail "$host: not changed=$changed failed=$failed in the recap of $log"
}
some='[1-9][0-9]*'

cleanup() {
  "$fleet/fleet.sh" down "${#debian12[@]}" "$dir"
  "$fleet/trixie.sh" down
}
trap cleanup EXIT
cleanup

timed "trixie root (build)" "$fleet/trixie.sh" build
inventory=$("$fleet/fleet.sh" up "${#debian12[@]}" "$dir")
timed "trixie start" "$fleet/trixie.sh" up "$dir/id_ed25519.pub" > "$dir/trixie.vars"
printf '[hypervisors]\ntrixie %s\n' "$(cat "$dir/trixie.vars")" > "$dir/trixie.ini"
fleet_inventory=(-i "$inventory" -i "$dir/trixie.ini")
hosts=("${debian12[@]}" trixie)
converging=(hv1 hv2 trixie)

# hv3's images live on a file system that holds them but not their conversions.
mount -t tmpfs -o size=100m,mode=755,uid="$(id -u kvmimg-hv3)",gid="$(id -g kvmimg-hv3)" tmpfs /home/kvmimg-hv3/images
xorriso -as mkisofs -quiet -o "$dir/tools.iso" /etc/hostname

playbook() { ansible-playbook "${fleet_inventory[@]}" -f "${#hosts[@]}" "$@"; }
role_run() {
  local log=$1
  shift
  set +e
  playbook -e @"$fleet/guests.yml" -e disk_format_report_dir="$report" -e disk_format_max_fail_percentage=100 "$@" \
    | tee "$log"
  last_exit=${PIPESTATUS[0]}
  set -e
  echo "exit code: $last_exit"
  # The controller's own play (the fleet report) never fails, whatever the hypervisors did.
  grep -Eq "^localhost +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0 " "$log" ||
    fail "the controller's play failed in $log"
}
# How ansible-playbook ended the last role_run: 0 when every host succeeded, else not.
exited() {
  if [ "$1" = ok ]; then [ "$last_exit" -eq 0 ] || fail "$2 exited $last_exit"
  else [ "$last_exit" -ne 0 ] || fail "$2 exited 0 though a host failed"; fi
}

lab() {
  playbook "$fleet/lab.yml" -e labctl_src="$collection/tests/guest/labctl.py" -e iso_src="$dir/tools.iso" | tee "$dir/lab.log"
}
timed "lab" lab

# A host's disks in the run's report, as sorted DOMAIN:ACTION words.
planned() {
  python3 - "$report/report.json" "$1" <<'PY'
import json, sys
disks = json.load(open(sys.argv[1], encoding="utf-8"))["disks"]
print(" ".join(sorted(f"{disk['domain']}:{disk['action']}" for disk in disks if disk["host"] == sys.argv[2])))
PY
}

timed "plan" role_run "$dir/plan.log" kvm.images.plan
exited ok "plan"
for host in "${hosts[@]}"; do
  recap "$dir/plan.log" "$host" 0 0
  plan=$(planned "$host")
  [ "$plan" = "db:convert db:convert legacy:ok web:convert web:convert web:skip" ] || fail "$host: planned $plan"
done

timed "migrate" role_run "$dir/migrate.log" kvm.images.migrate
exited failed "migrate"
for host in "${converging[@]}"; do recap "$dir/migrate.log" "$host" "$some" 0; done
recap "$dir/migrate.log" hv3 0 1
grep -q 'Not enough space on hv3' "$dir/migrate.log" || fail "hv3 failed for another reason"
timed "verify (db boots)" playbook "$fleet/verify.yml" -e "converged='${converging[*]}'" -e boot_db=true

timed "migrate again" role_run "$dir/again.log" kvm.images.migrate
exited failed "migrate again"
for host in "${converging[@]}"; do recap "$dir/again.log" "$host" 0 0; done
recap "$dir/again.log" hv3 0 1

timed "rollback" role_run "$dir/rollback.log" kvm.images.rollback
exited ok "rollback"
for host in "${converging[@]}"; do recap "$dir/rollback.log" "$host" "$some" 0; done
recap "$dir/rollback.log" hv3 0 0
timed "verify" playbook "$fleet/verify.yml" -e converged=

echo "==> fleet test passed"
grep -o 'VERSIONS [^"]*' "$dir/lab.log" | sort -u
printf '%s\n' "times:" "${timings[@]}"
