# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A block copy left running by a run that was killed: taken over when it is ours, refused when not."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.images.plugins.module_utils import block_copy, domain_xml
from ansible_collections.kvm.images.plugins.module_utils.atomic_file import (
    LIVE_COPY_MARK,
    claim_marker,
    live_copy_marker,
    marker_holder,
)
from ansible_collections.kvm.images.plugins.module_utils.block_copy import (
    BACKGROUND,
    BLOCK_COPY_SYNCHRONOUS_WRITES,
    WRITE_BLOCKING,
    LiveConversion,
    is_leftover_job,
    mirror_source,
)
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeClock, FakeQemu, MirroringDomain

pytestmark = pytest.mark.usefixtures("live_disk_from_the_fake")

DISK = "<disk type='file' device='disk'><source file='/d/a.raw'/><target dev='vda'/>%s</disk>"


@pytest.mark.parametrize("mirror, expected", [
    ("", None),
    ("<mirror type='file' job='copy' ready='yes'><format type='qcow2'/><source file='/d/a.qcow2'/></mirror>",
     "/d/a.qcow2"),
    ("<mirror type='file' file='/d/old.qcow2' format='qcow2' job='copy'/>", "/d/old.qcow2"),
])
def test_mirror_source_reads_both_forms_libvirt_writes(mirror, expected):
    assert mirror_source(domain_xml.parse(DISK % mirror).find("mirror")) == expected


def conversion(dom, dest, copy_mode="auto", force=False):
    return LiveConversion(dom, FakeQemu(), target="vda", dest=dest, fmt="qcow2", options=None, bandwidth_mib=None,
                          timeout=10, copy_mode=copy_mode, force=force)


def leave_behind(dest):
    """What a killed run leaves: its marker and a half-written destination."""
    open(live_copy_marker(dest), "w", encoding="utf-8").close()
    open(dest, "wb").close()


def test_only_a_job_into_our_destination_with_our_marker_is_a_leftover(tmp_path):
    dest = str(tmp_path / "a.qcow2")
    disk = {"mirror": True, "mirror_source": dest}
    assert not is_leftover_job(disk, dest)
    leave_behind(dest)
    assert is_leftover_job(disk, dest)
    assert not is_leftover_job({"mirror": True, "mirror_source": str(tmp_path / "other.qcow2")}, dest)
    assert not is_leftover_job({"mirror": False, "mirror_source": None}, dest)


@pytest.mark.parametrize("stranded_write_blocking, copy_mode, restarted_in", [
    (False, "auto", WRITE_BLOCKING),
    (True, "auto", WRITE_BLOCKING),
    (True, "background", BACKGROUND),
], ids=["background-job", "write-blocking-job", "write-blocking-job-restarted-in-background"])
def test_a_leftover_job_is_aborted_then_the_copy_starts_again_and_pivots(
        tmp_path, stranded_write_blocking, copy_mode, restarted_in):
    """Whatever mode the killed run's job copies in (the live XML does not tell), it is taken over alike."""
    dest = str(tmp_path / "a.qcow2")
    leave_behind(dest)
    dom = MirroringDomain(mirror_to=dest, write_blocking=stranded_write_blocking)
    live = conversion(dom, dest, copy_mode)
    reason, disk = live.decide()
    assert "interrupted earlier run" in reason
    result = live.run(disk, pivot=True)
    assert dom.calls == ["suspend", "abort", "resume", "copy", "pivot"]
    assert bool(dom.copy_flags[0] & BLOCK_COPY_SYNCHRONOUS_WRITES) is (restarted_in == WRITE_BLOCKING)
    assert dom.source == dest and dom.mirror_to is None
    assert result["pivoted"] and result["copy_mode"] == restarted_in
    assert [attempt["mode"] for attempt in result["attempts"]] == [restarted_in]
    assert not (tmp_path / ("." + "a.qcow2" + LIVE_COPY_MARK)).exists()


def test_a_job_this_collection_did_not_start_is_left_alone(tmp_path):
    dest = str(tmp_path / "a.qcow2")
    dom = MirroringDomain(mirror_to="/elsewhere/backup.qcow2")
    with pytest.raises(KvmImagesError, match=r"into /elsewhere/backup\.qcow2.*nothing was created"):
        conversion(dom, dest).decide()
    assert dom.calls == [] and not (tmp_path / "a.qcow2").exists()


def test_a_job_into_our_path_without_our_marker_is_not_ours(tmp_path):
    dest = str(tmp_path / "a.qcow2")
    dom = MirroringDomain(mirror_to=dest)
    with pytest.raises(KvmImagesError, match="already has a block job"):
        conversion(dom, dest).decide()
    assert dom.calls == []


def test_a_run_killed_after_the_pivot_is_finished_by_the_next(tmp_path, monkeypatch):
    dest = str(tmp_path / "a.qcow2")
    leave_behind(dest)
    dom = MirroringDomain(mirror_to=None)
    dom.source = dest
    dom.isPersistent = lambda: 1
    fixed = []
    monkeypatch.setattr(block_copy, "persistent_disk", lambda dom, target: {"source": "/d/a.raw", "driver_type": "raw"})
    monkeypatch.setattr(block_copy, "fix_persistent", lambda *args: fixed.append(args) or True)
    live = conversion(dom, dest)
    reason, disk = live.decide()
    assert reason == "the persistent definition is pointed at the copy the guest runs on"
    live.run(disk, pivot=True)
    assert fixed and dom.calls == []
    assert not (tmp_path / ("." + "a.qcow2" + LIVE_COPY_MARK)).exists()


