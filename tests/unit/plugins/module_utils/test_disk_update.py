# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_update import DiskUpdate
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError

WEB01 = (pathlib.Path(__file__).parent / "fixtures" / "domain_xml" / "web01.xml").read_text()


class FakeConnection:
    def __init__(self, dom):
        self.dom = dom

    def defineXML(self, xml):
        self.dom.defined.append(xml)
        self.dom.xml = xml


class FakeDomain:
    """XMLDesc answers from a list, so a test can change the definition between two reads."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.xml = self.answers[-1]
        self.defined = []

    def name(self):
        return "web01"

    def XMLDesc(self, flags):
        return self.answers.pop(0) if self.answers else self.xml

    def connect(self):
        return FakeConnection(self)


def test_edit_is_defined_and_read_back():
    dom = FakeDomain([WEB01, WEB01])
    update = DiskUpdate(dom, target="vda", match_source=None)
    edit = update.plan("/var/lib/libvirt/images/system.qcow2", "qcow2", {})
    assert edit.changed
    update.apply(edit.read_xml, edit.after, {"target": "vda", "source": "/var/lib/libvirt/images/system.qcow2",
                                             "driver_type": "qcow2"})
    assert len(dom.defined) == 1
    assert "system.qcow2" in dom.defined[0]


def test_a_definition_changed_meanwhile_is_not_overwritten():
    someone_elses = WEB01.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>4</vcpu>")
    dom = FakeDomain([WEB01, someone_elses])
    update = DiskUpdate(dom, target="vda", match_source=None)
    edit = update.plan("/var/lib/libvirt/images/system.qcow2", "qcow2", {})
    with pytest.raises(KvmImagesError, match="changed while it was being edited; nothing was written"):
        update.apply(edit.read_xml, edit.after, {"target": "vda", "source": None, "driver_type": "qcow2"})
    assert dom.defined == []


def test_a_definition_that_reads_back_wrong_is_reported():
    dom = FakeDomain([WEB01, WEB01])

    class IgnoringConnection:
        def defineXML(self, xml):
            """libvirt accepted the definition but kept the old one."""

    dom.connect = IgnoringConnection
    update = DiskUpdate(dom, target="vda", match_source=None)
    edit = update.plan("/var/lib/libvirt/images/system.qcow2", "qcow2", {})
    with pytest.raises(KvmImagesError, match="reads back as"):
        update.apply(edit.read_xml, edit.after, {"target": "vda", "source": "/var/lib/libvirt/images/system.qcow2",
                                                 "driver_type": "qcow2"})
