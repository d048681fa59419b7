# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import (
    destination_path,
    plan_disks,
    space_by_filesystem,
)


def disk(target="vda", source="/images/a.raw", fmt="raw", convertible=True, skip_reason=None):
    return {"target": target, "source": source, "driver_type": fmt,
            "convertible": convertible, "skip_reason": skip_reason}


def domain(name="web01", state="running", disks=None):
    return {"name": name, "state": state, "disks": disks if disks is not None else [disk()]}


@pytest.mark.parametrize("source, fmt, expected", [
    ("/i/web.raw", "qcow2", "/i/web.qcow2"),
    ("/i/web.img", "qcow2", "/i/web.qcow2"),
    ("/i/web.qcow2", "raw", "/i/web.raw"),
    ("/i/web", "qcow2", "/i/web.qcow2"),
    ("/i/web.disk0", "qcow2", "/i/web.disk0.qcow2"),
    ("/i/web.qcow2", "qcow2", "/i/web-qcow2.qcow2"),
    ("/i/a b é.raw", "qcow2", "/i/a b é.qcow2"),
], ids=["raw", "img", "to-raw", "no-ext", "unknown-ext", "same-name", "unicode"])
def test_destination_path(source, fmt, expected):
    assert destination_path(source, fmt) == expected


def test_destination_never_equals_source():
    for source in ("/i/x.qcow2", "/i/x.raw"):
        for fmt in ("raw", "qcow2"):
            assert destination_path(source, fmt) != source


def test_running_raw_disk_goes_live():
    [record] = plan_disks([domain()], "qcow2")
    assert record["action"] == "convert"
    assert record["method"] == "live"
    assert record["dest"] == "/images/a.qcow2"
    assert record["reason"] == "raw -> qcow2 (live)"


def test_offline_method_for_running_domain():
    [record] = plan_disks([domain()], "qcow2", method="offline")
    assert (record["action"], record["method"]) == ("convert", "offline")


def test_shut_off_domain_is_converted_offline_even_when_live_asked():
    [record] = plan_disks([domain(state="shut off")], "qcow2", method="live")
    assert (record["action"], record["method"]) == ("convert", "offline")


@pytest.mark.parametrize("state", ["paused", "pmsuspended", "crashed"])
def test_other_states_are_skipped_with_reason(state):
    [record] = plan_disks([domain(state=state)], "qcow2")
    assert record["action"] == "skip"
    assert state in record["reason"]


def test_already_in_format_is_ok_not_convert():
    [record] = plan_disks([domain(disks=[disk(fmt="qcow2", source="/i/a.qcow2")])], "qcow2")
    assert (record["action"], record["reason"]) == ("ok", "already qcow2")


def test_unconvertible_disk_keeps_its_reason():
    cdrom = disk(target="sda", source="/i/x.iso", convertible=False, skip_reason="cdrom")
    [record] = plan_disks([domain(disks=[cdrom])], "qcow2")
    assert (record["action"], record["reason"]) == ("skip", "cdrom")


def test_override_pins_domain_to_raw():
    domains = [domain("web01"), domain("db01")]
    records = plan_disks(domains, "qcow2", {"db01": {"target": "raw"}})
    by_domain = {r["domain"]: r for r in records}
    assert by_domain["web01"]["action"] == "convert"
    assert by_domain["db01"]["action"] == "ok"
    assert by_domain["db01"]["target_format"] == "raw"


def test_exclusion_pattern_wins():
    [record] = plan_disks([domain("test-1")], "qcow2", exclude=["prod-*", "test-*"])
    assert record["action"] == "skip"
    assert record["reason"] == "domain excluded by pattern 'test-*'"


@pytest.mark.parametrize("kwargs", [
    {"default_target": "vmdk"},
    {"default_target": "qcow2", "method": "fast"},
    {"default_target": "qcow2", "overrides": {"web01": {"target": "vdi"}}},
], ids=["bad-target", "bad-method", "bad-override"])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError):
        plan_disks([domain()], **kwargs)


FILESYSTEMS = [
    {"id": "254:1", "free": 10 << 30, "size": 100 << 30, "directories": ["/srv"]},
    {"id": "254:2", "free": 1 << 30, "size": 2 << 30, "directories": ["/var/lib/libvirt/images"]},
]


