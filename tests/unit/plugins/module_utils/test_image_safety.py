# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The header inspector on headers crafted byte by byte."""

from __future__ import annotations

import os
import struct

import pytest

from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    inspect_bytes,
    inspect_path,
    path_problems,
    safety_problems,
)

GIB = 1 << 30


def qcow2_header(version=3, size=GIB, cluster_bits=16, backing=None, backing_format=None, data_file=None,
                 incompatible=0, compatible=0, crypt=0, snapshots=0, extensions=(), header_length=None):
    """A qcow2 image's first cluster, as qemu-img would write it (and as a guest could forge it)."""
    header_length = header_length or (112 if version == 3 else 72)
    body = bytearray(65536)
    struct.pack_into(">4sIQIIQIIQQIIQ", body, 0, b"QFI\xfb", version, 0, 0, cluster_bits, size, crypt,
                     0, 0x30000, 0x10000, 1, snapshots, 0)
    if version == 3:
        if data_file is not None:
            incompatible |= 1 << 2
        struct.pack_into(">QQQII", body, 72, incompatible, compatible, 0, 4, header_length)
    offset = header_length
    if offset + 8 > len(body):
        return bytes(body)
    exts = list(extensions)
    if backing_format:
        exts.append((0xE2792ACA, backing_format.encode()))
    if data_file is not None:
        exts.append((0x44415441, data_file.encode()))
    for ext_type, data in exts:
        struct.pack_into(">II", body, offset, ext_type, len(data))
        body[offset + 8:offset + 8 + len(data)] = data
        offset += 8 + ((len(data) + 7) & ~7)
    struct.pack_into(">II", body, offset, 0, 0)
    offset += 8
    if backing:
        name = backing.encode()
        struct.pack_into(">QI", body, 8, offset, len(name))
        body[offset:offset + len(name)] = name
    return bytes(body)


def test_plain_qcow2_v3():
    report = inspect_bytes(qcow2_header(compatible=1), 1 << 20)
    assert report.detected_format == "qcow2"
    assert (report.qcow2_version, report.compat, report.virtual_size) == (3, "1.1", GIB)
    assert report.cluster_size == 65536
    assert report.lazy_refcounts is True
    assert report.problems == []
    assert safety_problems(report, "qcow2") == []


def test_qcow2_v2_is_compat_010():
    report = inspect_bytes(qcow2_header(version=2), 1 << 20)
    assert report.compat == "0.10"
    assert report.problems == []


def test_raw_disk_carrying_a_forged_qcow2_header_pointing_at_shadow():
    forged = qcow2_header(backing="/etc/shadow", backing_format="raw")
    report = inspect_bytes(forged, 10 * GIB)
    assert report.detected_format == "qcow2"
    assert report.backing_file == "/etc/shadow"
    problems = safety_problems(report, "raw", path="/var/lib/libvirt/images/web.raw")
    assert problems == ["declared raw, but the image starts with a qcow2 header (a guest can write one into its raw disk)"]


def test_declared_qcow2_with_a_raw_header():
    report = inspect_bytes(b"\0" * 4096, 4096)
    assert safety_problems(report, "qcow2") == ["declared qcow2, but the header says raw"]


@pytest.mark.parametrize("backing, backing_format, dirs, expected", [
    ("base.raw", "raw", None, []),
    ("/var/lib/libvirt/images/base.raw", "raw", ["/var/lib/libvirt/images"], []),
    ("/etc/hostname", "raw", ["/var/lib/libvirt/images"],
     ["backing file /etc/hostname is outside the allowed directories (/var/lib/libvirt/images)"]),
    ("../../../../etc/shadow", "raw", None,
     ["backing file /etc/shadow is outside the allowed directories (/var/lib/libvirt/images)"]),
    ("base.raw", None, None, ["backing file base.raw has no declared format"]),
    ('json:{"file.filename":"/etc/shadow"}', "raw", None,
     ['backing file json:{"file.filename":"/etc/shadow"} is a protocol, not a file']),
    ("/var/lib/libvirt/images2/base.raw", "raw", ["/var/lib/libvirt/images"],
     ["backing file /var/lib/libvirt/images2/base.raw is outside the allowed directories (/var/lib/libvirt/images)"]),
], ids=["relative-same-dir", "allowed-dir", "outside", "dot-dot", "no-format", "json-protocol", "prefix-not-dir"])
def test_backing_file_policy(backing, backing_format, dirs, expected):
    report = inspect_bytes(qcow2_header(backing=backing, backing_format=backing_format), 1 << 20)
    assert report.backing_file == backing
    assert safety_problems(report, "qcow2", allowed_backing_dirs=dirs,
                           path="/var/lib/libvirt/images/overlay.qcow2") == expected


def test_external_data_file_is_refused():
    report = inspect_bytes(qcow2_header(data_file="/dev/sda"), 1 << 20)
    assert report.data_file == "/dev/sda"
    assert "qcow2 with an external data file (/dev/sda)" in safety_problems(report, "qcow2")


def test_data_file_bit_without_a_name_is_still_refused():
    report = inspect_bytes(qcow2_header(incompatible=1 << 2), 1 << 20)
    assert report.data_file == ""
    assert "qcow2 with an external data file (unnamed)" in safety_problems(report, "qcow2")


