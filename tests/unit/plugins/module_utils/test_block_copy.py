# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The block copy state machine against a fake virDomain."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils import block_copy
from ansible_collections.kvm.images.plugins.module_utils.block_copy import (
    BLOCK_COPY_REUSE_EXT,
    BLOCK_COPY_TRANSIENT_JOB,
    BLOCK_JOB_ABORT_PIVOT,
    BlockCopy,
    dest_xml,
)
from ansible_collections.kvm.images.plugins.module_utils.atomic_file import live_copy_marker
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fake_clock import FakeClock


class FakeDomain:
    """A mirror that copies ``rate`` bytes per second of clock time, READY once done."""

    def __init__(self, clock, size=100, rate=50, vanish_at=None, pivot_takes=0.05):
        self.clock = clock
        self.size = size
        self.rate = rate
        self.vanish_at = vanish_at
        self.pivot_takes = pivot_takes
        self.started_at = None
        self.calls = []
        self.source = "/i/a.raw"
        self.active = True

    def isActive(self):
        return self.active

    def name(self):
        return "web01"

    def blockCopy(self, target, xml, params, flags):
        self.calls.append(("blockCopy", target, xml, params, flags))
        self.started_at = self.clock()

    def blockJobInfo(self, target, flags):
        if self.started_at is None:
            return {}
        elapsed = self.clock() - self.started_at
        if self.vanish_at is not None and elapsed >= self.vanish_at:
            return {}
        return {"type": 2, "bandwidth": 0, "cur": min(self.size, int(elapsed * self.rate)), "end": self.size}

    def blockJobAbort(self, target, flags):
        self.calls.append(("blockJobAbort", target, flags))
        if flags == BLOCK_JOB_ABORT_PIVOT:
            self.clock.now += self.pivot_takes
            self.source = "/i/a.qcow2"
        self.started_at = None

    def mirror_ready(self):
        info = self.blockJobInfo("vda", 0)
        return bool(info) and info["cur"] == info["end"]


@pytest.fixture(autouse=True)
def fake_live_xml(monkeypatch):
    """live_disk reads the live XML; the fake answers from its own state."""
    def live_disk(dom, target):
        return {"source": dom.source, "driver_type": "qcow2" if dom.source.endswith("qcow2") else "raw",
                "mirror_ready": dom.mirror_ready(), "mirror": dom.started_at is not None}
    monkeypatch.setattr(block_copy, "live_disk", live_disk)


def make(clock, dom, **kwargs):
    return BlockCopy(dom, "vda", "/i/a.qcow2", "qcow2", timeout=kwargs.pop("timeout", 60), clock=clock,
                     sleep=clock.sleep, **kwargs)


def test_start_flags_and_bandwidth():
    clock = FakeClock()
    dom = FakeDomain(clock)
    make(clock, dom, bandwidth_mib=16).start(persistent=True)
    name, target, xml, params, flags = dom.calls[0]
    assert (name, target, xml) == ("blockCopy", "vda", dest_xml("/i/a.qcow2", "qcow2"))
    assert params == {"bandwidth": 16 << 20}
    assert flags == BLOCK_COPY_REUSE_EXT | BLOCK_COPY_TRANSIENT_JOB


def test_transient_domain_copies_without_the_transient_job_flag():
    clock = FakeClock()
    dom = FakeDomain(clock)
    make(clock, dom).start(persistent=False)
    assert dom.calls[0][4] == BLOCK_COPY_REUSE_EXT


def test_waits_for_ready_then_pivots():
    clock = FakeClock()
    dom = FakeDomain(clock, size=100, rate=50)
    copy = make(clock, dom)
    copy.start(persistent=True)
    copy.wait_ready()
    assert clock.now >= 2.0
    assert copy.bytes_copied == 100
    pause = copy.pivot()
    assert pause == pytest.approx(0.05)
    assert dom.calls[-1] == ("blockJobAbort", "vda", BLOCK_JOB_ABORT_PIVOT)
    assert dom.source == "/i/a.qcow2"


def test_never_pivots_before_ready_and_aborts_at_the_timeout():
    clock = FakeClock()
    dom = FakeDomain(clock, size=1000, rate=1)
    copy = make(clock, dom, timeout=5)
    copy.start(persistent=True)
    with pytest.raises(KvmImagesError, match="not ready within 5 s"):
        copy.wait_ready()
    assert all(call[0] != "blockJobAbort" or call[2] != BLOCK_JOB_ABORT_PIVOT for call in dom.calls)
    copy.abort()
    assert dom.calls[-1] == ("blockJobAbort", "vda", 0)
    assert dom.source == "/i/a.raw"


def test_a_job_that_vanishes_is_a_failure():
    clock = FakeClock()
    dom = FakeDomain(clock, size=1000, rate=10, vanish_at=1.0)
    copy = make(clock, dom)
    copy.start(persistent=True)
    with pytest.raises(KvmImagesError, match="stopped before it was ready"):
        copy.wait_ready()


def test_marker_sits_beside_the_destination():
    assert live_copy_marker("/i/web 01.qcow2") == "/i/.web 01.qcow2.kvm-images-copy"


def test_reconnects_when_libvirtd_restarts_and_follows_the_job():
    import libvirt

    clock = FakeClock()
    dom = FakeDomain(clock, size=100, rate=50)
    survivor = FakeDomain(clock, size=100, rate=50)
    broken = {"left": 2}

    def flaky_info(target, flags):
        raise libvirt.libvirtError("Cannot write data: Broken pipe")

    def reconnect():
        broken["left"] -= 1
        if broken["left"] > 0:
            raise libvirt.libvirtError("Failed to connect socket")
        survivor.started_at = dom.started_at
        return survivor

    copy = make(clock, dom, reconnect=reconnect)
    copy.start(persistent=True)
    dom.blockJobInfo = flaky_info
    copy.wait_ready()
    assert copy.dom is survivor
    assert copy.bytes_copied == 100


def test_gives_up_when_libvirtd_stays_away():
    import libvirt

    clock = FakeClock()
    dom = FakeDomain(clock)

    def never():
        raise libvirt.libvirtError("Failed to connect socket")

    copy = make(clock, dom, reconnect=never)
    copy.reconnect_timeout = 5
    copy.start(persistent=True)
    dom.blockJobInfo = lambda target, flags: never()
    with pytest.raises(KvmImagesError, match="could not reconnect within 5 s"):
        copy.wait_ready()


def test_a_guest_that_stops_mid_copy_fails_at_once_without_waiting_for_libvirtd():
    import libvirt

    clock = FakeClock()
    dom = FakeDomain(clock, size=100, rate=1)
    reconnects = []

    def destroyed(target, flags):
        dom.active = False
        raise libvirt.libvirtError("Requested operation is not valid: domain is not running")

    copy = make(clock, dom, reconnect=lambda: reconnects.append(1) or dom)
    copy.start(persistent=True)
    dom.blockJobInfo = destroyed
    with pytest.raises(KvmImagesError, match=r"the guest stopped during the block copy \(domain web01, disk vda"):
        copy.wait_ready()
    assert reconnects == [] and clock() < 1
    copy.abort()  # the cleanup path: quiet, the job went with the guest
