# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which copy mode a live conversion runs in, what it reports, and how it gives up."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.images.plugins.module_utils.block_copy import (
    BACKGROUND,
    BLOCK_COPY_SYNCHRONOUS_WRITES,
    WRITE_BLOCKING,
    LiveConversion,
)
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import (
    FakeClock,
    FakeConnection,
    FakeQemu,
    MirroringDomain,
)

pytestmark = pytest.mark.usefixtures("live_disk_from_the_fake")

OLD_DAEMON = FakeConnection(libvirt_version=7_010_000)


class Refusal(Exception):
    """What libvirt raises for a flag it does not know (stands in for libvirtError, which needs a live error)."""

    def get_error_code(self):
        return 8

    def get_error_message(self):
        return "unsupported flags (0x8) in function qemuDomainBlockCopy"


class Refusing(MirroringDomain):
    """A daemon whose version promises write-blocking copies, but which refuses them."""

    def blockCopy(self, target, xml, params, flags):
        if flags & BLOCK_COPY_SYNCHRONOUS_WRITES:
            self.calls.append("refused")
            raise Refusal()
        super().blockCopy(target, xml, params, flags)


class NeverReady(MirroringDomain):
    """A copy that moves but never gets READY (a busy guest under a background copy, or a slow pass)."""

    ready = False

    def blockJobInfo(self, target, flags):
        return {"type": 2, "cur": 48 << 20, "end": 96 << 20} if self.mirror_to else {}


@pytest.fixture
def refusal_is_a_libvirt_error(monkeypatch):
    from ansible_collections.kvm.images.plugins.module_utils import libvirt_connection
    monkeypatch.setattr(libvirt_connection.libvirt, "libvirtError", Refusal)


def conversion(dom, dest, copy_mode="auto", timeout=10):
    return LiveConversion(dom, FakeQemu(), target="vda", dest=dest, fmt="qcow2", options=None, bandwidth_mib=4,
                          timeout=timeout, copy_mode=copy_mode)


def files(tmp_path):
    return sorted(path.name for path in tmp_path.iterdir())


@pytest.mark.parametrize("copy_mode, connection, expected", [
    ("auto", FakeConnection(), WRITE_BLOCKING),
    ("auto", OLD_DAEMON, BACKGROUND),
    ("write_blocking", FakeConnection(), WRITE_BLOCKING),
    ("background", FakeConnection(), BACKGROUND),
], ids=["auto", "auto-on-libvirt-7.10", "write-blocking", "background"])
def test_the_copy_runs_in_the_mode_planned_and_says_so(tmp_path, copy_mode, connection, expected):
    dest = str(tmp_path / "a.qcow2")
    dom = MirroringDomain(mirror_to=None, connection=connection)
    live = conversion(dom, dest, copy_mode)
    result = live.run(live.decide()[1], pivot=True)
    assert live.modes[0] == expected
    assert bool(dom.copy_flags[0] & BLOCK_COPY_SYNCHRONOUS_WRITES) is (expected == WRITE_BLOCKING)
    assert result["copy_mode"] == expected
    assert result["attempts"] == [{"mode": expected, "percent": 100, "bytes": 1 << 20, "remaining": 0,
                                   "seconds": result["attempts"][0]["seconds"]}]
    assert dom.source == dest


def test_write_blocking_on_a_daemon_that_cannot_is_refused_before_anything_is_created(tmp_path):
    dom = MirroringDomain(mirror_to=None, connection=OLD_DAEMON)
    with pytest.raises(KvmImagesError, match=r"copy_mode write_blocking needs libvirt 8.0.0 and QEMU 4.2.0 or later"
                                             r" \(libvirt 7.10.0, QEMU 7.2.0 here\); nothing was created"):
        conversion(dom, str(tmp_path / "a.qcow2"), "write_blocking").decide()
    assert dom.calls == [] and files(tmp_path) == []