def test_space_is_summed_per_filesystem():
    records = [
        {"dest": "/var/lib/libvirt/images/a.qcow2", "filesystem": "254:2", "required": 600 << 20},
        {"dest": "/var/lib/libvirt/images/b.qcow2", "filesystem": "254:2", "required": 600 << 20},
        {"dest": "/srv/c.qcow2", "filesystem": "254:1", "required": 1 << 30},
    ]
    result = {entry["filesystem"]: entry for entry in space_by_filesystem(records, FILESYSTEMS)}
    # Each disk alone fits in the 1 GiB free; both together do not.
    assert result["254:2"]["required"] == 1200 << 20
    assert result["254:2"]["enough"] is False
    assert result["254:2"]["directories"] == ["/var/lib/libvirt/images"]
    assert result["254:1"]["enough"] is True
    assert len(result["254:2"]["disks"]) == 2


def test_unknown_filesystem_is_never_enough():
    [entry] = space_by_filesystem([{"dest": "/x/a.qcow2", "filesystem": None, "required": 1}], FILESYSTEMS)
    assert (entry["filesystem"], entry["enough"]) == ("unknown", False)


def test_disks_are_tagged_with_their_filesystem(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_inventory import add_filesystems
    domains = [{"name": "web01", "disks": [
        {"type": "file", "source": str(tmp_path / "a.raw")},
        {"type": "file", "source": str(tmp_path / "b.raw")},
        {"type": "network", "source": "rbd:pool/x"},
    ]}]
    [filesystem] = add_filesystems(domains)
    assert filesystem["directories"] == [str(tmp_path)]
    assert filesystem["free"] > 0
    assert [disk["filesystem"] for disk in domains[0]["disks"]] == [filesystem["id"], filesystem["id"], None]


def preflight_result(record, **fields):
    return {"item": record, "failed": False, **fields}


SAFE = {"safe": True, "problems": []}


@pytest.mark.parametrize("fields, action, reason_part", [
    ({"safety": SAFE, "check": {"status": "clean"}, "measure": {"required": 5}, "virtual_size": 9, "actual_size": 7},
     "convert", None),
    ({"safety": SAFE, "check": {"status": "leaks"}, "measure": {"required": 5}}, "convert", None),
    ({"safety": SAFE, "check": {"status": "unsupported"}, "measure": {"required": 5}}, "convert", None),
    ({"safety": SAFE, "check": {"status": "incomplete"}}, "skip", "check found the image incomplete"),
    ({"safety": {"safe": False, "problems": ["header says qcow2, declared raw"]}}, "skip", "header says qcow2"),
    ({"safety": SAFE, "check": {"status": "corrupt"}}, "skip", "check found the image corrupt"),
    ({"failed": True, "msg": "Permission denied"}, "skip", "preflight failed: Permission denied"),
    ({}, "skip", "unsafe image"),
    ({"exists": False, "safety": {"safe": False, "problems": []}}, "skip", "the source image does not exist"),
    ({"safety": SAFE, "is_iso": True}, "skip", "an ISO 9660 image attached as a disk; left as it is"),
    ({"safety": SAFE, "snapshots": [{"id": "1", "name": "before-upgrade"}]}, "skip",
     "the image holds 1 internal snapshot(s), which a conversion would drop"),
], ids=["clean", "leaks-only", "raw-unsupported", "incomplete", "unsafe", "corrupt", "failed", "no-verdict", "missing", "iso-as-disk", "internal-snapshots"])
def test_apply_preflight(fields, action, reason_part):
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import apply_preflight
    [record] = plan_disks([domain()], "qcow2")
    [merged] = apply_preflight([record], [preflight_result(record, **fields)])
    assert merged["action"] == action
    if reason_part:
        assert reason_part in merged["reason"]
    else:
        assert merged["required"] == 5
    assert record["action"] == "convert", "the input plan is not modified"


def two_disks_to_convert_and_one_already_done():
    return plan_disks([domain("web01", "running"),
                       domain("db01", "shut off", [disk("vda", "/images/db.raw"), disk("vdb", "/images/db.qcow2", "qcow2")])],
                      "qcow2")


def test_preflight_requests_check_only_quiescent_images_and_read_running_ones_shared():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import preflight_requests
    requests = preflight_requests(two_disks_to_convert_and_one_already_done())
    assert requests == [
        {"path": "/images/a.raw", "format": "raw", "check": False, "force_share": True, "measure_format": "qcow2"},
        {"path": "/images/db.raw", "format": "raw", "check": True, "force_share": False, "measure_format": "qcow2"},
    ]


def test_apply_preflight_pairs_one_call_s_images_with_the_disks_to_convert_in_order():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import apply_preflight
    records = two_disks_to_convert_and_one_already_done()
    images = [{"safety": SAFE, "measure": {"required": 5}},
              {"safety": {"safe": False, "problems": ["declared raw, but the image starts with a qcow2 header"]}}]
    merged = {(r["domain"], r["target"]): r for r in apply_preflight(records, images)}
    assert merged[("web01", "vda")]["action"] == "convert" and merged[("web01", "vda")]["required"] == 5
    assert merged[("db01", "vda")]["action"] == "skip"
    assert "qcow2 header" in merged[("db01", "vda")]["reason"]
    assert merged[("db01", "vdb")]["action"] == "ok"


@pytest.mark.parametrize("images", [[], [{"safety": SAFE}]], ids=["none", "too-few"])
def test_a_disk_to_convert_without_a_check_result_never_passes(images):
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import apply_preflight
    with pytest.raises(ValueError, match="image results for 2 disks to convert"):
        apply_preflight(two_disks_to_convert_and_one_already_done(), images)


def test_a_looped_result_missing_for_a_disk_never_passes():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import apply_preflight
    records = two_disks_to_convert_and_one_already_done()
    with pytest.raises(ValueError, match="no image result for db01 vda"):
        apply_preflight(records, [preflight_result(records[0], safety=SAFE)])


def test_include_list_limits_the_domains():
    records = plan_disks([domain("demo-web01"), domain("prod-db")], "qcow2", include=["demo-*"])
    by_domain = {r["domain"]: r for r in records}
    assert by_domain["demo-web01"]["action"] == "convert"
    assert by_domain["prod-db"]["action"] == "skip"
    assert by_domain["prod-db"]["reason"] == "domain matches no pattern of the include list"


def converted_record(domain_name="web01", target="vda"):
    return {"domain": domain_name, "target": target, "source": "/images/a.raw", "source_format": "raw",
            "dest": "/images/a.qcow2", "target_format": "qcow2", "status": "converted"}


def test_rollback_converts_the_current_image_back_to_the_original_path():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import rollback_plan
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    [record] = rollback_plan([converted_record()], now)
    assert record["action"] == "convert"
    assert (record["source"], record["source_format"]) == ("/images/a.qcow2", "qcow2")
    assert (record["dest"], record["target_format"]) == ("/images/a.raw", "raw")
    assert record["replaces_stale_original"] is True
    assert record["method"] == "live"


@pytest.mark.parametrize("now, reason_part", [
    ([], "no longer defined"),
    ([domain(disks=[disk(source="/elsewhere/b.qcow2", fmt="qcow2")])], "left alone"),
    ([domain(disks=[disk(source="/images/a.qcow2", fmt="raw")])], "left alone"),
    ([domain(state="paused", disks=[disk(source="/images/a.qcow2", fmt="qcow2")])], "paused"),
], ids=["undefined", "other-source", "other-format", "paused"])
def test_rollback_leaves_disks_it_cannot_vouch_for(now, reason_part):
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import rollback_plan
    [record] = rollback_plan([converted_record()], now)
    assert record["action"] == "skip"
    assert reason_part in record["reason"]
    assert record["replaces_stale_original"] is False


def test_rollback_respects_include_and_exclude():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import rollback_plan
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    for kwargs in ({"include": ["db*"]}, {"exclude": ["web*"]}):
        [record] = rollback_plan([converted_record()], now, **kwargs)
        assert record["action"] == "skip"
        assert record["reason"] == "domain not selected by the include and exclude patterns"


def test_outcome_records_take_sizes_and_pause_from_the_module():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import outcome_records
    [planned] = plan_disks([domain()], "qcow2")
    live = {"dest_actual_size": 10, "src_actual_size": 30, "duration_s": 1.5, "verified": True, "max_pause_s": 0.1}
    [record] = outcome_records([planned], [live], "hv1", downtime_s=None, running=True)
    assert (record["host"], record["status"], record["dest_size"], record["source_size"]) == ("hv1", "converted", 10, 30)
    assert record["downtime_s"] == 0.1
    assert record["verified"] is True
    offline = {"dest_actual_size": 10, "duration_s": 1.5, "verified": False}
    [record] = outcome_records([planned], [offline], "hv1", downtime_s=7.0)
    assert record["downtime_s"] == 7.0
    assert record["verified"] is False


def test_outcome_records_refuse_mismatched_lengths():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import outcome_records
    with pytest.raises(ValueError):
        outcome_records(plan_disks([domain()], "qcow2"), [], "hv1")


def test_report_records_list_every_disk_once():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import report_records
    plan = plan_disks([domain(disks=[disk("vda"), disk("vdb", source="/images/b.raw")])], "qcow2")
    done = [dict(plan[0], host="hv1", status="converted")]
    records = report_records(done, plan, "hv1")
    assert [(r["target"], r.get("status")) for r in records] == [("vda", "converted"), ("vdb", None)]
    assert all(r["host"] == "hv1" for r in records)


def test_rollback_takes_the_last_switch_to_what_the_disk_uses_now():
    """A journal line is written before its switch: a later line whose switch failed must not hide the real one."""
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import rollback_plan
    real = converted_record()
    failed_later = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2",
                        dest="/images/a.raw", target_format="raw")
    other_disk = converted_record("db01")
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    records = rollback_plan([real, other_disk, failed_later], now)
    assert [(r["domain"], r["action"]) for r in records] == [("web01", "convert"), ("db01", "skip")]
    assert (records[0]["source"], records[0]["dest"]) == ("/images/a.qcow2", "/images/a.raw")


