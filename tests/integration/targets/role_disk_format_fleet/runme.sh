#!/usr/bin/env bash
# Three independent hypervisors on this machine (one user each with its own
# qemu:///session libvirtd, reached over ssh). One run with forks converges
# hv1 and hv2 while hv3, short of space, fails alone and keeps its guests
# running on intact images; a second run changes nothing.
set -euo pipefail

# ansible-test runs a copy of this target; the collection it tests is on the collections path.
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images
fleet=$collection/tests/fleet
dir=${KVM_IMAGES_LAB_DIR:-/var/lib/kvm-images-lab}/scratch/role_disk_format_fleet
report=$dir/report

cleanup() { "$fleet/fleet.sh" down 3 "$dir"; }
trap cleanup EXIT
cleanup
inventory=$("$fleet/fleet.sh" up 3 "$dir")

# hv3's images live on a filesystem too small for their conversions.
mount -t tmpfs -o size=80m,mode=755,uid="$(id -u kvmimg-hv3)",gid="$(id -g kvmimg-hv3)" tmpfs /home/kvmimg-hv3/images

ansible-playbook -i "$inventory" -f 3 "$fleet/lab.yml" -e labctl_src="$collection/tests/guest/labctl.py"

run_migrate() {
  ansible-playbook -i "$inventory" -f 3 kvm.images.migrate \
    -e disk_format_max_fail_percentage=100 -e disk_format_report_dir="$report" "$@"
}

set +e
run_migrate | tee "$dir/first.log"
first=${PIPESTATUS[0]}
set -e
echo "first run exit code: $first"
[ "$first" -ne 0 ] || { echo "hv3 should have failed"; exit 1; }
grep -Eq '^hv1 +: .*failed=0' "$dir/first.log"
grep -Eq '^hv2 +: .*failed=0' "$dir/first.log"
grep -Eq '^hv3 +: .*failed=1' "$dir/first.log"
grep -q 'Not enough space on hv3' "$dir/first.log"

ansible-playbook -i "$inventory" "$fleet/verify.yml" -e '{"converged": ["hv1", "hv2"]}'

run_migrate --limit hv1,hv2 | tee "$dir/second.log"
grep -Eq '^hv1 +: .*changed=0 .*failed=0' "$dir/second.log"
grep -Eq '^hv2 +: .*changed=0 .*failed=0' "$dir/second.log"
ansible-playbook -i "$inventory" "$fleet/verify.yml" -e '{"converged": ["hv1", "hv2"]}'
echo "fleet test passed"
