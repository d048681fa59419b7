#!/usr/bin/env bash
# kill -9 in the middle of the disk_format role, twice: of ansible-playbook alone while
# a shut-off guest's disk is converted, then of its whole process group while a running
# guest's disk is copied live. Each time the original images stay intact and the guests
# defined (the running one never stops); the next run, with no hand cleanup, takes over
# the dead run's lock and stranded block job and converges; the one after changes
# nothing; and the rollback finds the switch the killed run made in its journal. Last, a
# run killed while it has the running guest shut down for an offline conversion: a run that cannot
# start it again fails by name and gives the lock back; the next run converts it and starts it
# again, instead of leaving it off.
set -euo pipefail

target=role_disk_format_killed
prefix=kvm-images-it-killed-
# shellcheck source=tests/playbooks/role-run.sh
. "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images/tests/playbooks/role-run.sh"
off=kvm-images-it-killed-off
live=kvm-images-it-killed-live

cleanup() {
  "${labctl[@]}" remove "$off" "$live" >/dev/null
  rm -rf "$lab"
}
fresh_lab

dd if=/dev/urandom of="$lab/off.raw" bs=1M count=512 status=none
dd if=/dev/urandom of="$lab/live.raw" bs=1M count=32 status=none
off_sum=$(sha256sum <"$lab/off.raw")
live_sum=$(sha256sum <"$lab/live.raw")
"${labctl[@]}" define --name "$off" --serial "$lab/off.log" --disk "$lab/off.raw" >/dev/null
"${labctl[@]}" define --name "$live" --serial "$lab/live.log" --disk "$lab/live.raw" --start >/dev/null
"${labctl[@]}" wait-serial "$lab/live.log" --pattern "KVMIMAGES-CHECKSUM vda" --timeout 300 >/dev/null
live_id=$("${virsh[@]}" domid "$live")

echo "== run 1: kill -9 of ansible-playbook alone, during the offline conversion"
start_run
wait_for "$lab/.off.qcow2.kvm-images-tmp-*" 120
kill -9 "$run"
# Its worker and module outlive it (each worker has a session of its own): the conversion
# runs to its end with nobody listening. Wait for it, as a user would find it done.
for ((step = 0; step < 600; step++)); do compgen -G "$lab/.off.qcow2.kvm-images-tmp-*" >/dev/null || break; sleep 0.2; done
[ "$(sha256sum <"$lab/off.raw")" = "$off_sum" ] || fail "off.raw changed"
[ "$(defined_source_of "$off")" = "$lab/off.raw" ] || fail "$off no longer defined on off.raw"
[ "$("${virsh[@]}" domid "$live")" = "$live_id" ] || fail "$live stopped"
[ "$(source_of "$live")" = "$lab/live.raw" ] || fail "$live left its original disk"
[ -e "$lab/state/lock" ] || fail "the killed run left no lock (was it killed at all?)"
echo "run 1 killed; left behind: $(left_behind | tr '\n' ' ')$([ -e "$lab/off.qcow2" ] && echo "off.qcow2, finished by the orphaned module")"

echo "== run 2: kill -9 of the whole process group, during the live copy (slowed by the bandwidth cap)"
start_run -e disk_format_bandwidth=1
wait_for "$lab/.live.qcow2.kvm-images-copy" 300
sleep 2
kill -9 -- "-$run"
sleep 1
[ "$(defined_source_of "$off")" = "$lab/off.qcow2" ] || fail "run 2 did not switch $off before the live copy"
grep -q "\"domain\": \"$off\"" "$lab/state/journal.jsonl" || fail "no journal line for $off"
[ "$("${virsh[@]}" domid "$live")" = "$live_id" ] || fail "$live stopped"
[ "$(source_of "$live")" = "$lab/live.raw" ] || fail "$live pivoted, the run was killed too late"
job=$("${virsh[@]}" blockjob "$live" vda --info 2>&1)
grep -q "Block Copy" <<<"$job" || fail "no stranded block job on $live: $job"
[ "$(sha256sum <"$lab/off.raw")" = "$off_sum" ] || fail "off.raw changed"
echo "run 2 killed; left behind: $(left_behind | tr '\n' ' ')"

