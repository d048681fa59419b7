# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report never says less than the RECAP: every host of the play, each disk with its own outcome."""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import plan_disks
from ansible_collections.kvm.images.plugins.module_utils.fleet_report import (
    disk_records,
    fleet_report,
    host_record,
    render_html,
    unmatched_settings,
)
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import disk, domain


def plan():
    return plan_disks([domain("web01", "running", [disk("vda"), disk("vdb", source="/images/b.raw")]),
                       domain("db01", "shut off", [disk("vda", "/images/db.qcow2", "qcow2")])], "qcow2")


def converted(record, **fields):
    return dict(record, status="converted", source_size=4 << 30, dest_size=1 << 30, duration_s=12.5, **fields)


def test_every_planned_disk_appears_once_with_its_own_outcome():
    records = plan()
    failed = dict(records[1], status="failed", error="qemu-img convert of /images/b.raw failed: No space left")
    disks = disk_records(records, [converted(records[0]), failed], "hv1")
    assert [(d["domain"], d["target"], d["status"]) for d in disks] == [
        ("web01", "vda", "converted"), ("web01", "vdb", "failed"), ("db01", "vda", "ok")]
    assert "error" not in disks[0] and disks[1]["error"].endswith("No space left")
    assert {d["host"] for d in disks} == {"hv1"}


@pytest.mark.parametrize("planning, status", [(True, "planned"), (False, "not reached")])
def test_a_disk_to_convert_without_a_result_was_planned_or_not_reached(planning, status):
    assert disk_records(plan(), [], "hv1", planning=planning)[0]["status"] == status


@pytest.mark.parametrize("results, failure, status", [
    ([], None, "converged"),
    ([0], None, "changed"),
    ([], {"step": "preflight", "msg": "Not enough space"}, "failed"),
    ([], {"step": "discover", "msg": "ssh: connect refused", "unreachable": True}, "unreachable"),
], ids=["nothing-done", "converted", "failed", "unreachable"])
def test_host_status(results, failure, status):
    records = plan()
    record = host_record("hv1", plan=records, results=[converted(records[i]) for i in results], failure=failure)
    assert record["status"] == status
    if failure:
        assert (record["step"], record["msg"]) == (failure["step"], failure["msg"])


def test_every_host_of_the_play_is_named_even_without_a_record():
    records = [host_record("hv1", plan=plan(), results=[converted(plan()[0])], domains=["web01", "db01"]),
               host_record("hv2", failure={"step": "discover", "msg": "cannot connect to libvirt at qemu:///system"})]
    report = fleet_report(records, play_hosts=["hv1", "hv2", "hv3", "hv4"], active_hosts=["hv1", "hv4"])
    by_host = {host["host"]: host for host in report["hosts"]}
    assert [host["host"] for host in report["hosts"]] == ["hv1", "hv2", "hv3", "hv4"]
    assert (by_host["hv1"]["status"], by_host["hv2"]["status"], by_host["hv3"]["status"],
            by_host["hv4"]["status"]) == ("changed", "failed", "unreachable", "not reached")
    assert by_host["hv2"]["msg"] == "cannot connect to libvirt at qemu:///system"
    assert report["summary"]["host_status"]["unreachable"] == 1
    # The play is over: a host without a record never ran.
    final = fleet_report(records, play_hosts=["hv1", "hv2", "hv3"])
    assert [host["status"] for host in final["hosts"]] == ["changed", "failed", "unreachable"]


def test_settings_that_match_nothing_are_named():
    assert unmatched_settings(["db-01", "web01"], ["*", "prod-*", "web*"], {"web01", "db01"}) == [
        "disk_format_domains entry 'db-01' matches no domain", "disk_format_include pattern 'prod-*' matches no domain"]
    assert unmatched_settings([], ["*"], set()) == []