def test_rollback_of_a_disk_switched_twice_goes_back_one_step():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import rollback_plan
    first = converted_record()
    second = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2",
                  dest="/images/b.qcow2", target_format="qcow2")
    now = [domain(disks=[disk(source="/images/b.qcow2", fmt="qcow2")])]
    [record] = rollback_plan([first, second], now)
    assert (record["action"], record["source"], record["dest"]) == ("convert", "/images/b.qcow2", "/images/a.qcow2")


def shut_off_disks():
    return plan_disks([domain("web02", "shut off", [disk("vda", "/images/web02.raw")]),
                       domain("db01", "shut off", [disk("vda", "/images/db.raw"), disk("vdb", "/images/db-data.raw")])],
                      "qcow2")


CONVERTED = {"failed": False, "changed": True, "verified": True, "duration_s": 1.5, "dest_actual_size": 7,
             "src_actual_size": 9}


def test_offline_outcome_points_only_domains_whose_every_disk_converted():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import offline_outcome
    disks = shut_off_disks()
    failed = {"failed": True, "msg": "qemu-img convert of /images/db-data.raw failed: No space left on device"}
    outcome = offline_outcome(disks, [CONVERTED, CONVERTED, failed], "hv1")
    assert outcome["updates"] == [{"name": "web02", "target": "vda", "source": "/images/web02.qcow2",
                                   "driver_type": "qcow2"}]
    by_disk = {(r["domain"], r["target"]): r for r in outcome["results"]}
    assert by_disk[("web02", "vda")]["status"] == "converted" and by_disk[("web02", "vda")]["downtime_s"] == 0
    assert by_disk[("db01", "vda")]["status"] == "failed", "a domain moves whole or not at all"
    assert by_disk[("db01", "vdb")]["error"] == failed["msg"]


