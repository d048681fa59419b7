# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a hypervisor while other work defines and undefines domains on it."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils import disk_inventory
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import NO_DOMAIN


class Listed:
    def __init__(self, name):
        self.domain_name = name

    def name(self):
        return self.domain_name


class Hypervisor:
    def __init__(self, *names):
        self.names = names

    def domain(self, name):
        return Listed(name)

    def domains(self):
        return [Listed(name) for name in self.names]


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
