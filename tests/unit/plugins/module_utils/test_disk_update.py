# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_update import DiskChange, DiskUpdate
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeDomain, Hypervisor

VDA_TO_QCOW2 = DiskChange("vda", None, "/var/lib/libvirt/images/system.qcow2", "qcow2")
WEB01 = (pathlib.Path(__file__).parent / "fixtures" / "domain_xml" / "web01.xml").read_text()


def test_edit_is_defined_and_read_back():
    dom = FakeDomain(answers=[WEB01, WEB01])
    update = DiskUpdate(dom)
    edit = update.plan_changes([VDA_TO_QCOW2])
    assert edit.changed
    update.apply(edit.read_xml, edit.after, [{"target": "vda", "source": "/var/lib/libvirt/images/system.qcow2",
                                              "driver_type": "qcow2"}])
    assert len(dom.defined) == 1
    assert "system.qcow2" in dom.defined[0]


def test_a_definition_changed_meanwhile_is_not_overwritten():
    someone_elses = WEB01.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>4</vcpu>")
    dom = FakeDomain(answers=[WEB01, someone_elses])
    update = DiskUpdate(dom)
    edit = update.plan_changes([VDA_TO_QCOW2])
    with pytest.raises(KvmImagesError, match="changed while it was being edited; nothing was written"):
        update.apply(edit.read_xml, edit.after, [{"target": "vda", "source": None, "driver_type": "qcow2"}])
    assert dom.defined == []


def test_a_definition_that_reads_back_wrong_is_reported():
    dom = FakeDomain(answers=[WEB01, WEB01])

    class IgnoringConnection:
        def defineXML(self, xml):
            """libvirt accepted the definition but kept the old one."""

    dom.connect = IgnoringConnection
    update = DiskUpdate(dom)
    edit = update.plan_changes([VDA_TO_QCOW2])
    with pytest.raises(KvmImagesError, match="reads back as"):
        update.apply(edit.read_xml, edit.after, [{"target": "vda", "source": "/var/lib/libvirt/images/system.qcow2",
                                                  "driver_type": "qcow2"}])


def defined_as_web01(name, running=False, xml=WEB01):
    """A persistent domain called ``name`` whose definition is web01's (or ``xml``)."""
    return FakeDomain(name, xml=xml, active=running)


def new_images(tmp_path, *names):
    paths = []
    for name in names:
        (tmp_path / name).write_bytes(b"\0" * 4096)
        paths.append(str(tmp_path / name))
    return paths