echo "== run 3: converges, no hand cleanup"
converge -v | tee "$lab/run3.log"
# The killed run's module still followed its copy: waited for, not pulled from under it.
grep -Eq '"waited_s": ([1-9]|0\.[0-9]*[1-9])' "$lab/run3.log" || fail "run 3 did not wait for the orphaned copy"
[ "$(source_of "$live")" = "$lab/live.qcow2" ] || fail "$live not on its qcow2"
[ "$(defined_source_of "$live")" = "$lab/live.qcow2" ] || fail "$live not defined on its qcow2"
[ "$("${virsh[@]}" domid "$live")" = "$live_id" ] || fail "$live stopped"
[ -z "$(left_behind)" ] || fail "left behind: $(left_behind)"
[ ! -e "$lab/state/lock" ] || fail "the lock was not given back"
qemu-img compare -q -f raw -F qcow2 "$lab/off.raw" "$lab/off.qcow2" || fail "off.qcow2 differs from off.raw"
qemu-img compare -q -U -f raw -F qcow2 "$lab/live.raw" "$lab/live.qcow2" || fail "live.qcow2 differs from live.raw"
[ "$(sha256sum <"$lab/off.raw")" = "$off_sum" ] || fail "off.raw changed"
[ "$(sha256sum <"$lab/live.raw")" = "$live_sum" ] || fail "live.raw changed"

echo "== run 4: nothing to change"
converge | tee "$lab/run4.log"
grep -Eq '^localhost +: .*changed=0 .*failed=0' "$lab/run4.log" || fail "run 4 changed something"

echo "== rollback: both disks back to raw at their original paths, from the journal"
converge -e disk_format_rollback=true | tee "$lab/rollback.log"
[ "$(defined_source_of "$off")" = "$lab/off.raw" ] || fail "$off not rolled back"
[ "$(source_of "$live")" = "$lab/live.raw" ] || fail "$live not rolled back"
[ "$("${virsh[@]}" domid "$live")" = "$live_id" ] || fail "$live stopped"
[ "$(sha256sum <"$lab/off.raw")" = "$off_sum" ] || fail "off.raw rolled back to other content"
off_xml=$("${virsh[@]}" dumpxml --inactive "$off")
grep -q "type='raw'" <<<"$off_xml" || fail "$off not declared raw"
# Migrating again after the rollback: the qcow2 images it kept are stale, and replaced.
[ -e "$lab/live.qcow2" ] || fail "the rollback did not keep live.qcow2"
[ -e "$lab/off.qcow2" ] || fail "the rollback did not keep off.qcow2"

echo "== check mode after the rollback: the stale images it kept would be replaced, live and offline; nothing is"
stale_sums=$(sha256sum "$lab/live.qcow2" "$lab/off.qcow2")
converge --check > "$lab/check.log" 2>&1 || { cat "$lab/check.log"; fail "check mode failed on the images a rollback kept"; }
grep -Eq '^localhost +: .*changed=[1-9]' "$lab/check.log" || fail "check mode predicted no change"
[ "$(sha256sum "$lab/live.qcow2" "$lab/off.qcow2")" = "$stale_sums" ] || fail "check mode touched the stale images"
[ "$(source_of "$live")" = "$lab/live.raw" ] || fail "check mode moved $live"

echo "== run 5: kill -9 while the running guest is shut down for an offline conversion"
start_run -e disk_format_method=offline
for ((step = 0; step < 1200; step++)); do
  [ "$("${virsh[@]}" domstate "$live" 2>/dev/null)" = "shut off" ] && break
  sleep 0.05
done
kill -9 -- "-$run"
[ "$("${virsh[@]}" domstate "$live")" = "shut off" ] || fail "$live did not shut down"
sleep 3
[ "$("${virsh[@]}" domstate "$live")" = "shut off" ] || fail "$live was started again by the killed run"
[ "$(sha256sum <"$lab/live.raw")" = "$live_sum" ] || fail "live.raw changed"

echo "== run 6a: the guest the killed run left off cannot start (its disk is away): the host fails by name"
mv "$lab/live.raw" "$lab/live.raw.away"
if converge > "$lab/run6a.log" 2>&1; then fail "a guest that cannot start again went unreported"; fi
grep -q "$live on localhost, shut down by an interrupted run, could not all be started again: cannot start domain $live" \
  "$lab/run6a.log" || { cat "$lab/run6a.log"; fail "the failure to start $live is not named"; }
[ ! -e "$lab/state/lock" ] || fail "the failed run kept the hypervisor's lock"
mv "$lab/live.raw.away" "$lab/live.raw"

echo "== run 6: converts the guest the killed run left off, and starts it again"
converge | tee "$lab/run6.log"
[ "$("${virsh[@]}" domstate "$live")" = "running" ] || fail "$live was left off"
[ "$(defined_source_of "$live")" = "$lab/live.qcow2" ] || fail "$live not defined on its qcow2"
qemu-img compare -q -U -f raw -F qcow2 "$lab/live.raw" "$lab/live.qcow2" || fail "live.qcow2 differs from live.raw"

echo "== run 7: nothing to change"
converge | tee "$lab/run7.log"
grep -Eq '^localhost +: .*changed=0 .*failed=0' "$lab/run7.log" || fail "run 7 changed something"
echo "killed-run test passed"
