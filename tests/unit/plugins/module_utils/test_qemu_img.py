# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

from ansible_collections.kvm.images.plugins.module_utils import confined_exec, confinement
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import (
    ImageInUseError,
    QemuImg,
    QemuImgError,
    compare_argv,
    convert_argv,
    create_argv,
    format_options,
    info_argv,
    measure_argv,
)
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeModule

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "qemu_img"


@pytest.mark.parametrize("options, expected", [
    (None, ""),
    ({"compat": "1.1", "lazy_refcounts": True, "cluster_size": 65536},
     "cluster_size=65536,compat=1.1,lazy_refcounts=on"),
    ({"preallocation": None, "lazy_refcounts": False}, "lazy_refcounts=off"),
    ({"data_file": "/a,b"}, "data_file=/a,,b"),
], ids=["none", "sorted", "bool-none", "comma"])
def test_format_options(options, expected):
    assert format_options(options) == expected


def test_every_builder_names_the_format():
    assert info_argv("/i/a.raw", "raw") == ["info", "--output=json", "-f", "raw", "/i/a.raw"]
    assert info_argv("/i/a.qcow2", "qcow2", backing_chain=True, force_share=True) == \
        ["info", "--output=json", "-f", "qcow2", "--backing-chain", "-U", "/i/a.qcow2"]
    assert measure_argv("/i/a.raw", "raw", "qcow2", options={"compat": "1.1"}) == \
        ["measure", "--output=json", "-O", "qcow2", "-o", "compat=1.1", "-f", "raw", "/i/a.raw"]
    assert create_argv("/i/b.qcow2", "qcow2", 1 << 30) == ["create", "-q", "-f", "qcow2", "/i/b.qcow2", "1073741824"]
    assert compare_argv("/i/a.raw", "raw", "/i/b.qcow2", "qcow2", force_share=True) == \
        ["compare", "-f", "raw", "-F", "qcow2", "-U", "/i/a.raw", "/i/b.qcow2"]


def test_measure_of_an_image_in_use_keeps_the_format_explicit():
    argv = measure_argv("/i/a,b.qcow2", "qcow2", "raw", force_share=True)
    assert argv[-2:] == ["--image-opts", "driver=qcow2,file.driver=file,file.filename=/i/a,,b.qcow2,file.locking=off"]
    assert "-f" not in argv


def test_convert_argv_with_tuning():
    argv = convert_argv("/i/a b.raw", "raw", "/i/.a b.qcow2.tmp", "qcow2", options={"compat": "1.1"},
                        sparse_size="4k", parallel=16, out_of_order=True, src_cache="none", dest_cache="writeback")
    assert argv == ["convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", "-S", "4k", "-m", "16", "-W",
                    "-T", "none", "-t", "writeback", "/i/a b.raw", "/i/.a b.qcow2.tmp"]


def test_keeping_a_backing_chain_needs_its_format():
    with pytest.raises(KvmImagesError):
        convert_argv("/i/a.qcow2", "qcow2", "/i/b.qcow2", "qcow2", flatten=False, backing_file="/i/base.raw")


@pytest.mark.parametrize("path", ["disk.raw", "json:{}", "nbd://host/x", "-f", ""], ids=str)
def test_relative_and_protocol_paths_are_refused(path):
    with pytest.raises(KvmImagesError, match="must be absolute"):
        info_argv(path, "raw")


def test_unknown_format_is_refused():
    with pytest.raises(KvmImagesError, match="unknown image format"):
        info_argv("/i/a", "host_device")


def fixture(name):
    return (FIXTURES / name).read_text()


@pytest.fixture(autouse=True)
def confinable(monkeypatch):
    """These tests fake the command seam; whether this kernel has Landlock is test_confinement's business."""
    monkeypatch.setattr(confinement, "unavailable_reason", lambda: None)


def launcher(*options):
    return [sys.executable, "-s", "-S", "-m", confinement.LAUNCHER_MODULE, *options, "--"]


def test_info_runs_confined_to_the_image_and_its_backing_files_under_limits_in_the_c_locale():
    module = FakeModule([(0, fixture("info_qcow2.json"), "")])
    info = QemuImg(module).info("/i/a.qcow2", "qcow2", backing=("/i/base.raw",))
    argv, env = module.calls[0]
    assert argv == launcher("--read", "/i/a.qcow2", "--read", "/i/base.raw", "--address-space", "1073741824",
                            "--cpu-seconds", "30") + ["/usr/bin/qemu-img", "info", "--output=json", "-f", "qcow2",
                                                      "/i/a.qcow2"]
    assert env == {"LC_ALL": "C", "LANG": "C", "PYTHONPATH": confinement.payload_root()}
    assert info["format"] == "qcow2"


def test_convert_is_not_limited_and_writes_only_its_destination():
    module = FakeModule([(0, "", "")])
    argv = QemuImg(module).convert("/i/a.raw", "raw", "/i/b.qcow2", "qcow2")
    assert module.calls[0][0] == launcher("--read", "/i/a.raw", "--write", "/i/b.qcow2") + argv
    assert argv == ["/usr/bin/qemu-img", "convert", "-f", "raw", "-O", "qcow2", "/i/a.raw", "/i/b.qcow2"]


