#!/usr/bin/env bash
# The fleet report never says less than the RECAP. One play over four hosts of this machine: one converges,
# one cannot reach its libvirt, one cannot be reached at all, and one converts one of a domain's two disks
# but not the other (its file system is read-only). report.json and report.html - as a person sees it, in
# headless Chromium - name all four with their outcomes, the failing ones with the step and the message, and
# each disk with its own. A domain override that names no domain is a warning and a line in the report.
set -euo pipefail

target=role_disk_format_report
prefix=kvm-images-it-report-
# shellcheck source=tests/playbooks/role-run.sh
. "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images/tests/playbooks/role-run.sh"
good=${prefix}good
pair=${prefix}pair

cleanup() {
  "${labctl[@]}" remove "$good" "$pair" >/dev/null
  if mountpoint -q "$lab/ro"; then umount "$lab/ro"; fi
  rm -rf "$lab"
}
fresh_lab

mkdir -p "$lab/ro"
mount -t tmpfs -o size=128m,mode=0755 tmpfs "$lab/ro"
dd if=/dev/urandom of="$lab/good.raw" bs=1M count=8 status=none
dd if=/dev/urandom of="$lab/pair-a.raw" bs=1M count=8 status=none
dd if=/dev/urandom of="$lab/ro/pair-b.raw" bs=1M count=8 status=none
mount -o remount,ro "$lab/ro"
"${labctl[@]}" define --name "$good" --serial "$lab/good.log" --disk "$lab/good.raw" >/dev/null
"${labctl[@]}" define --name "$pair" --serial "$lab/pair.log" --disk "$lab/pair-a.raw" --disk "$lab/ro/pair-b.raw" \
  >/dev/null

# Four inventory hosts; converging and partial are this machine, each seeing its own domains.
cat > "$lab/inventory.yml" <<YAML
hypervisors:
  hosts:
    converging:
      ansible_connection: local
      disk_format_include: ["$good"]
      disk_format_state_dir: $lab/state-converging
    nolibvirt:
      ansible_connection: local
      disk_format_uri: "qemu+unix:///system?socket=$lab/no-such-libvirt-sock"
      disk_format_state_dir: $lab/state-nolibvirt
    unreachable:
      ansible_connection: ssh
      ansible_host: 127.0.0.1
      ansible_port: 9
      ansible_ssh_common_args: "-o ConnectTimeout=5 -o StrictHostKeyChecking=no"
    partial:
      ansible_connection: local
      disk_format_include: ["$pair"]
      disk_format_state_dir: $lab/state-partial
  vars:
    ansible_python_interpreter: $python
    disk_format_domains: {"${prefix}nosuch": {format: raw}}
    disk_format_allowed_backing_dirs: ["$lab", "$lab/ro"]
    disk_format_install_dependencies: false
YAML

set +e
(cd "$lab" && ansible-playbook -i "$lab/inventory.yml" kvm.images.migrate) > "$lab/run.log" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "three hosts failed, the run should say so"
grep -Eq '^converging +: .*failed=0' "$lab/run.log" || fail "converging did not converge"
grep -Eq '^nolibvirt +: .*failed=1' "$lab/run.log" || fail "nolibvirt did not fail"
grep -Eq '^partial +: .*failed=1' "$lab/run.log" || fail "partial did not fail"
grep -q "\[WARNING\]: disk_format_domains entry '${prefix}nosuch' matches no domain on any host of the play" \
  "$lab/run.log" || fail "no warning for the override that names no domain"
# By default the report is in the directory ansible-playbook ran in.
[ -s "$lab/disk_format_report/report.json" ] || fail "no report in the working directory"
grep -q "Fleet report: $lab/disk_format_report/report.html" "$lab/run.log" || fail "the run does not say where"

python3 - "$lab/disk_format_report/report.json" "$lab" "$prefix" <<'PY' || fail "report.json does not tell the truth"
import json, sys
report, lab, prefix = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
hosts = {host["host"]: host for host in report["hosts"]}
assert list(hosts) == ["converging", "nolibvirt", "unreachable", "partial"], list(hosts)
assert hosts["converging"]["status"] == "changed", hosts["converging"]
assert hosts["nolibvirt"]["status"] == "failed" and hosts["nolibvirt"]["step"] == "discover", hosts["nolibvirt"]
assert hosts["nolibvirt"]["msg"].startswith("cannot connect to libvirt at qemu+unix:///system"), hosts["nolibvirt"]
assert hosts["unreachable"]["status"] == "unreachable", hosts["unreachable"]
assert "ssh" in hosts["unreachable"]["msg"].lower() or "connect" in hosts["unreachable"]["msg"].lower()
assert hosts["partial"]["status"] == "failed" and hosts["partial"]["step"] == "offline", hosts["partial"]
assert hosts["converging"]["hypervisor"]["qemu_version"], hosts["converging"]
counts = report["summary"]["host_status"]
assert (counts["changed"], counts["failed"], counts["unreachable"]) == (1, 2, 1), counts
# converging and partial are one machine: each reports the other's domain as skipped.
disks = {(d["host"], d["domain"], d["target"]): d for d in report["disks"]}
a, b = disks[("partial", prefix + "pair", "vda")], disks[("partial", prefix + "pair", "vdb")]
assert b["status"] == "failed" and "Read-only file system" in b["error"] and lab + "/ro/" in b["error"], b
# vda's own words: it converted, and its domain stays whole on its originals because of vdb.
assert a["status"] == "failed" and a["error"] == f"not switched: disk vdb of {prefix}pair failed, and a domain moves whole", a
assert disks[("converging", prefix + "good", "vda")]["status"] == "converted", disks[("converging", prefix + "good", "vda")]
assert report["unmatched"] == [f"disk_format_domains entry '{prefix}nosuch' matches no domain"], report["unmatched"]
PY

chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$lab/profile" --dump-dom \
  "file://$lab/disk_format_report/report.html" > "$lab/dom.html" 2>/dev/null
text=$(sed -e 's/<[^>]*>/ /g' -e 's/  */ /g' "$lab/dom.html" | tr -s ' \n' ' ')
for expected in "hosts: 2 failed, 1 unreachable, 1 changed" "converging changed" "nolibvirt failed discover" \
                "unreachable unreachable" "partial failed offline" "Read-only file system" \
                "matches no domain" "not switched: disk vdb of ${prefix}pair failed"; do
  grep -qF "$expected" <<<"$text" || fail "the page does not show: $expected"
done
grep -q 'id="space-chart"' "$lab/dom.html" || fail "no chart"
# Shards of a fleet merge into one report: here the run's own report and a copy with one host more.
python3 - "$lab/disk_format_report/report.json" "$lab/shard.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
report["generated"] = "9999-01-01T00:00:00Z"
report["hosts"] = [dict(report["hosts"][0], host="elsewhere")]
report["disks"] = [dict(disk, host="elsewhere") for disk in report["disks"] if disk["host"] == "converging"]
json.dump(report, open(sys.argv[2], "w"))
PY
(cd "$lab" && ansible-playbook kvm.images.merge_reports -e disk_format_report_dir=merged \
  -e '{"disk_format_reports": ["disk_format_report/report.json", "shard.json"]}') > "$lab/merge.log" 2>&1 ||
  { cat "$lab/merge.log"; fail "the merge failed"; }
python3 - "$lab/merged/report.json" <<'PY' || fail "the merged report does not name every host"
import json, sys
hosts = [host["host"] for host in json.load(open(sys.argv[1]))["hosts"]]
assert hosts == ["converging", "nolibvirt", "unreachable", "partial", "elsewhere"], hosts
PY
echo "report test passed"
