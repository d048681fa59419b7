# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzzing the header inspector: random and mutated headers never crash it, never hang it,
and a forged header is never called safe under the format its guest was declared with."""

from __future__ import annotations

import os
import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kvm.images.plugins.module_utils.image_safety import inspect_bytes, safety_problems

from ansible_collections.kvm.images.tests.unit.plugins.module_utils.test_image_safety import qcow2_header

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = qcow2_header(backing="base.raw", backing_format="raw")


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


def inspect_quickly(data: bytes, size: int):
    with cpu_time_limit(1.0):
        return inspect_bytes(data, size, reader=lambda offset, length: b"")


def test_the_cpu_time_limit_interrupts_a_loop_that_never_ends():
    with pytest.raises(InspectorHang):
        with cpu_time_limit(0.2):
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


@FUZZ
@given(st.binary(min_size=0, max_size=4096).map(lambda tail: b"QFI\xfb" + tail))
def test_anything_with_the_qcow2_magic_is_never_safe_as_raw(data):
    """A raw disk's guest can write any bytes; a qcow2 magic declared raw is always flagged."""
    report = inspect_quickly(data, 1 << 30)
    assert safety_problems(report, "raw", path="/var/lib/libvirt/images/web.raw")


@FUZZ
@given(st.text(min_size=1, max_size=200).filter(lambda name: "\0" not in name),
       st.sampled_from(["raw", "qcow2", None]))
def test_a_backing_file_is_safe_only_inside_the_allowed_directory(name, backing_format):
    header = qcow2_header(backing=name, backing_format=backing_format)
    if len(name.encode()) > 1023:
        return
    report = inspect_quickly(header, 1 << 30)
    problems = safety_problems(report, "qcow2", allowed_backing_dirs=["/var/lib/libvirt/images"],
                               path="/var/lib/libvirt/images/overlay.qcow2")
    if not problems:
        assert backing_format is not None
        assert ":" not in name.split("/", 1)[0]
        resolved = name if name.startswith("/") else "/var/lib/libvirt/images/" + name
        assert os.path.normpath(resolved).startswith("/var/lib/libvirt/images/")


def test_data_file_bit_is_never_safe_whatever_the_name():
    for name in ("", "x", "/dev/sda", "../../etc/shadow"):
        header = bytearray(qcow2_header(data_file=name))
        struct.pack_into(">Q", header, 72, struct.unpack_from(">Q", header, 72)[0] | 4)
        assert safety_problems(inspect_bytes(bytes(header), 1 << 30), "qcow2")
