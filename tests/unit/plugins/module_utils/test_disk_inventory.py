# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a hypervisor while other work defines and undefines domains on it."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils import disk_inventory
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import NO_DOMAIN
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import Hypervisor


@pytest.fixture
def gone_while_read(monkeypatch):
    """web02 is listed, then undefined before its state is read; db01 fails for another reason."""
    def describe(dom):
        if dom.name() == "web02":
            raise KvmImagesError("cannot read the state of web02: Domain not found", libvirt_code=NO_DOMAIN)
        if dom.name() == "db01":
            raise KvmImagesError("cannot read the state of db01: connection reset", libvirt_code=38)
        return {"name": dom.name(), "disks": []}
    monkeypatch.setattr(disk_inventory, "describe_domain", describe)


def test_a_domain_undefined_while_the_hypervisor_is_read_is_left_out(gone_while_read):
    assert [d["name"] for d in disk_inventory.describe_hypervisor(Hypervisor("web01", "web02"))] == ["web01"]


def test_other_failures_and_a_named_domain_that_vanished_still_fail(gone_while_read):
    with pytest.raises(KvmImagesError, match="connection reset"):
        disk_inventory.describe_hypervisor(Hypervisor("web01", "db01"))
    with pytest.raises(KvmImagesError, match="domain web02 was undefined while the hypervisor was read"):
        disk_inventory.describe_hypervisor(Hypervisor("web01", "web02"), names=["web02"])


@pytest.mark.parametrize("inside_source, reason", [
    ("<slices><slice type='storage' offset='0' size='1048576'/></slices>",
     "its source has <slices> (a byte range of the file)"),
    ("<encryption format='luks'><secret type='passphrase' usage='x'/></encryption>", "encrypted (<encryption>)"),
], ids=["slices", "encrypted"])
def test_sliced_and_encrypted_disks_are_skipped_with_the_reason(inside_source, reason):
    from ansible_collections.kvm.images.plugins.module_utils import domain_xml
    root = domain_xml.parse("<domain><name>web01</name><devices><disk type='file' device='disk'>"
                            "<driver name='qemu' type='raw'/><source file='/i/web01.raw'>" + inside_source +
                            "</source><target dev='vda' bus='virtio'/></disk></devices></domain>")
    [disk] = domain_xml.list_disks(root)
    domain = {"persistent": True, "snapshots": 0, "has_managed_save": False}
    assert disk_inventory.disk_skip_reason(disk, domain) == reason