def test_the_html_escapes_and_shows_summary_chart_hosts_and_disks():
    records = plan()
    records[0]["reason"] = "cdrom <not converted>"
    report = fleet_report([host_record("hv<1>", plan=records, results=[converted(records[1])], domains=["web01"],
                                       hypervisor={"qemu_version": "7.2.22", "libvirt_version": "9.0.0"},
                                       overrides=["db-01"])],
                          play_hosts=["hv<1>", "hv2"])
    page = render_html(report)
    assert "3 disks on 2 host(s): 1 converted, 0 failed, 1 not reached, 1 ok; hosts: 1 unreachable, 1 changed." in page
    assert 'id="space-chart"' in page and "4.00 GiB</text>" in page and "1.00 GiB</text>" in page
    assert "hv&lt;1&gt;" in page and "hv<1>" not in page
    assert "cdrom &lt;not converted&gt;" in page
    assert "<td>7.2.22</td><td>9.0.0</td>" in page
    assert "disk_format_domains entry &#x27;db-01&#x27; matches no domain" in page
    assert json.loads(json.dumps(report))["hosts"][1]["status"] == "unreachable"


def test_a_thousand_hosts_render_in_linear_time():
    """8,000 disks: the old template took minutes; this must take well under the 5 s the design allows."""
    records = []
    for number in range(1000):
        host_plan = plan_disks([domain(f"vm{number}-{index}", "shut off",
                                       [disk("vda", f"/images/vm{number}-{index}.raw")]) for index in range(8)],
                               "qcow2")
        records.append(host_record(f"hv{number}", plan=host_plan, results=[converted(r) for r in host_plan],
                                   domains=[r["domain"] for r in host_plan]))
    started = time.process_time()
    report = fleet_report(records, play_hosts=[f"hv{number}" for number in range(1000)])
    page = render_html(report)
    elapsed = time.process_time() - started
    assert report["summary"]["disks"] == 8000 and report["summary"]["disk_status"]["converted"] == 8000
    assert page.count("<tr class=\"converted\">") == 8000
    assert elapsed < 5, f"{elapsed:.2f} s of CPU"


def test_a_setting_is_unmatched_only_when_no_host_has_the_domain():
    records = [host_record("hv1", domains=["web01"], overrides=["db01"]),
               host_record("hv2", domains=["db01"], overrides=["web01", "app-01"], include=["*", "prod-*"])]
    report = fleet_report(records, play_hosts=["hv1", "hv2"])
    assert report["unmatched"] == ["disk_format_domains entry 'app-01' matches no domain",
                                   "disk_format_include pattern 'prod-*' matches no domain"]


def test_reports_of_shards_merge_into_one_naming_every_host():
    from ansible_collections.kvm.images.plugins.module_utils.fleet_report import records_of_reports
    first = fleet_report([host_record("hv1", plan=plan(), results=[converted(plan()[0])], domains=["web01"])],
                         play_hosts=["hv1", "hv2"], generated=100)
    second = fleet_report([host_record("hv3", failure={"step": "discover", "msg": "no libvirt"})],
                          play_hosts=["hv3"], generated=200)
    records, hosts = records_of_reports([json.loads(json.dumps(second)), json.loads(json.dumps(first))])
    merged = fleet_report(records, play_hosts=hosts)
    assert [(h["host"], h["status"]) for h in merged["hosts"]] == [
        ("hv1", "changed"), ("hv2", "unreachable"), ("hv3", "failed")]
    assert merged["summary"]["disks"] == 3
    assert [d["host"] for d in merged["disks"]] == ["hv1", "hv1", "hv1"]


def test_merged_reports_keep_the_mode_they_share():
    from ansible_collections.kvm.images.plugins.module_utils.fleet_report import merged_mode
    plans = [fleet_report([], play_hosts=["hv1"], mode="plan"), fleet_report([], play_hosts=["hv2"], mode="plan")]
    assert merged_mode(plans) == "plan"
    assert merged_mode(plans + [fleet_report([], play_hosts=["hv3"], mode="check")]) == "migrate"
    assert merged_mode([{"hosts": []}]) == "migrate"
