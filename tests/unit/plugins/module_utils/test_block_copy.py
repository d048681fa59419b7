# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The block copy state machine against a fake virDomain."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.atomic_file import live_copy_marker
from ansible_collections.kvm.images.plugins.module_utils.block_copy import (
    AUTO,
    BACKGROUND,
    BLOCK_COPY_REUSE_EXT,
    BLOCK_COPY_SYNCHRONOUS_WRITES,
    BLOCK_COPY_TRANSIENT_JOB,
    BLOCK_JOB_ABORT_PIVOT,
    WRITE_BLOCKING,
    BlockCopy,
    dest_xml,
    is_ready,
    planned_modes,
    write_blocking_supported,
)
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeClock, MirroringDomain

pytestmark = pytest.mark.usefixtures("live_disk_from_the_fake")


class CopyingDomain(MirroringDomain):
    """A mirror that copies ``rate`` bytes per second of clock time, READY once done; each call is noted with its
    arguments."""

    def __init__(self, clock, size=100, rate=50, vanish_at=None, pivot_takes=0.05):
        super().__init__(source="/i/a.raw", size=size, clock=clock)
        self.rate = rate
        self.vanish_at = vanish_at
        self.pivot_takes = pivot_takes
        self.started_at = None

    def record(self, call, *args):
        self.calls.append((call, *args))

    def blockCopy(self, target, xml, params, flags):
        super().blockCopy(target, xml, params, flags)
        self.started_at = self.clock()

    def blockJobInfo(self, target, flags):
        if self.started_at is None:
            return {}
        elapsed = self.clock() - self.started_at
        if self.vanish_at is not None and elapsed >= self.vanish_at:
            return {}
        return {"type": 2, "bandwidth": 0, "cur": min(self.size, int(elapsed * self.rate)), "end": self.size}

    def blockJobAbort(self, target, flags):
        if flags == BLOCK_JOB_ABORT_PIVOT:
            self.clock.now += self.pivot_takes
        super().blockJobAbort(target, flags)
        self.started_at = None

    def mirror_ready(self):
        info = self.blockJobInfo("vda", 0)
        return bool(info) and info["cur"] == info["end"]


def make(clock, dom, **kwargs):
    return BlockCopy(dom, "vda", "/i/a.qcow2", "qcow2", timeout=kwargs.pop("timeout", 60), clock=clock,
                     sleep=clock.sleep, **kwargs)


def test_start_flags_and_bandwidth():
    clock = FakeClock()
    dom = CopyingDomain(clock)
    make(clock, dom, bandwidth_mib=16).start(persistent=True)
    name, target, xml, params, flags = dom.calls[0]
    assert (name, target, xml) == ("blockCopy", "vda", dest_xml("/i/a.qcow2", "qcow2"))
    assert params == {"bandwidth": 16 << 20}
    assert flags == BLOCK_COPY_REUSE_EXT | BLOCK_COPY_TRANSIENT_JOB


def test_transient_domain_copies_without_the_transient_job_flag():
    clock = FakeClock()
    dom = CopyingDomain(clock)
    make(clock, dom).start(persistent=False)
    assert dom.calls[0][4] == BLOCK_COPY_REUSE_EXT


def test_write_blocking_mode_sets_libvirts_synchronous_writes_flag():
    clock = FakeClock()
    dom = CopyingDomain(clock)
    copy = make(clock, dom)
    copy.start(persistent=True, mode=WRITE_BLOCKING)
    assert dom.calls[0][4] == BLOCK_COPY_REUSE_EXT | BLOCK_COPY_TRANSIENT_JOB | BLOCK_COPY_SYNCHRONOUS_WRITES
    assert copy.mode == WRITE_BLOCKING


def test_waits_for_ready_then_pivots():
    clock = FakeClock()
    dom = CopyingDomain(clock, size=100, rate=50)
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
    dom = CopyingDomain(clock, size=1000, rate=1)
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
    dom = CopyingDomain(clock, size=1000, rate=10, vanish_at=1.0)
    copy = make(clock, dom)
    copy.start(persistent=True)
    with pytest.raises(KvmImagesError, match="stopped before it was ready"):
        copy.wait_ready()


def test_marker_sits_beside_the_destination():
    assert live_copy_marker("/i/web 01.qcow2") == "/i/.web 01.qcow2.kvm-images-copy"