@pytest.mark.parametrize("header, problem", [
    (qcow2_header(incompatible=1 << 40), "unknown qcow2 incompatible feature bits 0x10000000000"),
    (qcow2_header(incompatible=1 << 1), "qcow2 corrupt bit is set"),
    (qcow2_header(version=4), "unknown qcow2 version 4"),
    (qcow2_header(cluster_bits=40), "invalid qcow2 cluster size (2^40 bytes)"),
    (qcow2_header(size=1 << 62), "absurd qcow2 virtual size (4611686018427387904 bytes)"),
    (qcow2_header(header_length=1 << 20), "invalid qcow2 header length 1048576"),
    (qcow2_header()[:40], "truncated qcow2 header (40 bytes)"),
    (qcow2_header(version=1), "qcow version 1 image (obsolete format)"),
    (qcow2_header(), "truncated qcow2 image: its tables end at byte 196608, the file at 150000"),
], ids=["unknown-bit", "corrupt", "version", "cluster-bits", "huge", "header-length", "truncated", "qcow1",
        "tables-past-end"])
def test_header_problems(header, problem):
    report = inspect_bytes(header, 150000 if "tables" in problem else 1 << 20)
    assert problem in report.problems
    assert problem in safety_problems(report, report.detected_format)


def test_backing_name_beyond_the_file_is_a_problem_not_a_read_elsewhere():
    header = bytearray(qcow2_header())
    struct.pack_into(">QI", header, 8, 1 << 40, 10)
    calls = []

    def reader(offset, length):
        calls.append((offset, length))
        return b""

    report = inspect_bytes(bytes(header), 1 << 20, reader)
    assert "qcow2 backing file name lies beyond the end of the image" in report.problems
    assert calls == [(1 << 40, 10)]


def test_extension_loop_is_bounded():
    header = bytearray(qcow2_header())
    for offset in range(112, 65536 - 8, 8):
        struct.pack_into(">II", header, offset, 0x12345678, 0)
    report = inspect_bytes(bytes(header), 1 << 20)
    assert "too many qcow2 header extensions" in report.problems


def iso_bytes(prefix=b""):
    data = bytearray(0x9800)
    data[:len(prefix)] = prefix
    data[0x8001:0x8006] = b"CD001"
    return bytes(data)


def test_iso_is_raw_and_safe_as_raw():
    report = inspect_bytes(iso_bytes(), 0x9800)
    assert report.is_iso
    assert report.detected_format == "raw"
    assert safety_problems(report, "raw") == []


def test_iso_with_a_qcow2_header_in_its_system_area():
    report = inspect_bytes(iso_bytes(qcow2_header()[:4096]), 0x9800)
    assert report.is_iso
    assert "the image is both an ISO and qcow2" in report.problems


@pytest.mark.parametrize("data, fmt", [
    (b"vhdxfile" + b"\0" * 100, "vhdx"),
    (b"conectix" + b"\0" * 100, "vhd"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0") + struct.pack("<I", 0xBEDA107F), "vdi"),
    (b"LUKS\xba\xbe\0\x02" + b"\0" * 100, "luks"),
    (b"QED\0" + b"\0" * 100, "qed"),
    (b"\0" * 512, "raw"),
], ids=["vhdx", "vhd", "vdi", "luks", "qed", "raw"])
def test_detects_formats(data, fmt):
    assert inspect_bytes(data, len(data)).detected_format == fmt


def test_fixed_vhd_is_found_by_its_footer():
    assert inspect_bytes(b"\0" * 4096, 4608, footer=b"conectix" + b"\0" * 504).detected_format == "vhd"


def test_luks_is_encrypted_and_refused():
    report = inspect_bytes(b"LUKS\xba\xbe\0\x02" + b"\0" * 100, 1 << 20)
    assert report.encrypted
    assert "the image is encrypted; converting it needs its secret, which is not supported" in \
        safety_problems(report, "luks")


@pytest.mark.parametrize("descriptor, problem", [
    ('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 2048 FLAT "disk-flat.vmdk" 0\n',
     "VMDK of type monolithicFlat (only monolithicSparse, streamOptimized are accepted)"),
    ('# Disk DescriptorFile\ncreateType="monolithicSparse"\nRW 2048 SPARSE "/etc/shadow"\n',
     "VMDK extent names a path: /etc/shadow"),
], ids=["flat", "extent-path"])
def test_vmdk_descriptors(descriptor, problem):
    report = inspect_bytes(descriptor.encode(), 4096)
    assert report.detected_format == "vmdk"
    assert problem in report.problems


def test_path_problems(tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 1024)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert path_problems(str(image)) == []
    assert path_problems(str(tmp_path)) == [f"{tmp_path} is a directory"]
    assert path_problems(str(fifo)) == [f"{fifo} is not a regular file or block device"]
    assert path_problems(str(tmp_path / "missing")) == [f"{tmp_path / 'missing'} does not exist"]


def test_inspect_path_reads_a_real_file(tmp_path):
    image = tmp_path / "forged.raw"
    image.write_bytes(qcow2_header(backing="/etc/shadow", backing_format="raw") + b"\0" * 65536)
    report = inspect_path(str(image))
    assert report.detected_format == "qcow2"
    assert report.backing_file == "/etc/shadow"


def test_empty_file_is_raw_of_size_zero(tmp_path):
    image = tmp_path / "empty.raw"
    image.write_bytes(b"")
    report = inspect_path(str(image))
    assert (report.detected_format, report.virtual_size, report.problems) == ("raw", 0, [])
