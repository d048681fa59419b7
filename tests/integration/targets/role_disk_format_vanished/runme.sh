#!/usr/bin/env bash
# Shut-off domains renamed and undefined while the role converts their disks, between its
# discovery and its switch: each fails by name, its original intact and its new image kept
# whole; the other domain converted with them is switched all the same; the next run
# converges the renamed domain, and the run after changes nothing. Then libvirtd stops
# while a rollback converts: the host fails by name with every definition intact, and the
# rollback run again once libvirtd is back converges.
# shellcheck disable=SC2119 # converge and start_run take extra ansible-playbook arguments, none needed here
set -euo pipefail

target=role_disk_format_vanished
prefix=kvm-images-it-vanish-
# shellcheck source=tests/playbooks/role-run.sh
. "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images/tests/playbooks/role-run.sh"
renamed=${prefix}renamed
gone=${prefix}gone
big=${prefix}big

cleanup() {
  "$collection/tools/start-libvirt.sh" >/dev/null
  "${labctl[@]}" remove "${prefix}a" "$renamed" "$gone" "$big" >/dev/null
  rm -rf "$lab"
}
fresh_lab

dd if=/dev/urandom of="$lab/a.raw" bs=1M count=8 status=none
dd if=/dev/urandom of="$lab/big.raw" bs=1M count=384 status=none
dd if=/dev/urandom of="$lab/gone.raw" bs=1M count=8 status=none
a_sum=$(sha256sum <"$lab/a.raw")
gone_sum=$(sha256sum <"$lab/gone.raw")
"${labctl[@]}" define --name "${prefix}a" --serial "$lab/a.log" --disk "$lab/a.raw" >/dev/null
"${labctl[@]}" define --name "$big" --serial "$lab/big.log" --disk "$lab/big.raw" >/dev/null
"${labctl[@]}" define --name "$gone" --serial "$lab/gone.log" --disk "$lab/gone.raw" >/dev/null

echo "== run 1: while the big disk converts, one domain is renamed and another undefined"
start_run
wait_for "$lab/.big.qcow2.kvm-images-tmp-*" 120
"${virsh[@]}" domrename "${prefix}a" "$renamed" >/dev/null
"${virsh[@]}" undefine "$gone" >/dev/null
set +e
wait "$run"
first=$?
set -e
[ "$first" -ne 0 ] || fail "the run should have failed the host"
grep -q "domain ${prefix}a was undefined or renamed during the run; its new image(s) $lab/a.qcow2 stay" "$run_log" ||
  fail "no failure naming ${prefix}a"
grep -q "domain $gone was undefined or renamed during the run; its new image(s) $lab/gone.qcow2 stay" "$run_log" ||
  fail "no failure naming $gone"
[ "$(defined_source_of "$big")" = "$lab/big.qcow2" ] || fail "$big was not switched"
[ "$(defined_source_of "$renamed")" = "$lab/a.raw" ] || fail "$renamed no longer on its original"
[ "$(sha256sum <"$lab/a.raw")" = "$a_sum" ] || fail "a.raw changed"
[ "$(sha256sum <"$lab/gone.raw")" = "$gone_sum" ] || fail "gone.raw changed"
qemu-img compare -q -f raw -F qcow2 "$lab/gone.raw" "$lab/gone.qcow2" || fail "gone.qcow2 is not a whole copy"
[ -z "$(left_behind)" ] || fail "left behind: $(left_behind)"

echo "== run 2: the renamed domain converges"
converge | tee "$lab/run2.log"
[ "$(defined_source_of "$renamed")" = "$lab/a.qcow2" ] || fail "$renamed not switched"
qemu-img compare -q -f raw -F qcow2 "$lab/a.raw" "$lab/a.qcow2" || fail "a.qcow2 differs from a.raw"

echo "== run 3: nothing to change"
converge | tee "$lab/run3.log"
grep -Eq '^localhost +: .*changed=0 .*failed=0' "$lab/run3.log" || fail "run 3 changed something"
echo "== run 4: libvirtd stops while the rollback converts"
start_run -e disk_format_rollback=true
wait_for "$lab/.big.raw.kvm-images-tmp-*" 120
kill "$(cat /run/libvirtd.pid)"
set +e
wait "$run"
fourth=$?
set -e
libvirtd_was_down=$(virsh -c qemu:///system version >/dev/null 2>&1 && echo no || echo yes)
"$collection/tools/start-libvirt.sh" >/dev/null
[ "$libvirtd_was_down" = yes ] || fail "libvirtd was back before the run ended"
[ "$fourth" -ne 0 ] || fail "the run should have failed the host"
grep -q "failed at offline: $big vda ($lab/big.qcow2): cannot connect to libvirt at qemu:///system" "$run_log" ||
  fail "no failure naming $big and libvirt"
[ "$(defined_source_of "$big")" = "$lab/big.qcow2" ] || fail "$big no longer defined on big.qcow2"
[ "$(defined_source_of "$renamed")" = "$lab/a.qcow2" ] || fail "$renamed no longer defined on a.qcow2"
[ -z "$(left_behind)" ] || fail "left behind: $(left_behind)"

echo "== run 5: the rollback, again, converges"
converge -e disk_format_rollback=true | tee "$lab/run5.log"
[ "$(defined_source_of "$big")" = "$lab/big.raw" ] || fail "$big not rolled back"
[ "$(defined_source_of "$renamed")" = "$lab/a.raw" ] || fail "$renamed not rolled back"
[ "$(sha256sum <"$lab/a.raw")" = "$a_sum" ] || fail "a.raw rolled back to other content"
echo "vanished-domain test passed"