def test_create_makes_the_file_first_so_that_qemu_img_writes_only_it(tmp_path):
    module = FakeModule([(0, "", "")])
    dest = str(tmp_path / "new.qcow2")
    QemuImg(module).create(dest, "qcow2", 1 << 20)
    assert module.calls[0][0] == launcher("--write", dest) + ["/usr/bin/qemu-img", "create", "-q", "-f", "qcow2",
                                                              dest, "1048576"]
    assert os.path.isfile(dest)
    with pytest.raises(FileExistsError):
        QemuImg(FakeModule([])).create(dest, "qcow2", 1 << 20)


def test_disabled_confinement_keeps_the_limits_only():
    module = FakeModule([(0, "{}", "")])
    QemuImg(module, confinement_mode=confinement.DISABLED).info("/i/a.raw", "raw")
    assert module.calls[0][0][:11] == launcher("--unconfined", "--address-space", "1073741824",
                                               "--cpu-seconds", "30")


def test_a_kernel_without_landlock_runs_nothing(monkeypatch):
    monkeypatch.setattr(confinement, "unavailable_reason", lambda: "the kernel offers no Landlock")
    module = FakeModule([])
    with pytest.raises(KvmImagesError) as caught:
        QemuImg(module).info("/i/a.raw", "raw")
    assert caught.value.msg.startswith("qemu-img cannot be confined on this host: the kernel offers no Landlock."
                                       " Nothing was run; set confinement to disabled")
    assert module.calls == []
    assert QemuImg(FakeModule([(0, "{}", "")]), confinement_mode=confinement.DISABLED).info("/i/a.raw", "raw") == {}


def test_a_launcher_that_cannot_confine_is_a_clear_failure():
    err = "kvm.images confinement: /i/gone.raw does not exist; qemu-img was not run\n"
    with pytest.raises(QemuImgError) as caught:
        QemuImg(FakeModule([(confined_exec.CONFINEMENT_FAILED, "", err)])).info("/i/gone.raw", "raw")
    assert caught.value.msg == ("qemu-img info of /i/gone.raw failed: qemu-img could not be confined"
                                " (/i/gone.raw does not exist; qemu-img was not run)")


def test_lock_error_becomes_image_in_use():
    err = ("qemu-img: Could not open '/i/a.qcow2': Failed to get shared \"write\" lock\n"
           "Is another process using the image [/i/a.qcow2]?\n")
    with pytest.raises(ImageInUseError) as caught:
        QemuImg(FakeModule([(1, "", err)])).info("/i/a.qcow2", "qcow2")
    assert "in use by another process" in caught.value.msg
    assert caught.value.details["rc"] == 1


def test_garbage_output_fails_closed():
    with pytest.raises(QemuImgError, match="no valid JSON"):
        QemuImg(FakeModule([(0, "Segmentation fault\n", "")])).info("/i/a.raw", "raw")


def test_other_errors_carry_the_last_stderr_line():
    with pytest.raises(QemuImgError) as caught:
        QemuImg(FakeModule([(1, "", "qemu-img: Could not open '/i/x': No such file or directory\n")])).info(
            "/i/x", "raw")
    assert caught.value.msg == ("qemu-img info of /i/x failed:"
                                " qemu-img: Could not open '/i/x': No such file or directory")
    assert caught.value.details["cmd"] == ["info", "--output=json", "-f", "raw", "/i/x"]


@pytest.mark.parametrize("rc, out, status", [
    (0, "check_clean.json", "clean"),
    (2, "check_corrupt.json", "corrupt"),
    (3, "check_leaks.json", "leaks"),
    (63, None, "unsupported"),
], ids=["clean", "corrupt", "leaks", "unsupported"])
def test_check_exit_codes_are_results(rc, out, status):
    result = QemuImg(FakeModule([(rc, fixture(out) if out else "", "")])).check("/i/a.qcow2", "qcow2")
    assert result["status"] == status
    if status == "corrupt":
        assert result["corruptions"] == 7
    if status == "leaks":
        assert result["leaks"] == 3


def test_check_that_could_not_complete_is_an_error():
    with pytest.raises(QemuImgError, match="could not be completed"):
        QemuImg(FakeModule([(1, "", "qemu-img: Check failed: Input/output error\n")])).check("/i/a.qcow2", "qcow2")


def test_measure_parses_sizes():
    out = json.dumps({"required": 2147549184, "fully-allocated": 10739318784})
    result = QemuImg(FakeModule([(0, out, "")])).measure("/i/a.raw", "raw", "qcow2")
    assert result == {"required": 2147549184, "fully_allocated": 10739318784}


@pytest.mark.parametrize("rc, identical", [(0, True), (1, False)], ids=["same", "differ"])
def test_compare(rc, identical):
    assert QemuImg(FakeModule([(rc, "", "")])).compare("/i/a.raw", "raw", "/i/b.qcow2", "qcow2") is identical


def test_compare_error_is_raised():
    with pytest.raises(QemuImgError):
        QemuImg(FakeModule([(2, "", "qemu-img: Could not open '/i/b.qcow2'\n")])).compare(
            "/i/a.raw", "raw", "/i/b.qcow2", "qcow2")
