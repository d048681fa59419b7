# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""decide() on real files (the header inspector reads them), and Converter with the qemu-img seam faked."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvm.images.plugins.module_utils import atomic_file, image_convert
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_convert import Converter, decide
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeModule, FakeQemu
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.image_builders import (
    qcow2_image,
    raw_image,
    request,
)


def test_new_conversion(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    decision = decide(request(src))
    assert decision.convert
    assert decision.dest == str(tmp_path / "web.qcow2")
    assert decision.reason == f"{src} (raw) -> {tmp_path / 'web.qcow2'} (qcow2)"


def test_up_to_date_destination_is_no_change(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    qcow2_image(tmp_path / "web.qcow2")
    assert decide(request(src)).reason is None


def test_destination_older_than_the_source_is_refused(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    dest = qcow2_image(tmp_path / "web.qcow2")
    os.utime(dest, (1, 1))
    with pytest.raises(KvmImagesError, match="is not an up-to-date qcow2 conversion"):
        decide(request(src))
    assert decide(request(src, force=True)).reason == f"{dest} is replaced (force)"


def test_leftovers_alone_are_a_change(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    qcow2_image(tmp_path / "web.qcow2")
    leftover = tmp_path / ".web.qcow2.kvm-images-tmp-abc123"
    leftover.write_bytes(b"partial")
    decision = decide(request(src))
    assert not decision.convert
    assert decision.leftovers == [str(leftover)]
    assert decision.reason.startswith("leftovers of an interrupted run removed")


def test_other_files_are_never_taken_for_leftovers(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    (tmp_path / ".web.qcow2.swp").write_bytes(b"x")
    (tmp_path / ".other.qcow2.kvm-images-tmp-abc").write_bytes(b"x")
    assert decide(request(src)).leftovers == []


@pytest.mark.parametrize("setup, message", [
    (lambda d, s: None, "does not exist; nothing was written"),
    (lambda d, s: os.symlink(d / "elsewhere", d / "web.qcow2"), "is a symlink; refusing to write through it"),
    (lambda d, s: os.link(s, d / "web.qcow2"), "is the source itself; nothing was written"),
], ids=["dest-dir-missing", "symlink", "hard-link"])
def test_destination_refusals(tmp_path, setup, message):
    src = raw_image(tmp_path / "web.raw")
    setup(tmp_path, src)
    dest = str(tmp_path / "missing" / "web.qcow2") if "exist" in message else str(tmp_path / "web.qcow2")
    with pytest.raises(KvmImagesError, match=message):
        decide(request(src, dest=dest))


def test_source_with_a_forged_header_is_refused(tmp_path):
    src = qcow2_image(tmp_path / "web.raw")
    with pytest.raises(KvmImagesError, match="declared raw, but the image starts with a qcow2 header"):
        decide(request(src))


@pytest.mark.parametrize("qemu, message", [
    (FakeQemu(fail_with="qemu-img convert failed: No space left on device"), "No space left on device"),
    (FakeQemu(identical=False), "verification failed: qemu-img compare found"),
], ids=["convert-fails", "verify-fails"])
def test_a_failed_conversion_leaves_no_file(tmp_path, qemu, message):
    src = raw_image(tmp_path / "web.raw")
    req = request(src, format="raw", dest=str(tmp_path / "copy.raw"))
    decision = decide(req)
    with pytest.raises(KvmImagesError, match=message):
        Converter(FakeModule(), qemu).run(decision, req, None, None, None)
    assert sorted(os.listdir(tmp_path)) == ["web.raw"]
    assert qemu.converted and qemu.converted[0].startswith(str(tmp_path / ".copy.raw.kvm-images-tmp-"))


def test_a_good_conversion_is_renamed_into_place(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    req = request(src, format="raw", dest=str(tmp_path / "copy.raw"))
    result = Converter(FakeModule(), FakeQemu()).run(decide(req), req, None, None, None)
    assert result["verified"]
    assert sorted(os.listdir(tmp_path)) == ["copy.raw", "web.raw"]
    assert atomic_file.leftovers(str(tmp_path / "copy.raw")) == []


def test_internal_snapshots_are_never_silently_dropped(tmp_path):
    src = qcow2_image(tmp_path / "web.qcow2", snapshots=2)
    with pytest.raises(KvmImagesError, match=r"it holds 2 internal snapshot\(s\), which a conversion would drop"):
        decide(request(src, src_format="qcow2", format="raw"))


def unfinished_live_copy(tmp_path):
    """What a killed live block copy leaves: a qcow2 of the right size, newer than its source, and the marker."""
    src = raw_image(tmp_path / "web.raw")
    dest = qcow2_image(tmp_path / "web.qcow2")
    open(atomic_file.live_copy_marker(dest), "w", encoding="utf-8").close()
    return src, dest


def test_an_unfinished_live_copy_is_never_taken_for_a_finished_conversion(tmp_path):
    src, dest = unfinished_live_copy(tmp_path)
    with pytest.raises(KvmImagesError, match="did not finish - or that a guest switched to just before"):
        decide(request(src))
    decision = decide(request(src, force=True))
    assert decision.convert and decision.unfinished_live_copy
    assert decision.reason == f"{dest}, the destination of an unfinished live copy, is replaced (force)"
    req = request(src, verify=False, force=True)
    Converter(FakeModule(), FakeQemu()).run(decision, req, None, None, None)
    assert sorted(os.listdir(tmp_path)) == ["web.qcow2", "web.raw"]
    assert (tmp_path / "web.qcow2").read_bytes() == b"partial"  # what the fake qemu-img wrote: a new conversion


def test_a_live_copy_qemu_still_holds_is_refused(tmp_path, monkeypatch):
    src, dest = unfinished_live_copy(tmp_path)
    monkeypatch.setattr(image_convert, "held_by_qemu", lambda path: path == dest)
    with pytest.raises(KvmImagesError, match="destination of a live block copy, and QEMU holds it"):
        decide(request(src))


@pytest.mark.parametrize("status, refused", [("corrupt", True), ("incomplete", True), ("leaks", False),
                                             ("clean", False)])
def test_a_damaged_qcow2_source_is_refused_before_anything_is_written(tmp_path, status, refused):
    src = qcow2_image(tmp_path / "web.qcow2")
    req = request(src, src_format="qcow2", format="raw")
    qemu = FakeQemu(check_status=status)
    converter = Converter(FakeModule(), qemu)
    if refused:
        with pytest.raises(KvmImagesError, match=f"qemu-img check found {src} {status}"):
            converter.check_source(decide(req))
    else:
        converter.check_source(decide(req))
    assert qemu.checked == [src] and sorted(os.listdir(tmp_path)) == ["web.qcow2"]


def test_a_raw_source_has_no_metadata_to_check(tmp_path):
    qemu = FakeQemu(check_status="corrupt")
    Converter(FakeModule(), qemu).check_source(decide(request(raw_image(tmp_path / "web.raw"))))
    assert qemu.checked == []


class RacingQemu(FakeQemu):
    """While this conversion runs, another process puts its own image at the destination."""

    def __init__(self, dest):
        super().__init__()
        self.dest = dest

    def convert(self, src, src_format, dest, dest_format, **kwargs):
        with open(self.dest, "wb") as handle:
            handle.write(b"the other run's image")
        return super().convert(src, src_format, dest, dest_format, **kwargs)


def test_a_destination_written_meanwhile_is_never_replaced(tmp_path):
    src = raw_image(tmp_path / "web.raw")
    dest = str(tmp_path / "copy.raw")
    req = request(src, format="raw", dest=dest)
    with pytest.raises(KvmImagesError, match=r"copy\.raw changed while this run converted .*left as it is"):
        Converter(FakeModule(), RacingQemu(dest)).run(decide(req), req, None, None, None)
    assert sorted(os.listdir(tmp_path)) == ["copy.raw", "web.raw"]
    assert (tmp_path / "copy.raw").read_bytes() == b"the other run's image"