def test_the_switch_is_in_the_journal_before_the_pivot(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.journal import parse_entries
    dest, journal = str(tmp_path / "a.qcow2"), tmp_path / "journal.jsonl"

    class Recording(MirroringDomain):
        def blockJobAbort(self, target, flags):
            self.calls.append([(e["source"], e["dest"]) for e in parse_entries(journal.read_text())])
            super().blockJobAbort(target, flags)

    dom = Recording(mirror_to=None)
    live = LiveConversion(dom, FakeQemu(), target="vda", dest=dest, fmt="qcow2", options=None, bandwidth_mib=None,
                          timeout=10, journal=str(journal))
    live.run(live.decide()[1], pivot=True)
    assert dom.calls == ["copy", [("/d/a.raw", dest)], "pivot"]
    assert dom.source == dest


def test_no_journal_line_no_pivot(tmp_path):
    dest = str(tmp_path / "a.qcow2")
    dom = MirroringDomain(mirror_to=None)
    live = LiveConversion(dom, FakeQemu(), target="vda", dest=dest, fmt="qcow2", options=None, bandwidth_mib=None,
                          timeout=10, journal=str(tmp_path / "missing" / "journal.jsonl"))
    with pytest.raises(KvmImagesError, match="cannot record the switch of web01"):
        live.run(live.decide()[1], pivot=True)
    assert dom.calls == ["copy", "suspend", "abort", "resume"]
    assert dom.source == "/d/a.raw"
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize("write_blocking", [False, True], ids=["background-job", "write-blocking-job"])
def test_a_copy_an_orphaned_module_still_follows_is_waited_for_never_taken_over(tmp_path, write_blocking):
    """kill -9 of ansible-playbook leaves its module running: the next run must not pull the job from under it."""
    dest = str(tmp_path / "a.qcow2")
    open(dest, "wb").close()
    orphan = claim_marker(live_copy_marker(dest), "4242 web01 vda\n")
    dom = MirroringDomain(mirror_to=dest, write_blocking=write_blocking)
    live = conversion(dom, dest)
    clock = FakeClock()
    with pytest.raises(KvmImagesError, match=r"another process \(pid 4242\) still copies domain web01, disk vda"
                                             r" into .*a.qcow2 .*; waited 30 s and changed nothing"):
        live.wait_for_earlier_process(30, clock=clock, sleep=clock.sleep)
    with pytest.raises(KvmImagesError, match=r"another process \(pid 4242\).*nothing was changed"):
        live.run(live.decide()[1], pivot=True)
    assert dom.calls == [] and os.path.exists(dest)

    def orphan_finishes(seconds):
        clock.sleep(seconds)
        os.unlink(live_copy_marker(dest))
        os.close(orphan)
    clock = FakeClock()
    assert live.wait_for_earlier_process(30, clock=clock, sleep=orphan_finishes) == 1.0


def test_the_marker_of_a_dead_process_is_claimed(tmp_path):
    marker = str(tmp_path / ".a.qcow2.kvm-images-copy")
    with open(marker, "w", encoding="utf-8") as left:
        left.write("4242 web01 vda\n")
    assert marker_holder(marker) is None
    fd = claim_marker(marker, "5151 web01 vda\n")
    try:
        assert marker_holder(marker) == "5151 web01 vda"
        with pytest.raises(BlockingIOError):
            claim_marker(marker, "6161 web01 vda\n")
    finally:
        os.close(fd)
    assert marker_holder(marker) is None


def test_a_file_at_the_destination_is_replaced_only_with_force(tmp_path):
    """The stale image a rollback kept: the role asks for force; unasked, nothing is touched."""
    dest = tmp_path / "a.qcow2"
    dest.write_bytes(b"stale")
    dom = MirroringDomain(mirror_to=None)
    with pytest.raises(KvmImagesError, match=r"a\.qcow2 exists; a block copy would overwrite it\. Nothing was changed"):
        conversion(dom, str(dest)).decide()
    assert dest.read_bytes() == b"stale" and dom.calls == []
    live = conversion(dom, str(dest), force=True)
    reason, disk = live.decide()
    assert reason.endswith(f", live; replaces the existing {dest} (force)")
    live.run(disk, pivot=True)
    assert dom.source == str(dest) and dest.read_bytes() != b"stale"


def test_force_never_replaces_a_file_qemu_holds_or_a_directory(tmp_path, monkeypatch):
    held = tmp_path / "held.qcow2"
    held.write_bytes(b"in use")
    monkeypatch.setattr(block_copy, "held_by_qemu", lambda path: path == str(held))
    directory = tmp_path / "dir.qcow2"
    directory.mkdir()
    for dest in (held, directory):
        dom = MirroringDomain(mirror_to=None)
        with pytest.raises(KvmImagesError, match="is not a regular file out of QEMU's use; a block copy does not"
                                                 " replace it, even with force"):
            conversion(dom, str(dest), force=True).decide()
        assert dom.calls == []
    assert held.read_bytes() == b"in use" and directory.is_dir()
