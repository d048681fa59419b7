# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import plan_disks
from ansible_collections.kvm.images.plugins.module_utils.preflight import (
    apply_preflight,
    preflight_requests,
    space_by_filesystem,
)
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import disk, domain

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
], ids=["clean", "leaks-only", "raw-unsupported", "incomplete", "unsafe", "corrupt", "failed", "no-verdict", "missing",
        "iso-as-disk", "internal-snapshots"])
def test_apply_preflight(fields, action, reason_part):
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
                       domain("db01", "shut off",
                              [disk("vda", "/images/db.raw"), disk("vdb", "/images/db.qcow2", "qcow2")])],
                      "qcow2")


def test_preflight_requests_check_only_quiescent_images_and_read_running_ones_shared():
    requests = preflight_requests(two_disks_to_convert_and_one_already_done())
    assert requests == [
        {"path": "/images/a.raw", "format": "raw", "check": False, "force_share": True, "measure_format": "qcow2"},
        {"path": "/images/db.raw", "format": "raw", "check": True, "force_share": False, "measure_format": "qcow2"},
    ]


def test_apply_preflight_pairs_one_call_s_images_with_the_disks_to_convert_in_order():
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
    with pytest.raises(ValueError, match="image results for 2 disks to convert"):
        apply_preflight(two_disks_to_convert_and_one_already_done(), images)


def test_a_looped_result_missing_for_a_disk_never_passes():
    records = two_disks_to_convert_and_one_already_done()
    with pytest.raises(ValueError, match="no image result for db01 vda"):
        apply_preflight(records, [preflight_result(records[0], safety=SAFE)])