def test_offline_outcome_fails_the_domains_an_update_did_not_reach():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import offline_outcome
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
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import offline_outcome
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
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import offline_outcome
    with pytest.raises(ValueError, match="3 disks but 2 conversion results"):
        offline_outcome(shut_off_disks(), [CONVERTED] * 2, "hv1")


def test_a_migration_after_a_rollback_replaces_the_copy_the_rollback_kept():
    from ansible_collections.kvm.images.plugins.module_utils.disk_plan import mark_stale_images
    migrated = converted_record()
    rolled_back = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2", dest="/images/a.raw",
                       target_format="raw")
    now = [domain(disks=[disk(source="/images/a.raw", fmt="raw")])]
    [record] = mark_stale_images(plan_disks(now, "qcow2"), [migrated, rolled_back], now)
    assert record["dest"] == "/images/a.qcow2" and record["replaces_stale_original"] is True
    assert "replaces /images/a.qcow2, the stale image the disk left in an earlier run" in record["summary"]
    # Not after a first migration alone, and never a file some domain uses.
    [record] = mark_stale_images(plan_disks(now, "qcow2"), [migrated], now)
    assert "replaces_stale_original" not in record
    other = domain("db01", disks=[disk(source="/images/a.qcow2", fmt="qcow2")])
    records = mark_stale_images(plan_disks(now + [other], "qcow2"), [migrated, rolled_back], now + [other])
    assert not any(r.get("replaces_stale_original") for r in records)