def test_auto_falls_back_to_a_background_copy_when_the_daemon_refuses_write_blocking(tmp_path,
                                                                                     refusal_is_a_libvirt_error):
    dest = str(tmp_path / "a.qcow2")
    dom = Refusing(mirror_to=None)
    live = conversion(dom, dest)
    result = live.run(live.decide()[1], pivot=True)
    assert dom.calls == ["refused", "copy", "pivot"]
    assert result["copy_mode"] == BACKGROUND
    refused, copied = result["attempts"]
    assert refused["mode"] == WRITE_BLOCKING and refused["error"].endswith(
        "unsupported flags (0x8) in function qemuDomainBlockCopy")
    assert copied["mode"] == BACKGROUND and copied["percent"] == 100
    assert dom.source == dest and files(tmp_path) == ["a.qcow2"]


def test_write_blocking_asked_for_and_refused_fails_cleanly(tmp_path, refusal_is_a_libvirt_error):
    dom = Refusing(mirror_to=None)
    live = conversion(dom, str(tmp_path / "a.qcow2"), "write_blocking")
    with pytest.raises(KvmImagesError, match=r"^cannot start the write-blocking block copy of domain web01, disk vda"):
        live.run(live.decide()[1], pivot=True)
    assert dom.calls == ["refused"] and dom.source == "/d/a.raw" and files(tmp_path) == []


@pytest.mark.parametrize("copy_mode, label", [("auto", "write-blocking"), ("background", "background")])
def test_a_copy_that_cannot_finish_gives_up_cleanly_and_says_which_mode_got_how_far(tmp_path, copy_mode, label):
    dest = str(tmp_path / "a.qcow2")
    dom = NeverReady(mirror_to=None)
    live = conversion(dom, dest, copy_mode, timeout=5)
    clock = FakeClock()
    live.copy.clock, live.copy.sleep = clock, clock.sleep
    with pytest.raises(KvmImagesError) as failure:
        live.run(live.decide()[1], pivot=True)
    assert failure.value.msg == (f"the block copy was not ready within 5 s (domain web01, disk vda, {dest}): {label}"
                                 " copy at 50 % after 5.1 s (48.0 MiB copied, 48.0 MiB left); it was aborted and the"
                                 " guest stays on its original disk")
    assert failure.value.details["attempts"] == [{"mode": copy_mode.replace("auto", WRITE_BLOCKING), "percent": 50,
                                                  "bytes": 48 << 20, "remaining": 48 << 20, "seconds": 5.1}]
    ended = ["suspend", "abort", "resume"] if copy_mode == "auto" else ["abort"]
    assert dom.calls == ["copy"] + ended and dom.source == "/d/a.raw" and dom.mirror_to is None
    assert files(tmp_path) == [] and not os.path.exists(dest)


def test_a_guest_left_paused_by_the_cleanup_is_named_first_in_the_failure(tmp_path):
    dest = str(tmp_path / "a.qcow2")
    dom = NeverReady(mirror_to=None)
    dom.resume_fails = True
    live = conversion(dom, dest, timeout=5)
    clock = FakeClock()
    live.copy.clock, live.copy.sleep = clock, clock.sleep
    with pytest.raises(KvmImagesError) as failure:
        live.run(live.decide()[1], pivot=True)
    assert failure.value.msg.startswith("domain web01 was paused to end its block copy and could not be resumed (")
    assert "; resume it with virsh resume web01; the block copy was not ready within 5 s" in failure.value.msg
    assert failure.value.details["left_paused"] and failure.value.details["attempts"][0]["mode"] == WRITE_BLOCKING
    assert dom.calls == ["copy", "suspend", "abort", "resume"]


@pytest.mark.parametrize("copy_mode, ended", [("auto", ["suspend", "abort", "resume"]), ("background", ["abort"])])
def test_a_copy_kept_without_a_pivot_ends_as_an_abort_does(tmp_path, copy_mode, ended):
    """pivot: false ends a write-blocking job too, so with the guest paused as well."""
    dest = str(tmp_path / "a.qcow2")
    dom = MirroringDomain(mirror_to=None)
    live = conversion(dom, dest, copy_mode)
    result = live.run(live.decide()[1], pivot=False)
    assert dom.calls == ["copy"] + ended and not result["pivoted"]
    assert dom.source == "/d/a.raw" and files(tmp_path) == ["a.qcow2"]
