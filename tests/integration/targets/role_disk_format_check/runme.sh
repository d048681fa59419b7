#!/usr/bin/env bash
# kvm.images.migrate --check --diff tells the story of the real run in Ansible's own terms: on a host with a
# shut-off guest to convert, a running guest to copy live and a guest pinned to raw, the check run reports
# changes (RECAP changed > 0) with a diff naming each domain and its qcow2 driver, and writes nothing on the
# hypervisor - no image, no definition, no journal, no lock, no state directory. The real run that follows
# makes those changes; a check run after it reports none. Then a running guest taken offline with its
# originals not kept runs again on its qcow2 and its original is gone, and one whose live copy cannot start
# fails the host in that disk's own words while it runs on. No run without a failure prints a warning.
set -euo pipefail

target=role_disk_format_check
prefix=kvm-images-it-check-
# shellcheck source=tests/playbooks/role-run.sh
. "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images/tests/playbooks/role-run.sh"
off=${prefix}off
live=${prefix}live
pinned=${prefix}pinned
down=${prefix}down
foreign=${prefix}foreign

cleanup() {
  "${labctl[@]}" remove "$off" "$live" "$pinned" "$down" "$foreign" >/dev/null
  rm -rf "$lab"
}
fresh_lab

for name in off live pinned; do dd if=/dev/urandom of="$lab/$name.raw" bs=1M count=16 status=none; done
"${labctl[@]}" define --name "$off" --serial "$lab/off.log" --disk "$lab/off.raw" >/dev/null
"${labctl[@]}" define --name "$pinned" --serial "$lab/pinned.log" --disk "$lab/pinned.raw" >/dev/null
"${labctl[@]}" define --name "$live" --serial "$lab/live.log" --disk "$lab/live.raw" --start >/dev/null
"${labctl[@]}" wait-serial "$lab/live.log" --pattern "KVMIMAGES-CHECKSUM vda" --timeout 300 >/dev/null

local_inventory <<YAML
    disk_format_include: ["$prefix*"]
    disk_format_domains: {"$pinned": {format: raw}}
    disk_format_report_dir: $lab/report
YAML
recap_changed() { sed -n 's/^localhost *: .*changed=\([0-9]*\) .*/\1/p' "$1" | head -n 1; }
definitions() { for name in "$off" "$live" "$pinned"; do "${virsh[@]}" dumpxml --inactive "$name"; done; }
no_warning() { ! grep -E '\[WARNING\]|DEPRECATION|Deprecat' "$1" || fail "$1 has a warning"; }

definitions > "$lab/definitions-before.xml"
ls -a "$lab" > "$lab/files-before.txt"

echo "== a hypervisor older than the oldest supported: refused before anything, in words"
# The floor raised above this machine's versions stands in for an older hypervisor.
if migrate -e '{"_disk_format_oldest": {"qemu_version": "99.0.0", "libvirt_version": "99.0.0"}}' \
  > "$lab/old.log" 2>&1; then
  fail "a hypervisor below the oldest supported was migrated"
fi
grep -Eq "localhost runs QEMU [0-9.]+ and libvirt [0-9.]+; the oldest supported are QEMU 99.0.0 and libvirt 99.0.0" \
  "$lab/old.log" || { cat "$lab/old.log"; fail "the refusal does not name the versions"; }
[ "$(recap_changed "$lab/old.log")" = 0 ] || fail "the refused host changed something"
definitions | cmp -s - "$lab/definitions-before.xml" || fail "the refused host changed a definition"
rm -rf "$lab/report" "$lab/state"

echo "== check mode, with diff: what the real run would do, and nothing done"
migrate --check --diff > "$lab/check.log" 2>&1 || { cat "$lab/check.log"; fail "the check run failed"; }
changed=$(recap_changed "$lab/check.log")
[ "${changed:-0}" -gt 0 ] || fail "check mode reported changed=${changed:-none} on a host with work to do"
grep -q -- "--- before: $off (before)" "$lab/check.log" || fail "no diff of $off's definition"
grep -q "+      <driver name=\"qemu\" type=\"qcow2\"/>" "$lab/check.log" || fail "no qcow2 driver in the diff"
grep -q "+      <source file=\"$lab/off.qcow2\"/>" "$lab/check.log" || fail "no new source in the diff"
{ grep -q "vda: $lab/live.raw (raw)" "$lab/check.log" && grep -q "vda: $lab/live.qcow2 (qcow2)" "$lab/check.log"; } ||
  fail "no diff of the live copy of $live"
grep -q "$lab/off.qcow2: absent" "$lab/check.log" || fail "no diff of the new image"
definitions | cmp -s - "$lab/definitions-before.xml" || fail "check mode changed a definition"
# shellcheck disable=SC2010 # compared with the listing ls -a made before; the lab's names are plain
ls -a "$lab" | grep -v -e '^report$' -e '\.log$' | cmp -s - <(grep -v '\.log$' "$lab/files-before.txt") ||
  fail "check mode left files: $(ls -a "$lab")"