def test_reconnects_when_libvirtd_restarts_and_follows_the_job():
    import libvirt

    clock = FakeClock()
    dom = CopyingDomain(clock, size=100, rate=50)
    survivor = CopyingDomain(clock, size=100, rate=50)
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
    dom = CopyingDomain(clock)

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
    dom = CopyingDomain(clock, size=100, rate=1)
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


class BusyDomain(CopyingDomain):
    """A guest that dirties copied blocks at ``dirty_rate``. A background copy gains only what it copies
    beyond that; a write-blocking one lands the guest's writes on both images, so only its own pass is
    left, and once it is READY ``end`` runs ``in_flight`` bytes ahead of ``cur`` (writes on their way)."""

    def __init__(self, clock, dirty_rate, in_flight=4096, **kwargs):
        super().__init__(clock, **kwargs)
        self.dirty_rate = dirty_rate
        self.in_flight = in_flight

    def left(self):
        elapsed = self.clock() - self.started_at
        gain = self.rate if self.write_blocking else self.rate - self.dirty_rate
        return max(0, self.size - int(elapsed * gain)) if gain > 0 else self.size

    def blockJobInfo(self, target, flags):
        if self.started_at is None:
            return {}
        elapsed = self.clock() - self.started_at
        cur = int(elapsed * (self.rate + (self.dirty_rate if self.write_blocking else 0)))
        ahead = self.in_flight if self.write_blocking and not self.left() else 0
        return {"type": 2, "cur": cur, "end": cur + self.left() + ahead}

    def mirror_ready(self):
        return self.started_at is not None and not self.left()


def test_a_guest_writing_as_fast_as_the_copy_keeps_a_background_copy_from_ready_and_the_failure_says_how_far():
    clock = FakeClock()
    dom = BusyDomain(clock, dirty_rate=50, size=100, rate=50)
    copy = make(clock, dom, timeout=10)
    copy.start(persistent=True, mode=BACKGROUND)
    with pytest.raises(KvmImagesError) as failure:
        copy.wait_ready()
    assert failure.value.msg.startswith("the block copy was not ready within 10 s (domain web01, disk vda,"
                                        " /i/a.qcow2): background copy at 83 % after 10.")
    assert failure.value.msg.endswith("; it was aborted and the guest stays on its original disk")
    [attempt] = failure.value.details["attempts"]
    assert attempt["mode"] == BACKGROUND and attempt["remaining"] == 100 and attempt["seconds"] > 10
    assert attempt["percent"] == attempt["bytes"] * 100 // (attempt["bytes"] + 100)


def test_the_same_guest_under_a_write_blocking_copy_is_ready_after_one_pass_though_end_runs_ahead_of_cur():
    clock = FakeClock()
    dom = BusyDomain(clock, dirty_rate=50, size=100, rate=50)
    copy = make(clock, dom, timeout=10)
    copy.start(persistent=True, mode=WRITE_BLOCKING)
    copy.wait_ready()
    info = dom.blockJobInfo("vda", 0)
    assert info["end"] - info["cur"] == 4096
    assert 2.0 <= clock.now < 2.5
    assert copy.report() == [{"mode": WRITE_BLOCKING, "percent": 100, "bytes": info["cur"], "remaining": 0,
                              "seconds": round(clock.now, 1)}]


@pytest.mark.parametrize("mode, cur, end, mirror_ready, expected", [
    (BACKGROUND, 100, 100, True, True),
    (BACKGROUND, 99, 100, True, False),
    (BACKGROUND, 100, 100, False, False),
    (WRITE_BLOCKING, 99, 100, True, True),
    (WRITE_BLOCKING, 100, 100, False, False),
    (WRITE_BLOCKING, 0, 0, True, False),
], ids=["background-caught-up", "background-behind", "background-not-ready", "write-blocking-writes-in-flight",
        "write-blocking-not-ready", "not-started"])
def test_ready_for_the_pivot(mode, cur, end, mirror_ready, expected):
    assert is_ready(mode, {"cur": cur, "end": end}, lambda: mirror_ready) is expected


