# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one libvirt connection helper, against libvirt's test driver (fast; the real libvirtd is the
integration targets' business)."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import (
    NO_DOMAIN,
    LibvirtConnection,
    inactive_xml,
    libvirt_call,
    live_xml,
    state_name,
)

TEST_URI = "test:///default"


def test_a_domain_is_found_by_name_and_described():
    with LibvirtConnection(TEST_URI) as connection:
        dom = connection.domain("test")
        assert state_name(dom) == "running"
        assert domain_xml.parse(inactive_xml(dom)).findtext("name") == "test"
        assert domain_xml.parse(live_xml(dom)).findtext("name") == "test"
        assert [d.name() for d in connection.domains()] == ["test"]


def test_an_unknown_domain_carries_libvirt_s_code():
    with LibvirtConnection(TEST_URI) as connection, pytest.raises(KvmImagesError) as caught:
        connection.domain("nope")
    assert caught.value.msg == f"domain nope not found on {TEST_URI}"
    assert caught.value.details["libvirt_code"] == NO_DOMAIN


def test_an_unreachable_daemon_is_a_clear_failure():
    uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    with pytest.raises(KvmImagesError) as caught, LibvirtConnection(uri):
        pass
    assert caught.value.msg.startswith(f"cannot connect to libvirt at {uri}: Failed to connect socket")
    assert caught.value.details == {"uri": uri}


def test_libvirt_errors_name_what_failed():
    with LibvirtConnection(TEST_URI) as connection:
        dom = connection.domain("test")
        with pytest.raises(KvmImagesError) as caught:
            libvirt_call("cannot start test", dom.create)
    assert caught.value.msg.startswith("cannot start test: ")
    assert "libvirt_code" in caught.value.details


def test_reopen_gives_a_fresh_connection_and_close_is_idempotent():
    connection = LibvirtConnection(TEST_URI)
    with connection:
        first = connection.conn
        connection.reopen()
        assert connection.conn is not first
        assert connection.domain("test").name() == "test"
    assert connection.conn is None
    connection.__exit__(None, None, None)
