#!/usr/bin/env bash
# The operator's view of a long migration, with copies slowed on purpose by a bandwidth cap (8 MiB/s):
# run 1 converts two shut-off guests at once (disk_format_parallel: 2), each printing progress lines, and
# leaves a third for the next run because it could not be done by the deadline; the cap holds within 15 %.
# Run 2 converts that third guest offline and copies a running guest live, each with progress lines, the
# live one naming its copy mode. The report goes to the directory ansible-playbook runs in.
set -euo pipefail

target=role_disk_format_operator
prefix=kvm-images-it-op-
# shellcheck source=tests/playbooks/role-run.sh
. "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images/tests/playbooks/role-run.sh"
names=("${prefix}a" "${prefix}b" "${prefix}c" "${prefix}live")

cleanup() {
  "${labctl[@]}" remove "${names[@]}" >/dev/null
  rm -rf "$lab"
}
fresh_lab

dd if=/dev/urandom of="$lab/a.raw" bs=1M count=160 status=none
dd if=/dev/urandom of="$lab/b.raw" bs=1M count=160 status=none
dd if=/dev/urandom of="$lab/c.raw" bs=1M count=240 status=none
dd if=/dev/urandom of="$lab/live.raw" bs=1M count=160 status=none
for name in a b c; do
  "${labctl[@]}" define --name "$prefix$name" --serial "$lab/$name.log" --disk "$lab/$name.raw" >/dev/null
done
"${labctl[@]}" define --name "${prefix}live" --serial "$lab/live.log" --disk "$lab/live.raw" --start >/dev/null
"${labctl[@]}" wait-serial "$lab/live.log" --pattern "KVMIMAGES-CHECKSUM vda" --timeout 300 >/dev/null

local_inventory <<YAML
    disk_format_bandwidth: 8
    disk_format_progress_interval: 5
YAML
within_cap() {  # the throughput a record reports, within 15 % of the 8 MiB/s cap (not above it)
  python3 - "$lab/disk_format_report/report.json" "$1" <<'PY'
import json, sys
[disk] = [d for d in json.load(open(sys.argv[1]))["disks"] if d["domain"] == sys.argv[2]]
rate = disk["throughput_mib_s"]
assert 8 * 0.85 <= rate <= 8 * 1.15, f"{sys.argv[2]}: {rate} MiB/s under an 8 MiB/s cap"
print(f"{sys.argv[2]}: {rate} MiB/s")
PY
}

echo "== run 1: two shut-off guests at once, a third deferred by the deadline"
run_log=$lab/run1.log  # what fail shows the end of
migrate -e '{"disk_format_include": ["'"$prefix"'a", "'"$prefix"'b", "'"$prefix"'c"]}' -e disk_format_parallel=2 \
  -e disk_format_deadline=45s > "$lab/run1.log" 2>&1 || { cat "$lab/run1.log"; fail "run 1 failed"; }
grep -E "^\[localhost\] ${prefix}a vda: [0-9]+ % of 160.[0-9] MiB at [0-9.]+ (MiB|KiB)/s, .* \(offline\)$" "$lab/run1.log" \
  >/dev/null || fail "no progress line for ${prefix}a"
# Both at once: each progress tick prints a line for each of them, one after the other.
grep -A1 "^\[localhost\] ${prefix}a vda:" "$lab/run1.log" | grep -q "^\[localhost\] ${prefix}b vda:" ||
  grep -A1 "^\[localhost\] ${prefix}b vda:" "$lab/run1.log" | grep -q "^\[localhost\] ${prefix}a vda:" ||
  fail "${prefix}a and ${prefix}b were not converted at once"
[ "$(defined_source_of "${prefix}a")" = "$lab/a.qcow2" ] || fail "${prefix}a not switched"
[ "$(defined_source_of "${prefix}b")" = "$lab/b.qcow2" ] || fail "${prefix}b not switched"
[ "$(defined_source_of "${prefix}c")" = "$lab/c.raw" ] || fail "${prefix}c should have waited for the next run"
[ ! -e "$lab/c.qcow2" ] || fail "${prefix}c was converted after all"
within_cap "${prefix}a"
within_cap "${prefix}b"
python3 - "$lab/disk_format_report/report.json" "${prefix}c" <<'PY' || fail "${prefix}c is not reported deferred"
import json, sys
[disk] = [d for d in json.load(open(sys.argv[1]))["disks"] if d["domain"] == sys.argv[2]]
assert disk["status"] == "deferred" and "after the deadline" in disk["reason"], disk
PY
grep -Eq '^localhost +: .*failed=0' "$lab/run1.log" || fail "a deferred disk is not a failure"

echo "== run 2: the deferred guest offline, a running guest live"
run_log=$lab/run2.log
migrate > "$lab/run2.log" 2>&1 || { cat "$lab/run2.log"; fail "run 2 failed"; }
grep -Eq "^\[localhost\] ${prefix}c vda: [0-9]+ % of 240.[0-9] MiB at .*\(offline\)$" "$lab/run2.log" ||
  fail "no progress line for ${prefix}c"
grep -Eq "^\[localhost\] ${prefix}live vda: [0-9]+ % of 160.[0-9] MiB at .*\(live, [a-z_]+\)$" "$lab/run2.log" ||
  fail "no progress line for the live copy, with its mode"
[ "$(defined_source_of "${prefix}c")" = "$lab/c.qcow2" ] || fail "${prefix}c not converted by the next run"
[ "$(source_of "${prefix}live")" = "$lab/live.qcow2" ] || fail "${prefix}live not copied live"
within_cap "${prefix}c"
within_cap "${prefix}live"
grep -q "Fleet report: $lab/disk_format_report/report.html" "$lab/run2.log" || fail "the run does not say where"
echo "operator test passed"