def test_several_disks_of_several_domains_each_domain_defined_once(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web, db = defined_as_web01("web02"), defined_as_web01("db01", running=True)
    system, data, db_system = new_images(tmp_path, "system.img", "data.img", "db.img")
    results, edits = update_disks(Hypervisor(web, db), [
        {"name": "web02", "target": "vda", "source": system},
        {"name": "db01", "target": "vda", "source": db_system},
        {"name": "web02", "target": "sda", "source": data},
        {"name": "db01", "target": "sda", "source": "/var/lib/libvirt/images/data disk é.raw"},
    ], on_running="persist", allowed_backing_dirs=None, apply=True)
    assert [name for name, _edit in edits] == ["web02", "db01"]
    assert len(web.defined) == 1 and system in web.defined[0] and data in web.defined[0]
    assert len(db.defined) == 1 and db_system in db.defined[0]
    assert [(r["name"], r["target"], r["changed"], r["pending_restart"]) for r in results] == [
        ("web02", "vda", True, False), ("db01", "vda", True, True), ("web02", "sda", True, False),
        ("db01", "sda", False, False)]
    assert results[0]["reason"] == f"vda: source /var/lib/libvirt/images/system.raw -> {system}"


@pytest.mark.parametrize("bad, message", [
    ({"name": "db01", "target": "vdz", "source": "/x.img"}, "has no disk with target vdz"),
    ({"name": "db01", "target": "vda", "source": "/does/not/exist.img"}, "refusing to point the disk at"),
    ({"name": "gone", "target": "vda", "source": "/x.img"}, "domain gone not found"),
    ({"name": "web02", "match_source": "/var/lib/libvirt/images/system.raw", "source": "/x.img"}, "named twice"),
], ids=["unknown-target", "missing-source", "unknown-domain", "disk-twice"])
def test_one_refusal_writes_nothing_for_any_domain(tmp_path, bad, message):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web, db = defined_as_web01("web02"), defined_as_web01("db01")
    [system] = new_images(tmp_path, "system.img")
    with pytest.raises(KvmImagesError, match=message):
        update_disks(Hypervisor(web, db), [{"name": "web02", "target": "vda", "source": system}, bad],
                     on_running="persist", allowed_backing_dirs=None, apply=True)
    assert web.defined == [] and db.defined == []


def test_a_define_failing_midway_names_the_domains_already_updated(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web, db = defined_as_web01("web02"), defined_as_web01("db01")
    system, db_system = new_images(tmp_path, "system.img", "db.img")

    class Refusing:
        def defineXML(self, xml):
            import libvirt
            raise libvirt.libvirtError("operation failed: storage is read-only")

    db.connect = Refusing
    with pytest.raises(KvmImagesError, match=r"cannot define db01.*\(domains already updated: web02\)") as failure:
        update_disks(Hypervisor(web, db), [{"name": "web02", "target": "vda", "source": system},
                                           {"name": "db01", "target": "vda", "source": db_system}],
                     on_running="persist", allowed_backing_dirs=None, apply=True)
    assert failure.value.details["updated"] == ["web02"]
    assert len(web.defined) == 1


def test_check_mode_decides_everything_and_defines_nothing(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web = defined_as_web01("web02", running=True)
    [system] = new_images(tmp_path, "system.img")
    results, edits = update_disks(Hypervisor(web), [{"name": "web02", "target": "vda", "source": system}],
                                  on_running="persist", allowed_backing_dirs=None, apply=False)
    assert results[0]["changed"] and results[0]["pending_restart"] and len(edits) == 1
    assert web.defined == []
    with pytest.raises(KvmImagesError, match="on_running is fail"):
        update_disks(Hypervisor(web), [{"name": "web02", "target": "vda", "source": system}],
                     on_running="fail", allowed_backing_dirs=None, apply=True)


def test_each_switch_is_in_the_journal_before_its_domain_is_defined(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    from ansible_collections.kvm.images.plugins.module_utils.journal import parse_entries
    journal = tmp_path / "journal.jsonl"
    web, db = defined_as_web01("web02"), defined_as_web01("db01")
    system, db_system = new_images(tmp_path, "system.img", "db.img")
    seen_at_define = {}

    def recording(dom):
        class Connection:
            def defineXML(self, xml):
                seen_at_define[dom.name()] = [(e["domain"], e["target"]) for e in parse_entries(journal.read_text())]
                dom.xml = xml
        return Connection

    web.connect, db.connect = recording(web), recording(db)
    update_disks(Hypervisor(web, db), [{"name": "web02", "target": "vda", "source": system, "driver_type": "raw"},
                                       {"name": "db01", "target": "vda", "source": db_system},
                                       {"name": "db01", "target": "sda", "cache": "none"}],
                 on_running="persist", allowed_backing_dirs=None, apply=True, journal=str(journal))
    assert seen_at_define == {"web02": [("web02", "vda")], "db01": [("web02", "vda"), ("db01", "vda")]}
    [first, _second] = parse_entries(journal.read_text())
    assert (first["source"], first["source_format"]) == ("/var/lib/libvirt/images/system.raw", "raw")
    assert (first["dest"], first["target_format"]) == (system, "raw")
    assert journal.stat().st_mode & 0o777 == 0o600


def test_no_journal_line_no_switch(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web = defined_as_web01("web02")
    [system] = new_images(tmp_path, "system.img")
    with pytest.raises(KvmImagesError, match=r"cannot record the switch of web02 in .*missing/journal.jsonl: "
                                             r"No such file or directory; web02 was not changed"):
        update_disks(Hypervisor(web), [{"name": "web02", "target": "vda", "source": system}],
                     on_running="persist", allowed_backing_dirs=None, apply=True,
                     journal=str(tmp_path / "missing" / "journal.jsonl"))
    assert web.defined == []


def test_check_mode_writes_no_journal(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    [system] = new_images(tmp_path, "system.img")
    update_disks(Hypervisor(defined_as_web01("web02")), [{"name": "web02", "target": "vda", "source": system}],
                 on_running="persist", allowed_backing_dirs=None, apply=False, journal=str(tmp_path / "journal.jsonl"))
    assert not (tmp_path / "journal.jsonl").exists()


def test_a_domain_gone_since_the_plan_is_left_out_when_asked(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    web = defined_as_web01("web02")
    system, db_system = new_images(tmp_path, "system.img", "db.img")
    wanted = [{"name": "web02", "target": "vda", "source": system},
              {"name": "db01", "target": "vda", "source": db_system}]
    with pytest.raises(KvmImagesError, match="domain db01 not found"):
        update_disks(Hypervisor(web), wanted, on_running="persist", allowed_backing_dirs=None, apply=True)
    assert web.defined == []
    results, edits = update_disks(Hypervisor(web), wanted, on_running="persist", allowed_backing_dirs=None, apply=True,
                                  on_missing="skip")
    assert [(r["name"], r["changed"], r["missing"]) for r in results] == [("web02", True, False), ("db01", False, True)]
    assert [name for name, _edit in edits] == ["web02"] and len(web.defined) == 1


SLICED = WEB01.replace("<source file='/var/lib/libvirt/images/system.raw'/>",
                       "<source file='/var/lib/libvirt/images/system.raw'><slices>"
                       "<slice type='storage' offset='1048576' size='104857600'/></slices></source>")
ENCRYPTED_SOURCE = WEB01.replace("<source file='/var/lib/libvirt/images/system.raw'/>",
                                 "<source file='/var/lib/libvirt/images/system.raw'><encryption format='luks'>"
                                 "<secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/>"
                                 "</encryption></source>")
ENCRYPTED_DISK = WEB01.replace("<target dev='vda' bus='virtio'/>",
                               "<target dev='vda' bus='virtio'/><encryption format='luks'>"
                               "<secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption>")


@pytest.mark.parametrize("xml, change, message", [
    (SLICED, {"target": "vda", "driver_type": "qcow2"},
     "domain web01: disk vda has <slices> in its <source>: a byte range of the original is not the same range"),
    (ENCRYPTED_SOURCE, {"target": "vda", "driver_type": "qcow2"},
     "domain web01: disk vda has <encryption> in its <source>"),
    (ENCRYPTED_DISK, {"target": "vda", "driver_type": "qcow2"}, "domain web01: disk vda has <encryption> in the disk"),
    (WEB01, {"target": "sdb", "driver_type": "qcow2"}, "domain web01: disk sdb is a cdrom; only disks are changed"),
    (WEB01, {"target": "sdb", "cache": "none"}, "domain web01: disk sdb is a cdrom; only disks are changed"),
], ids=["slices", "encrypted-source", "encrypted-disk", "cdrom-format", "cdrom-driver-option"])
def test_a_disk_whose_image_cannot_be_switched_is_refused_by_name(tmp_path, xml, change, message):
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    dom = defined_as_web01("web01", xml=xml)
    [image] = new_images(tmp_path, "system.img")
    with pytest.raises(KvmImagesError) as caught:
        update_disks(Hypervisor(dom), [dict(change, name="web01", source=image if "driver_type" in change else None)],
                     on_running="persist", allowed_backing_dirs=None, apply=True)
    assert caught.value.msg.startswith(message)
    assert caught.value.msg.endswith("; nothing was changed")
    assert dom.defined == []


def test_driver_options_of_a_sliced_disk_may_still_change():
    from ansible_collections.kvm.images.plugins.module_utils.disk_update import update_disks
    dom = defined_as_web01("web01", xml=SLICED)
    results, _edits = update_disks(Hypervisor(dom), [{"name": "web01", "target": "vda", "cache": "writeback"}],
                                   on_running="persist", allowed_backing_dirs=None, apply=True)
    assert results[0]["reason"] == "vda: cache none -> writeback"
    assert len(dom.defined) == 1 and "<slices>" in dom.defined[0]
