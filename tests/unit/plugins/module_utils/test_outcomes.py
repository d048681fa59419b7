# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import plan_disks
from ansible_collections.kvm.images.plugins.module_utils.outcomes import offline_outcome, outcome_records
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import disk, domain


def test_outcome_records_take_sizes_and_pause_from_the_module():
    [planned] = plan_disks([domain()], "qcow2")
    live = {"dest_actual_size": 10, "src_actual_size": 30, "duration_s": 1.5, "verified": True, "max_pause_s": 0.1}
    [record] = outcome_records([planned], [live], "hv1", downtime_s=None, running=True)
    assert (record["host"], record["status"], record["dest_size"], record["source_size"]) == (
        "hv1", "converted", 10, 30)
    assert record["downtime_s"] == 0.1
    assert record["verified"] is True
    offline = {"dest_actual_size": 10, "duration_s": 1.5, "verified": False}
    [record] = outcome_records([planned], [offline], "hv1", downtime_s=7.0)
    assert record["downtime_s"] == 7.0
    assert record["verified"] is False


def test_outcome_records_refuse_mismatched_lengths():
    with pytest.raises(ValueError):
        outcome_records(plan_disks([domain()], "qcow2"), [], "hv1")


def shut_off_disks():
    return plan_disks([domain("web02", "shut off", [disk("vda", "/images/web02.raw")]),
                       domain("db01", "shut off", [disk("vda", "/images/db.raw"), disk("vdb", "/images/db-data.raw")])],
                      "qcow2")


CONVERTED = {"failed": False, "changed": True, "verified": True, "duration_s": 1.5, "dest_actual_size": 7,
             "src_actual_size": 9}


def test_offline_outcome_points_only_domains_whose_every_disk_converted():
    disks = shut_off_disks()
    failed = {"failed": True, "msg": "qemu-img convert of /images/db-data.raw failed: No space left on device"}
    outcome = offline_outcome(disks, [CONVERTED, CONVERTED, failed], "hv1")
    assert outcome["updates"] == [{"name": "web02", "target": "vda", "source": "/images/web02.qcow2",
                                   "driver_type": "qcow2"}]
    by_disk = {(r["domain"], r["target"]): r for r in outcome["results"]}
    assert by_disk[("web02", "vda")]["status"] == "converted" and by_disk[("web02", "vda")]["downtime_s"] == 0
    assert by_disk[("db01", "vda")]["status"] == "failed", "a domain moves whole or not at all"
    # Each disk carries its own error: vda's names vdb, not vdb's file.
    assert by_disk[("db01", "vda")]["error"] == "not switched: disk vdb of db01 failed, and a domain moves whole"
    assert by_disk[("db01", "vdb")]["error"] == failed["msg"]


def test_offline_outcome_of_guests_started_again_says_which_disks_run_on_their_new_images():
    disks = shut_off_disks()
    failed = {"failed": True, "msg": "qemu-img convert of /images/db-data.raw failed: No space left on device"}
    results = offline_outcome(disks, [CONVERTED, CONVERTED, failed], "hv1", downtime_s=4.2, running=True)["results"]
    assert [(r["domain"], r["status"], r.get("running")) for r in results] == [
        ("web02", "converted", True), ("db01", "failed", None), ("db01", "failed", None)]
    assert results[0]["downtime_s"] == 4.2
    shut_off = offline_outcome(disks, [CONVERTED] * 3, "hv1")["results"]
    assert [r["running"] for r in shut_off] == [False, False, False]


def test_offline_outcome_fails_the_domains_an_update_did_not_reach():
    disks = shut_off_disks()
    update = {"failed": True, "msg": "cannot define db01: storage is read-only (domains already updated: web02)",
              "updated": ["web02"]}
    outcome = offline_outcome(disks, [CONVERTED] * 3, "hv1", update)
    assert [(r["domain"], r["status"]) for r in outcome["results"]] == [
        ("web02", "converted"), ("db01", "failed"), ("db01", "failed")]
    assert outcome["results"][1]["error"] == update["msg"]
    assert offline_outcome(disks, [CONVERTED] * 3, "hv1", {"failed": False, "changed": True})["results"][1]["status"] \
        == "converted"


def test_offline_outcome_fails_a_domain_gone_during_the_run_and_keeps_the_others():
    disks = shut_off_disks()
    update = {"failed": False, "changed": True, "disks": [
        {"name": "web02", "target": "vda", "changed": True, "missing": False},
        {"name": "db01", "target": "vda", "changed": False, "missing": True},
        {"name": "db01", "target": "vdb", "changed": False, "missing": True}]}
    outcome = offline_outcome(disks, [CONVERTED] * 3, "hv1", update)
    assert [(r["domain"], r["status"]) for r in outcome["results"]] == [
        ("web02", "converted"), ("db01", "failed"), ("db01", "failed")]
    assert outcome["results"][1]["error"] == ("domain db01 was undefined or renamed during the run; its new image(s)"
                                              " /images/db.qcow2, /images/db-data.qcow2 stay, verified and unused")


def test_offline_outcome_needs_a_result_per_disk():
    with pytest.raises(ValueError, match="3 disks but 2 conversion results"):
        offline_outcome(shut_off_disks(), [CONVERTED] * 2, "hv1")


def test_a_deferred_disk_holds_its_domain_back_and_says_so():
    disks = shut_off_disks()
    deferred = {"changed": False, "deferred": True,
                "reason": "not started: 2048 MiB at 10 MiB/s would take until 2026-12-06T06:10:00Z, after the deadline"}
    outcome = offline_outcome(disks, [CONVERTED, CONVERTED, deferred], "hv1")
    assert [u["name"] for u in outcome["updates"]] == ["web02"]
    statuses = [(r["domain"], r["target"], r["status"], r.get("reason")) for r in outcome["results"]]
    assert statuses == [
        ("web02", "vda", "converted", "raw -> qcow2 (offline)"),
        ("db01", "vda", "deferred", "not switched: disk vdb of db01 was deferred, and a domain moves whole"),
        ("db01", "vdb", "deferred", deferred["reason"]),
    ]


def test_measured_fields_reach_the_record():
    [planned] = plan_disks([domain()], "qcow2")
    live = {"dest_actual_size": 10, "duration_s": 2.0, "throughput_mib_s": 5.0, "copy_mode": "write_blocking",
            "attempts": [{"mode": "write_blocking", "percent": 100}], "max_pause_s": 0.05}
    [record] = outcome_records([planned], [live], "hv1", running=True)
    assert (record["throughput_mib_s"], record["copy_mode"], record["attempts"]) == (
        5.0, "write_blocking", [{"mode": "write_blocking", "percent": 100}])
