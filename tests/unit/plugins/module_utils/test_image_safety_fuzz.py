# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzzing the header inspector: random and mutated headers never crash it, never hang it,
a forged header is never called safe under the format its guest was declared with, and a
backing file is called safe only where the kernel itself resolves its name inside."""

from __future__ import annotations

import os
import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvm.images.plugins.module_utils.image_safety import inspect_bytes, safety_problems, vet_image
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.test_image_safety import (
    HEADERS,
    dynamic_vhd,
    fixed_vhd,
    qcow2_header,
    vdi_image,
    vhdx_image,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = qcow2_header(backing="base.raw", backing_format="raw")
SAMPLES = {
    "vdi": vdi_image(),
    "vpc-dynamic": dynamic_vhd(),
    "vpc-fixed": fixed_vhd(),
    "vhdx": vhdx_image(),
}


class InspectorHang(AssertionError):
    pass


@contextmanager
def cpu_time_limit(seconds: float):
    """Interrupt a hang instead of waiting on it; counts this process's CPU time, so a
    busy machine (other test workers, booted guests) cannot make a fast parse look slow."""
    def expired(signum, frame):
        raise InspectorHang(f"still running after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def inspect_quickly(data: bytes, size: int, reader=None):
    with cpu_time_limit(2.0):
        return inspect_bytes(data, size, reader=reader or (lambda offset, length: b""))


def test_the_cpu_time_limit_interrupts_a_loop_that_never_ends():
    with pytest.raises(InspectorHang), cpu_time_limit(0.2):
        while True:
            pass


@FUZZ
@given(st.binary(max_size=8192), st.integers(min_value=0, max_value=1 << 62))
def test_random_bytes_never_crash(data, size):
    report = inspect_quickly(data, size)
    assert isinstance(report.problems, list)


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=4095), st.integers(min_value=0, max_value=255)),
                min_size=1, max_size=64))
def test_mutated_qcow2_headers_never_crash(mutations):
    data = bytearray(VALID[:4096])
    for offset, value in mutations:
        data[offset] = value
    inspect_quickly(bytes(data), 1 << 30)


@FEW
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_mutated_vdi_vhd_and_vhdx_headers_never_crash(name, data):
    """Mutations where each format keeps its fields: the VDI header, the VHD footers and
    dynamic header, the VHDX headers, region table and metadata."""
    image = bytearray(SAMPLES[name])
    regions = {"vdi": [(0, 512)], "vpc-dynamic": [(0, 1536), (len(image) - 512, len(image))],
               "vpc-fixed": [(len(image) - 512, len(image))],
               "vhdx": [(64 << 10, (64 << 10) + 128), (192 << 10, (192 << 10) + 128), (256 << 10, (256 << 10) + 256),
                        ((256 + 64) << 10, ((256 + 64) << 10) + 64)]}[name]
    for _change in range(data.draw(st.integers(min_value=1, max_value=16))):
        start, end = data.draw(st.sampled_from(regions))
        image[data.draw(st.integers(min_value=start, max_value=end - 1))] = data.draw(st.integers(0, 255))
    blob = bytes(image)

    def reader(offset, length):
        return blob[offset:offset + length] if 0 <= offset < len(blob) else b""

    report = inspect_quickly(blob[:4096], len(blob), reader)
    assert isinstance(report.problems, list)
    if report.virtual_size is not None:
        assert report.virtual_size % 512 == 0


@FUZZ
@given(st.sampled_from(sorted(HEADERS)), st.binary(min_size=0, max_size=4096))
def test_anything_with_a_known_magic_is_never_safe_as_raw(name, tail):
    """A raw disk's guest can write any bytes; a known format's magic declared raw is always flagged."""
    magic = HEADERS[name][:128]
    report = inspect_quickly(magic + tail, 1 << 30)
    assert safety_problems(report, "raw", path="/var/lib/libvirt/images/web.raw")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """images/ (allowed) with a base file, a sub directory and links in and out; outside/ beside it."""
    root = tmp_path_factory.mktemp("fuzz-tree")
    images, outside = root / "images", root / "outside"
    for directory in (images, images / "sub", outside, outside / "sub"):
        directory.mkdir()
    for directory in (images, images / "sub", outside, outside / "sub"):
        (directory / "base.raw").write_bytes(bytes(4096))
    (images / "in").symlink_to(images / "sub")
    (images / "out").symlink_to(outside)
    (images / "up").symlink_to("..")
    (images / "sub" / "out").symlink_to(outside / "sub")
    return images


COMPONENTS = ["..", ".", "", "in", "out", "up", "sub", "base.raw", "images", "outside", "x\0y", "nothing"]


def kernel_path(path: bytes) -> str | None:
    """Where the kernel lands opening ``path`` (None when nothing is there): an oracle
    independent of the inspector's path arithmetic."""
    try:
        fd = os.open(path, os.O_PATH)
    except (OSError, ValueError):
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@FUZZ
@given(st.one_of(
    st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=8).map(lambda parts: "/".join(parts).encode()),
    st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=8).map(lambda parts: ("/" + "/".join(parts)).encode()),
    st.binary(min_size=1, max_size=64),
), st.sampled_from(["raw", "qcow2", None]))
def test_a_backing_file_is_safe_only_where_the_kernel_finds_it_inside(tree, name, backing_format):
    images = str(tree)
    if name.startswith(b"/"):
        # Absolute names: rooted at the tree's parent, so that they can reach both directories.
        name = os.fsencode(os.path.dirname(images)) + name
    if len(name) > 1023:
        return
    image = tree / "overlay.qcow2"
    image.write_bytes(qcow2_header(backing=name, backing_format=backing_format) + bytes(65536))
    with cpu_time_limit(2.0):
        vetting = vet_image(str(image), "qcow2", [images])
    if vetting.safe:
        assert backing_format == "raw" and b"\0" not in name
        landed = kernel_path(name if name.startswith(b"/") else os.fsencode(images) + b"/" + name)
        assert landed is not None and landed.startswith(images + "/")
        assert vetting.chain == [(landed, "raw")]


def test_data_file_bit_is_never_safe_whatever_the_name():
    for name in ("", "x", "/dev/sda", "../../etc/shadow"):
        header = bytearray(qcow2_header(data_file=name))
        struct.pack_into(">Q", header, 72, struct.unpack_from(">Q", header, 72)[0] | 4)
        assert safety_problems(inspect_bytes(bytes(header), 1 << 30), "qcow2")
