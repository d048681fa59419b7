# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The confinement holds where the inspector is wrong.

Each test plants an image that names a host file, makes the inspector trust it (as a gap in the
inspector would), and runs the whole module - real AnsibleModule, real launcher, real qemu-img, this
host's kernel. The module fails with a clear message; no byte of the host file reaches any output.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvm.images.plugins.module_utils import image_convert, image_facts, image_safety
from ansible_collections.kvm.images.plugins.module_utils.image_safety import Vetting, inspect_path, readable_backing
from ansible_collections.kvm.images.plugins.modules import qemu_image_convert, qemu_image_info

SECRET = b"kvm-images-host-secret-0123456789\n"


def run_module(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def planted(tmp_path):
    """A qcow2 in an allowed directory whose backing file is a host file outside it."""
    images = tmp_path / "images"
    images.mkdir(mode=0o755)
    secret = tmp_path / "host-secret"
    secret.write_bytes(SECRET * 4096)
    image = images / "guest.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(image), "1M"],
                   check=True)
    return images, secret, image


def trust(monkeypatch, chain):
    """The inspector calls every image safe, and predicts ``chain`` (what ``chain(path)`` gives) as its backing."""
    def vetted(path, declared_format, allowed_backing_dirs=None):
        return Vetting(problems=[], report=inspect_path(path), chain=chain(path))
    for module in (image_convert, image_facts):
        monkeypatch.setattr(module, "vet_image", vetted)


@pytest.fixture
def trusting_inspector(monkeypatch):
    """The inspector calls every image safe and predicts the backing file the header names, wherever it is."""
    def header_chain(path):
        report = image_safety.inspect_path(path)
        return [(report.backing_file, report.backing_format)] if report.backing_file else []
    trust(monkeypatch, header_chain)


@pytest.fixture
def misreading_inspector(monkeypatch, planted):
    """The inspector calls the image safe and reads its backing name as a file inside the allowed directory
    (as a NUL in the name once made it do): the confinement then allows that file, and only that one."""
    images, _secret, _image = planted
    decoy = images / "base.raw"
    decoy.write_bytes(b"\0" * (1 << 20))
    trust(monkeypatch, lambda path: [(str(decoy), "raw")])
    return decoy


def assert_nothing_leaked(directory, secret):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and path != str(secret):
            with open(path, "rb") as written:
                assert SECRET.strip() not in written.read(), f"{path} holds the host file's bytes"


@pytest.mark.parametrize("inspector", ["trusting_inspector", "misreading_inspector"])
def test_convert_fails_instead_of_copying_the_host_file(request, planted, capsys, inspector):
    request.getfixturevalue(inspector)
    images, secret, image = planted
    dest = images / "guest.raw"
    result = run_module(qemu_image_convert, {"src": str(image), "src_format": "qcow2", "dest": str(dest),
                                             "format": "raw", "allowed_backing_dirs": [str(images)]}, capsys)
    assert result["failed"] is True
    assert f"Could not open '{secret}'" in result["msg"]
    assert "Permission denied" in result["msg"]
    assert not dest.exists()
    assert sorted(os.listdir(images)) == sorted(["guest.qcow2"] + (["base.raw"] if inspector.startswith("mis") else []))
    assert_nothing_leaked(images, secret)


def test_info_fails_instead_of_reading_the_host_file(trusting_inspector, planted, capsys):
    images, secret, image = planted
    result = run_module(qemu_image_info, {"path": str(image), "backing_chain": True, "check": True,
                                          "measure_format": "raw", "allowed_backing_dirs": [str(images)]}, capsys)
    assert result["failed"] is True
    # Plain info opens no backing file; following the chain, qemu-img is refused the host file.
    assert result["msg"].startswith(f"qemu-img info of {image} failed: qemu-img: Could not open '{secret}'")
    assert result["msg"].endswith("Permission denied")
    assert "--backing-chain" in result["cmd"]
    assert SECRET.strip().decode() not in json.dumps(result)


def test_the_same_image_with_its_backing_file_allowed_converts(planted, capsys, tmp_path):
    """The control: the failures above come from the confinement, not from the image."""
    _images, _secret, image = planted
    dest = tmp_path / "images" / "guest.raw"
    result = run_module(qemu_image_convert, {"src": str(image), "src_format": "qcow2", "dest": str(dest),
                                             "format": "raw", "allowed_backing_dirs": [str(tmp_path)]}, capsys)
    assert result.get("failed") is not True, result
    assert SECRET.strip() in dest.read_bytes()


def test_disabled_confinement_relies_on_the_inspector_alone(trusting_inspector, planted, capsys):
    """What the opt-out gives up: with the inspector wrong, the host file is copied."""
    images, _secret, image = planted
    dest = images / "guest.raw"
    result = run_module(qemu_image_convert, {"src": str(image), "src_format": "qcow2", "dest": str(dest),
                                             "format": "raw", "confinement": "disabled",
                                             "allowed_backing_dirs": [str(images)]}, capsys)
    assert result.get("failed") is not True, result
    assert SECRET.strip() in dest.read_bytes()


def test_readable_backing_never_reaches_outside_the_allowed_directories(tmp_path):
    inside, outside = tmp_path / "images", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (outside / "disk.raw").touch()
    (inside / "link.raw").symlink_to(outside / "disk.raw")
    (inside / "base.raw").touch()
    image = str(inside / "guest.qcow2")

    def backing(name, allowed):
        real = os.path.realpath(os.path.join(os.path.dirname(image), name))
        return readable_backing(Vetting(problems=[], report=inspect_path(image) if os.path.exists(image) else None,
                                        chain=[(real, "raw")]), image, allowed)

    assert backing("base.raw", None) == (str(inside / "base.raw"),)
    assert backing(str(outside / "disk.raw"), [str(inside)]) == ()
    assert backing("link.raw", [str(inside)]) == ()
    assert backing("../elsewhere/disk.raw", None) == ()
    assert backing("link.raw", [str(tmp_path)]) == (str(outside / "disk.raw"),)