[ ! -e "$lab/state" ] || fail "check mode made the state directory"
[ "$("${virsh[@]}" domstate "$off")" = "shut off" ] || fail "$off was started"
# Guests outside the include list (other tests', an operator's) may share this hypervisor: the report names
# them as skipped, and only this test's guests are planned.
python3 - "$lab/report/report.json" "$prefix" <<'PY' || fail "the check run's report does not say what was planned"
import json, sys
report, prefix = json.load(open(sys.argv[1])), sys.argv[2]
assert report["mode"] == "check", report["mode"]
ours = {(d["domain"][len(prefix):], d["target"]): d["status"] for d in report["disks"] if d["domain"].startswith(prefix)}
assert ours == {("live", "vda"): "planned", ("off", "vda"): "planned", ("pinned", "vda"): "ok"}, ours
others = {d["domain"]: d["status"] for d in report["disks"] if not d["domain"].startswith(prefix)}
assert set(others.values()) <= {"skipped"}, others
PY
no_warning "$lab/check.log"

echo "== the real run"
migrate > "$lab/real.log" 2>&1 || { cat "$lab/real.log"; fail "the real run failed"; }
[ "$(recap_changed "$lab/real.log")" -gt 0 ] || fail "the real run changed nothing"
[ "$(defined_source_of "$off")" = "$lab/off.qcow2" ] || fail "$off not switched"
[ "$(source_of "$live")" = "$lab/live.qcow2" ] || fail "$live not copied live"
[ "$(defined_source_of "$pinned")" = "$lab/pinned.raw" ] || fail "$pinned was touched"
no_warning "$lab/real.log"

echo "== check mode once converged: nothing to do"
migrate --check --diff > "$lab/check-again.log" 2>&1 || { cat "$lab/check-again.log"; fail "the second check failed"; }
[ "$(recap_changed "$lab/check-again.log")" = 0 ] || fail "check mode reports changes on a converged host"
no_warning "$lab/check-again.log"

echo "== a running guest taken offline, originals not kept: started again on its qcow2, its original removed"
dd if=/dev/urandom of="$lab/down.raw" bs=1M count=16 status=none
cp "$lab/down.raw" "$lab/down.bytes"
"${labctl[@]}" define --name "$down" --serial "$lab/down.log" --disk "$lab/down.raw" --start >/dev/null
"${labctl[@]}" wait-serial "$lab/down.log" --pattern "KVMIMAGES-CHECKSUM vda" --timeout 300 >/dev/null
migrate -e disk_format_method=offline -e disk_format_keep_source=false -e '{"disk_format_include": ["'"$down"'"]}' \
  > "$lab/down-run.log" 2>&1 || { cat "$lab/down-run.log"; fail "the offline run of $down failed"; }
[ "$("${virsh[@]}" domstate "$down")" = "running" ] || fail "$down was not started again"
{ [ "$(source_of "$down")" = "$lab/down.qcow2" ] && [ "$(defined_source_of "$down")" = "$lab/down.qcow2" ]; } ||
  fail "$down does not run on its qcow2"
qemu-img compare -q -U -f raw -F qcow2 "$lab/down.bytes" "$lab/down.qcow2" || fail "down.qcow2 differs from down.raw"
[ ! -e "$lab/down.raw" ] || fail "the original of $down, started again on its qcow2, was kept"
[ -e "$lab/off.raw" ] || fail "the original of $off was removed"
python3 - "$lab/report/report.json" "$down" <<'PY' || fail "the report does not say $down runs on its new image"
import json, sys
[disk] = [d for d in json.load(open(sys.argv[1]))["disks"] if d["domain"] == sys.argv[2]]
assert disk["status"] == "converted" and disk["running"] is True and disk["downtime_s"] > 0, disk
PY
no_warning "$lab/down-run.log"

echo "== a running guest whose live copy cannot start: the host fails in the disk's own words, the guest runs on"
dd if=/dev/urandom of="$lab/foreign.raw" bs=1M count=16 status=none
echo "not ours" > "$lab/foreign.qcow2"
"${labctl[@]}" define --name "$foreign" --serial "$lab/foreign.log" --disk "$lab/foreign.raw" --start >/dev/null
"${labctl[@]}" wait-serial "$lab/foreign.log" --pattern "KVMIMAGES-CHECKSUM vda" --timeout 300 >/dev/null
if migrate -e '{"disk_format_include": ["'"$foreign"'"]}' > "$lab/foreign-run.log" 2>&1; then
  fail "a live copy onto a file it does not own went through"
fi
grep -q "$foreign vda ($lab/foreign.raw): $lab/foreign.qcow2 exists; a block copy would overwrite it. Nothing was changed; $foreign runs on, each disk on the image it was using." \
  "$lab/foreign-run.log" || { cat "$lab/foreign-run.log"; fail "the failure is not in the disk's own words"; }
{ [ "$(source_of "$foreign")" = "$lab/foreign.raw" ] && [ "$("${virsh[@]}" domstate "$foreign")" = "running" ]; } ||
  fail "$foreign does not run on its original"
[ "$(cat "$lab/foreign.qcow2")" = "not ours" ] || fail "the file at the destination was touched"
python3 - "$lab/report/report.json" "$foreign" <<'PY' || fail "the report does not say why $foreign failed"
import json, sys
[disk] = [d for d in json.load(open(sys.argv[1]))["disks"] if d["domain"] == sys.argv[2]]
assert disk["status"] == "failed" and "exists; a block copy would overwrite it" in disk["error"], disk
PY
echo "check-mode test passed"
