# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.disk_inventory import disk_skip_reason, mark_shared_sources
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError

WEB01 = (pathlib.Path(__file__).parent / "fixtures" / "domain_xml" / "web01.xml").read_text()


def disks_by_target():
    return {disk["target"]: disk for disk in domain_xml.list_disks(domain_xml.parse(WEB01))}


def test_every_disk_is_described():
    disks = disks_by_target()
    assert sorted(disks) == ["sda", "sdb", "vda", "vdb", "vdc", "vdd"]
    vda = disks["vda"]
    assert (vda["device"], vda["type"], vda["bus"], vda["driver_type"]) == ("disk", "file", "virtio", "raw")
    assert vda["source"] == "/var/lib/libvirt/images/system.raw"
    assert vda["driver"] == {"cache": "none", "io": "native", "discard": "unmap", "detect_zeroes": None}
    assert disks["sdb"]["device"] == "cdrom" and disks["sdb"]["readonly"]
    assert disks["vdb"]["backing_chain"] == [
        {"type": "file", "format": "raw", "source": "/var/lib/libvirt/images/base.raw"}]
    assert disks["vdc"]["source"] == "/dev/vg0/web01-data"
    assert disks["vdd"]["source"] == "rbd:pool/web01-extra"


DOMAIN = {"persistent": True, "snapshots": 0, "has_managed_save": False}


@pytest.mark.parametrize("target, domain, reason", [
    ("vda", DOMAIN, None),
    ("sda", DOMAIN, None),
    ("sdb", DOMAIN, "cdrom (only disks are converted)"),
    ("vdb", DOMAIN, "has a backing chain in its definition"),
    ("vdc", DOMAIN, "block disk (only file disks are converted)"),
    ("vdd", DOMAIN, "network disk (only file disks are converted)"),
    ("vda", dict(DOMAIN, persistent=False), "transient domain (no persistent definition to update)"),
    ("vda", dict(DOMAIN, snapshots=2), "domain has 2 snapshot(s), which a conversion would not carry over"),
    ("vda", dict(DOMAIN, has_managed_save=True), "domain has a managed save image; start it or remove the save first"),
], ids=["file-disk", "sata-disk", "cdrom", "backing", "block", "network", "transient", "snapshots", "managed-save"])
def test_skip_reasons(target, domain, reason):
    assert disk_skip_reason(dict(disks_by_target()[target], live_source=None), domain) == reason


def test_live_source_differing_from_the_definition_is_skipped():
    disk = dict(disks_by_target()["vda"], live_source="/var/lib/libvirt/images/system.qcow2")
    assert disk_skip_reason(disk, DOMAIN) == (
        "the running domain uses /var/lib/libvirt/images/system.qcow2,"
        " its definition /var/lib/libvirt/images/system.raw")


def test_a_file_shared_by_two_domains_is_left_alone_in_both():
    def domain(name, source):
        return {"name": name, "disks": [{"type": "file", "source": source, "convertible": True, "skip_reason": None}]}
    domains = [domain("a", "/i/shared.raw"), domain("b", "/i/shared.raw"), domain("c", "/i/own.raw")]
    mark_shared_sources(domains)
    assert [d["disks"][0]["skip_reason"] for d in domains] == [
        "source also used by domain(s) b", "source also used by domain(s) a", None]


def leaves(root):
    tree = root.getroottree()
    found = {}
    for element in root.iter():
        if isinstance(element.tag, str):
            for name, value in element.attrib.items():
                found[f"{tree.getpath(element)}/@{name}"] = value
    return found


def test_set_disk_changes_only_that_disk():
    root = domain_xml.parse(WEB01)
    before = leaves(root)
    disk = domain_xml.find_disk(root, target="vda")
    assert domain_xml.set_disk(disk, source="/var/lib/libvirt/images/system.qcow2", driver_type="qcow2")
    after = leaves(root)
    changed = {path: (before.get(path), after.get(path)) for path in set(before) | set(after)
               if before.get(path) != after.get(path)}
    assert changed == {
        "/domain/devices/disk[1]/driver/@type": ("raw", "qcow2"),
        "/domain/devices/disk[1]/source/@file": ("/var/lib/libvirt/images/system.raw",
                                                 "/var/lib/libvirt/images/system.qcow2"),
    }
    assert after["/domain/devices/graphics/@passwd"] == "s3cr3tvn"
    assert not domain_xml.set_disk(disk, source="/var/lib/libvirt/images/system.qcow2", driver_type="qcow2")


def test_new_source_drops_the_old_backing_chain():
    root = domain_xml.parse(WEB01)
    disk = domain_xml.find_disk(root, target="vdb")
    domain_xml.set_disk(disk, source="/var/lib/libvirt/images/flat.qcow2")
    assert domain_xml.disk_facts(disk)["backing_chain"] == []


def test_driver_options_are_set():
    root = domain_xml.parse(WEB01)
    disk = domain_xml.find_disk(root, target="sda")
    assert domain_xml.set_disk(disk, driver_options={"discard": "unmap", "cache": None})
    assert domain_xml.disk_facts(disk)["driver"]["discard"] == "unmap"


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "vdz"}, "domain web01 has no disk with target vdz; nothing was changed"),
    ({"source": "/nowhere.raw"}, "domain web01 has no disk with source /nowhere.raw; nothing was changed"),
], ids=["target", "source"])
def test_find_disk_errors(kwargs, message):
    with pytest.raises(KvmImagesError) as caught:
        domain_xml.find_disk(domain_xml.parse(WEB01), **kwargs)
    assert caught.value.msg == message


def test_a_block_disk_gets_no_source_file():
    disk = domain_xml.find_disk(domain_xml.parse(WEB01), target="vdc")
    with pytest.raises(KvmImagesError, match="only file disks"):
        domain_xml.set_disk(disk, source="/i/x.qcow2")


def test_canonical_ignores_attribute_order_and_quotes():
    assert domain_xml.canonical("<a x='1' y='2'/>") == domain_xml.canonical('<a y="2" x="1"></a>')


def test_entities_are_not_expanded():
    hostile = '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/shadow">]><domain><name>&e;</name></domain>'
    root = domain_xml.parse(hostile)
    assert "root:" not in domain_xml.serialize(root)