@pytest.mark.parametrize("libvirt_version, qemu_version, expected", [
    (9_000_000, 7_002_000, True),
    (8_000_000, 4_002_000, True),
    (7_010_000, 7_002_000, False),
    (9_000_000, 4_001_000, False),
], ids=["libvirt-9.0-qemu-7.2", "oldest-that-can", "libvirt-7.10", "qemu-4.1"])
def test_write_blocking_needs_libvirt_8_and_qemu_4_2(libvirt_version, qemu_version, expected):
    assert write_blocking_supported(libvirt_version, qemu_version) is expected


@pytest.mark.parametrize("requested, supported, expected", [
    (AUTO, True, [WRITE_BLOCKING, BACKGROUND]),
    (AUTO, False, [BACKGROUND]),
    (WRITE_BLOCKING, True, [WRITE_BLOCKING]),
    (BACKGROUND, True, [BACKGROUND]),
    (BACKGROUND, False, [BACKGROUND]),
], ids=["auto", "auto-old-daemon", "write-blocking", "background", "background-old-daemon"])
def test_planned_modes(requested, supported, expected):
    assert planned_modes(requested, supported) == expected


def test_write_blocking_where_it_cannot_run_is_refused_before_anything_is_created():
    with pytest.raises(KvmImagesError, match=r"^copy_mode write_blocking needs libvirt 8.0.0 and QEMU 4.2.0 or later"
                                             r" \(libvirt 7.10.0, QEMU 7.2.0 here\); nothing was created$"):
        planned_modes(WRITE_BLOCKING, False, " (libvirt 7.10.0, QEMU 7.2.0 here)")


def busy_write_blocking_copy(paused=False, resume_fails=False):
    """A write-blocking copy, started, of a guest that writes faster than it is copied: one ``paused`` before,
    or one whose resume fails (``resume_fails``)."""
    clock = FakeClock()
    dom = BusyDomain(clock, dirty_rate=50, size=1000, rate=10)
    dom.paused, dom.resume_fails = paused, resume_fails
    copy = make(clock, dom, timeout=5)
    copy.start(persistent=True, mode=WRITE_BLOCKING)
    return dom, copy


def test_a_write_blocking_job_is_aborted_with_the_guest_paused_for_as_long_as_the_abort_takes():
    """QEMU 7.2 crashed when such a job was cancelled with guest writes in flight; a paused guest has none."""
    dom, copy = busy_write_blocking_copy()
    with pytest.raises(KvmImagesError, match="not ready within 5 s"):
        copy.wait_ready()
    copy.abort()
    assert dom.calls[1:] == [("suspend",), ("blockJobAbort", "vda", 0), ("resume",)]
    assert not dom.paused and dom.source == "/i/a.raw"


def test_a_guest_paused_before_stays_paused_and_a_background_job_is_aborted_as_it_runs():
    dom, copy = busy_write_blocking_copy(paused=True)
    copy.abort()
    assert dom.calls[1:] == [("blockJobAbort", "vda", 0)] and dom.paused
    dom.paused = False
    copy.start(persistent=True, mode=BACKGROUND)
    copy.abort()
    assert dom.calls[3:] == [("blockJobAbort", "vda", 0)]


def test_a_guest_that_cannot_be_resumed_is_an_error_of_its_own_not_swallowed_by_the_cleanup():
    _dom, copy = busy_write_blocking_copy(resume_fails=True)
    with pytest.raises(KvmImagesError, match=r"^domain web01 was paused to end its block copy and could not be resumed"
                                             r" \(.*cannot acquire state change lock\); resume it with virsh resume"
                                             r" web01$") as failure:
        copy.abort()
    assert failure.value.details["left_paused"]


def test_what_is_left_is_the_most_seen_lately_not_the_moment_the_copy_had_just_cleaned_up():
    """Behind a busy guest libvirt shows 1 byte left whenever the copy has just cleaned what the guest dirtied."""
    clock = FakeClock()
    dom = CopyingDomain(clock)
    copy = make(clock, dom)
    copy.start(persistent=True, mode=BACKGROUND)
    for left in (40, 30, 1, 25, 1):
        clock.sleep(1)
        copy.note({"cur": 100, "end": 100 + left})
    assert copy.report()[0]["remaining"] == 40
    clock.sleep(8)
    copy.note({"cur": 100, "end": 101})
    assert copy.report()[0]["remaining"] == 25
