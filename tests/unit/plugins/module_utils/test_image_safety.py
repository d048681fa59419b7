# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The header inspector on headers crafted byte by byte, and the policy on real files.

How qemu itself reads these headers is held by tests/differential; here each rule of
the inspector is pinned on a header made for it.
"""

from __future__ import annotations

import os
import struct

import pytest

from ansible_collections.kvm.images.plugins.module_utils import qemu_img
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    ACCEPTED_FORMATS,
    KNOWN_FORMATS,
    MAX_CHAIN_DEPTH,
    REFUSED_FORMATS,
    crc32c,
    inspect_bytes,
    inspect_path,
    path_problems,
    safety_problems,
    vet_image,
)
from ansible_collections.kvm.images.tests.differential.corpus import (
    VHDX_ITEMS,
    VHDX_METADATA_REGION,
    VHDX_PARENT_LOCATOR,
    ms_guid,
)
from ansible_collections.kvm.images.tests.differential.corpus import crc32c as bitwise_crc32c

GIB = 1 << 30
MIB = 1 << 20


def qcow2_header(version=3, size=GIB, cluster_bits=16, backing=None, backing_format=None, data_file=None,
                 incompatible=0, compatible=0, crypt=0, snapshots=0, extensions=(), header_length=None,
                 after_name=()):
    """A qcow2 image's first cluster, as qemu-img would write it (and as a guest could forge it).

    ``backing`` may be str or bytes (bytes keep NULs and undecodable bytes); ``after_name``
    are extensions written after the backing name, where qemu no longer looks.
    """
    header_length = header_length or (112 if version == 3 else 72)
    body = bytearray(65536)
    struct.pack_into(">4sIQIIQIIQQIIQ", body, 0, b"QFI\xfb", version, 0, 0, cluster_bits, size, crypt,
                     0, 0x30000, 0x10000, 1, snapshots, 0)
    if version == 3:
        if data_file is not None:
            incompatible |= 1 << 2
        struct.pack_into(">QQQII", body, 72, incompatible, compatible, 0, 4, header_length)
    offset = header_length
    if offset + 8 > len(body) or (version == 3 and header_length < 104):
        return bytes(body)
    exts = list(extensions)
    if backing_format is not None:
        exts.append((0xE2792ACA, backing_format.encode() if isinstance(backing_format, str) else backing_format))
    if data_file is not None:
        exts.append((0x44415441, data_file.encode() if isinstance(data_file, str) else data_file))
    offset = write_extensions(body, offset, exts)
    if backing is not None:
        name = backing.encode() if isinstance(backing, str) else backing
        struct.pack_into(">QI", body, 8, offset, len(name))
        body[offset:offset + len(name)] = name
        write_extensions(body, offset + ((len(name) + 7) & ~7), after_name)
    return bytes(body)


def write_extensions(body, offset, extensions):
    for ext_type, data in extensions:
        struct.pack_into(">II", body, offset, ext_type, len(data))
        body[offset + 8:offset + 8 + len(data)] = data
        offset += 8 + ((len(data) + 7) & ~7)
    struct.pack_into(">II", body, offset, 0, 0)
    return offset + 8


def vdi_image(disk_size=64 * MIB, blocks=None, block_size=MIB, version=0x00010001, parent=False, link=False):
    """A dynamic VDI: header, block map (nothing allocated)."""
    blocks = -(-disk_size // block_size) if blocks is None else blocks
    header = bytearray(512)
    header[:40] = b"<<< QEMU VM Virtual Disk Image >>>\n".ljust(40, b"\0")
    struct.pack_into("<IIIII", header, 64, 0xBEDA107F, version, 400, 1, 0)
    data_offset = -(-(512 + 4 * blocks) // 512) * 512
    struct.pack_into("<IIIIIII", header, 340, 512, data_offset, 0, 0, 0, 512, 0)
    struct.pack_into("<QIIII", header, 368, disk_size, block_size, 0, blocks, 0)
    if link:
        header[424:440] = os.urandom(16)
    if parent:
        header[440:456] = os.urandom(16)
    return bytes(header) + b"\xff" * (4 * blocks)


def vpc_footer(current_size, cylinders, heads, sectors, creator=b"qemu", disk_type=3, data_offset=512):
    footer = bytearray(512)
    struct.pack_into(">8sIIQI4sHH4sQQHBBI", footer, 0, b"conectix", 2, 0x10000, data_offset, 0, creator, 5, 3,
                     b"Wi2k", current_size, current_size, cylinders, heads, sectors, disk_type)
    struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
    return bytes(footer)


def dynamic_vhd(current_size=64 * MIB, geometry=(520, 16, 63), creator=b"qemu", disk_type=3, entries=None):
    """A dynamic VHD: footer copy, dynamic header, block table, footer."""
    block = 2 * MIB
    largest = max(current_size, geometry[0] * geometry[1] * geometry[2] * 512)
    entries = -(-largest // block) if entries is None else entries
    footer = vpc_footer(current_size, *geometry, creator=creator, disk_type=disk_type)
    dynamic = bytearray(1024)
    struct.pack_into(">8sQQIII", dynamic, 0, b"cxsparse", 2**64 - 1, 1536, 0x10000, entries, block)
    table = b"\xff" * (4 * entries)
    return footer + bytes(dynamic) + table + bytes(-len(table) % 512) + footer


def fixed_vhd(current_size=4 * MIB, geometry=(130, 16, 63), creator=b"qemu"):
    data = bytes(current_size)
    return data + vpc_footer(current_size, *geometry, creator=creator, disk_type=2, data_offset=2**64 - 1)


# Two more VHDX GUIDs as the spec prints them. The others and the bit-by-bit CRC-32C come from the corpus of
# tests/differential: all made apart from the inspector's own.
VHDX_BAT = ms_guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
VHDX_PAGE83 = ms_guid("BECA12AB-B2E6-4523-93EF-C309E000C746")


def vhdx_header(sequence, log_guid=bytes(16), version=1):
    block = bytearray(4096)
    struct.pack_into("<4sIQ16s16s16sHHIQ", block, 0, b"head", 0, sequence, os.urandom(16), os.urandom(16), log_guid,
                     0, version, MIB, MIB)
    struct.pack_into("<I", block, 4, bitwise_crc32c(bytes(block)))
    return bytes(block)


def vhdx_image(virtual_size=GIB, logical=512, block_size=32 * MIB, bits=0, parent_locator=False,
               headers=((1, bytes(16)), (2, bytes(16))), region_crc_ok=True):
    """A VHDX: two headers, a region table (BAT at 512 KiB, metadata at 256 KiB) and the metadata."""
    image = bytearray(576 << 10)
    image[:8] = b"vhdxfile"
    for offset, (sequence, log_guid) in zip((64 << 10, 128 << 10), headers):
        image[offset:offset + 4096] = vhdx_header(sequence, log_guid)
    table = bytearray(64 << 10)
    struct.pack_into("<4sIII", table, 0, b"regi", 0, 2, 0)
    struct.pack_into("<16sQII", table, 16, VHDX_BAT, 512 << 10, 64 << 10, 1)
    struct.pack_into("<16sQII", table, 48, VHDX_METADATA_REGION, 256 << 10, 128 << 10, 1)
    struct.pack_into("<I", table, 4, bitwise_crc32c(bytes(table)) ^ (0 if region_crc_ok else 1))
    image[192 << 10:256 << 10] = table
    items = [(VHDX_ITEMS["file_parameters"], struct.pack("<II", block_size, bits)),
             (VHDX_ITEMS["virtual_size"], struct.pack("<Q", virtual_size)),
             (VHDX_ITEMS["logical_sector"], struct.pack("<I", logical)),
             (VHDX_ITEMS["physical_sector"], struct.pack("<I", 4096)), (VHDX_PAGE83, os.urandom(16))]
    if parent_locator:
        items.append((VHDX_PARENT_LOCATOR, bytes(20)))
    metadata = 256 << 10
    struct.pack_into("<8sHH", image, metadata, b"metadata", 0, len(items))
    position = 64 << 10
    for index, (guid, value) in enumerate(items):
        struct.pack_into("<16sIIII", image, metadata + 32 + 32 * index, guid, position, len(value), 4, 0)
        image[metadata + position:metadata + position + len(value)] = value
        position += 32
    return bytes(image)


def write(path, data):
    path.write_bytes(data)
    return str(path)


# ---- formats and their names ----

def test_format_names_are_qemus():
    assert set(KNOWN_FORMATS) <= set(qemu_img.FORMATS)
    assert set(ACCEPTED_FORMATS) == {"raw", "qcow2", "vdi", "vpc", "vhdx"}
    assert set(REFUSED_FORMATS) == {"qcow", "qed", "vmdk", "luks", "parallels", "bochs", "cloop", "dmg"}
    assert "vhd" not in KNOWN_FORMATS


CLOOP = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
HEADERS = {
    "qcow2": qcow2_header()[:4096],
    "qcow": b"QFI\xfb\0\0\0\1" + bytes(100),
    "qed": b"QED\0" + bytes(100),
    "vmdk-binary": b"KDMV" + bytes(100),
    "vmdk-cowd": b"COWD" + bytes(100),
    "vmdk-descriptor": b"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n",
    "vmdk-after-comments": b"# written by hand\n   \nversion=1\nRW 2048 FLAT \"/etc/shadow\" 0\n",
    "vhdx": b"vhdxfile" + bytes(100),
    "vpc": vpc_footer(MIB, 32, 4, 17) + bytes(1024),
    "vdi": vdi_image()[:512],
    "luks": b"LUKS\xba\xbe\0\x02" + bytes(100),
    "parallels": b"WithoutFreeSpace" + struct.pack("<I", 2) + bytes(100),
    "parallels-ext": b"WithouFreSpacExt" + struct.pack("<I", 2) + bytes(100),
    "bochs": b"Bochs Virtual HD Image".ljust(32, b"\0") + b"Redolog".ljust(16, b"\0") + bytes(100),
    "cloop": CLOOP + bytes(100),
}


@pytest.mark.parametrize("name, data", HEADERS.items(), ids=HEADERS.keys())
def test_every_format_qemu_detects_is_detected(name, data):
    data = data.ljust(4096, b"\0")
    assert inspect_bytes(data, len(data)).detected_format == name.split("-")[0]


@pytest.mark.parametrize("name, data", HEADERS.items(), ids=HEADERS.keys())
def test_declared_raw_with_any_known_header_is_a_mismatch(name, data):
    data = data.ljust(4096, b"\0")
    problems = safety_problems(inspect_bytes(data, len(data)), "raw")
    assert problems == [f"declared raw, but the image starts with a {name.split('-')[0]} header"
                        " (a guest can write one into its raw disk)"]


def test_a_file_shorter_than_the_cloop_magic_that_begins_it_is_cloop_as_qemu_probes_it():
    assert inspect_bytes(CLOOP[:20], 20).detected_format == "cloop"
    assert inspect_bytes(CLOOP[:20] + b"x", 21).detected_format == "raw"


def test_fixed_vhd_is_found_by_its_footer_and_named_vpc():
    report = inspect_bytes(fixed_vhd(), 4 * MIB + 512)
    assert (report.detected_format, report.magic_at_end) == ("vpc", True)
    assert safety_problems(report, "vpc") == []
    assert safety_problems(report, "raw") == [
        "declared raw, but the image ends with a vpc header (a guest can write one into its raw disk)"]


def test_dmg_is_found_by_its_koly_trailer():
    data = os.urandom(8192) + b"koly" + bytes(508)
    report = inspect_bytes(data, len(data))
    assert report.detected_format == "dmg"
    assert "dmg images are refused: the inspector does not read DMG trailers as qemu does" in \
        safety_problems(report, None)


@pytest.mark.parametrize("fmt", sorted(REFUSED_FORMATS))
def test_refused_formats_are_refused_by_name(fmt):
    header = HEADERS["vmdk-descriptor" if fmt == "vmdk" else fmt] if fmt != "dmg" else b""
    data = header.ljust(8192, b"\0") if header else os.urandom(4096) + b"koly" + bytes(508)
    report = inspect_bytes(data, len(data))
    assert report.detected_format == fmt
    for declared in (fmt, None):
        assert f"{fmt} images are refused: {REFUSED_FORMATS[fmt]}" in safety_problems(report, declared)


def test_vmdk_naming_a_parent_or_an_extent_is_refused_whatever_its_type():
    """VMDK descriptors the old allow-list let through: a sparse type with a parent hint,
    a binary VMDK of capacity 0 carrying a descriptor."""
    descriptor = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=12345678\n'
                  b'createType="monolithicSparse"\nparentFileNameHint="/etc/shadow"\nRW 2048 SPARSE "disk.vmdk"\n')
    report = inspect_bytes(descriptor, len(descriptor))
    assert safety_problems(report, "vmdk")[-1].startswith("vmdk images are refused")
    kdmv = bytearray(4096)
    struct.pack_into("<4sIIQQQQ", kdmv, 0, b"KDMV", 1, 3, 0, 128, 1, 20)
    kdmv[512:512 + len(descriptor)] = descriptor
    assert safety_problems(inspect_bytes(bytes(kdmv), 4096), None) == [
        f"vmdk images are refused: {REFUSED_FORMATS['vmdk']}"]


def test_unknown_declared_format():
    assert safety_problems(inspect_bytes(bytes(4096), 4096), "vhd") == ["unknown image format vhd"]


# ---- qcow2 ----

def test_plain_qcow2_v3():
    report = inspect_bytes(qcow2_header(compatible=1), MIB)
    assert report.detected_format == "qcow2"
    assert (report.qcow2_version, report.compat, report.virtual_size) == (3, "1.1", GIB)
    assert report.cluster_size == 65536
    assert report.lazy_refcounts is True
    assert report.problems == []
    assert safety_problems(report, "qcow2") == []


def test_qcow2_v2_is_compat_010():
    report = inspect_bytes(qcow2_header(version=2), MIB)
    assert report.compat == "0.10"
    assert report.problems == []


def test_qcow2_virtual_size_is_counted_in_whole_sectors_as_qemu_does():
    assert inspect_bytes(qcow2_header(size=1000001), MIB).virtual_size == 999936


def test_raw_virtual_size_is_rounded_up_to_a_sector_as_qemu_does():
    assert inspect_bytes(bytes(4096), 1000001).virtual_size == 1000448
    assert inspect_bytes(b"", 0).virtual_size == 0


def test_raw_disk_carrying_a_forged_qcow2_header_pointing_at_shadow():
    forged = qcow2_header(backing="/etc/shadow", backing_format="raw")
    report = inspect_bytes(forged, 10 * GIB)
    assert report.detected_format == "qcow2"
    assert report.backing_file == "/etc/shadow"
    problems = safety_problems(report, "raw", path="/var/lib/libvirt/images/web.raw")
    assert problems == [
        "declared raw, but the image starts with a qcow2 header (a guest can write one into its raw disk)"]


def test_declared_qcow2_with_a_raw_header():
    report = inspect_bytes(b"\0" * 4096, 4096)
    assert safety_problems(report, "qcow2") == ["declared qcow2, but the header says raw"]


def test_backing_name_is_cut_at_the_first_nul_as_qemu_cuts_it():
    """qemu reads /etc/shadow; the whole name normalises inside the allowed directory."""
    name = b"/etc/shadow\0/../../var/lib/libvirt/images/x"
    report = inspect_bytes(qcow2_header(backing=name, backing_format="raw"), MIB)
    assert report.backing_file == "/etc/shadow"
    assert "qcow2 backing file name contains a NUL byte: qemu reads only '/etc/shadow'" in report.problems
    assert safety_problems(report, "qcow2", allowed_backing_dirs=["/var/lib/libvirt/images"],
                           path="/var/lib/libvirt/images/overlay.qcow2")


def test_backing_format_and_data_file_are_cut_at_the_first_nul():
    report = inspect_bytes(qcow2_header(backing="base.raw", backing_format=b"raw\0qcow2"), MIB)
    assert report.backing_format == "raw"
    report = inspect_bytes(qcow2_header(data_file=b"/dev/sda\0/x"), MIB)
    assert report.data_file == "/dev/sda"


def test_extensions_are_read_only_up_to_the_backing_name_as_qemu_reads_them():
    """With no end marker before it, the name's own bytes can read as a backing format
    extension: qemu stops at the name (and finds no format, so it would probe the file
    the name's first bytes name); the inspector must stop there too."""
    header = bytearray(qcow2_header())
    struct.pack_into(">II8s", header, 112, 0x12345678, 8, b"padding!")
    name = struct.pack(">II", 0xE2792ACA, 3) + b"raw" + bytes(5)
    header[128:128 + len(name)] = name
    struct.pack_into(">QI", header, 8, 128, len(name))
    report = inspect_bytes(bytes(header), MIB)
    assert (report.backing_file, report.backing_format) == ("\udce2y*\udcca", None)
    assert safety_problems(report, "qcow2", path="/images/overlay.qcow2") == [
        "qcow2 backing file name contains a NUL byte: qemu reads only '\\xe2y*\\xca'"]


def test_names_in_messages_are_printable():
    report = inspect_bytes(qcow2_header(backing=b"\xff\nname", backing_format="vmdk"), MIB)
    assert report.backing_file == "\udcff\nname"
    assert safety_problems(report, "qcow2", path="/images/overlay.qcow2") == [
        "backing file \\xff\\nname is declared vmdk, which is not accepted (raw, qcow2, vdi, vpc, vhdx)"]


def test_a_backing_format_written_after_the_name_is_not_there_for_qemu():
    header = qcow2_header(backing="base.raw", after_name=[(0xE2792ACA, b"raw")])
    report = inspect_bytes(header, MIB)
    assert report.backing_format is None
    assert safety_problems(report, "qcow2", path="/images/overlay.qcow2") == [
        "backing file base.raw has no declared format"]


def test_a_later_backing_format_extension_replaces_an_earlier_one():
    header = qcow2_header(backing="base.raw", backing_format="raw", extensions=[(0xE2792ACA, b"vmdk")])
    assert inspect_bytes(header, MIB).backing_format == "raw"
    header = qcow2_header(backing="base.raw", backing_format="vmdk", extensions=[(0xE2792ACA, b"raw")])
    assert inspect_bytes(header, MIB).backing_format == "vmdk"


@pytest.mark.parametrize("offset, length, problem", [
    (65536 - 8, 16, "invalid qcow2 backing file name length 16"),
    (512, 1024, "invalid qcow2 backing file name length 1024"),
    (65536 + 8, 8, "invalid qcow2 backing file offset 65544 (beyond the first cluster)"),
    (512, 0, "qcow2 backing file name is empty"),
], ids=["crosses-the-cluster", "longer-than-1023", "beyond-the-cluster", "empty"])
def test_backing_name_limits_are_qemus(offset, length, problem):
    header = bytearray(qcow2_header(backing="base.raw", backing_format="raw"))
    struct.pack_into(">QI", header, 8, offset, length)
    assert problem in inspect_bytes(bytes(header) + bytes(65536), 2 * 65536).problems


def test_a_1023_byte_backing_name_is_read():
    name = "./" * 507 + "base.raw" + "x"
    assert inspect_bytes(qcow2_header(backing=name, backing_format="raw"), MIB).backing_file == name


def test_external_data_file_is_refused():
    report = inspect_bytes(qcow2_header(data_file="/dev/sda"), MIB)
    assert report.data_file == "/dev/sda"
    assert "qcow2 with an external data file (/dev/sda)" in safety_problems(report, "qcow2")


def test_data_file_bit_without_a_name_is_still_refused():
    report = inspect_bytes(qcow2_header(incompatible=1 << 2), MIB)
    assert report.data_file == ""
    assert "qcow2 with an external data file (unnamed)" in safety_problems(report, "qcow2")


@pytest.mark.parametrize("header, problem", [
    (qcow2_header(incompatible=1 << 40), "unknown qcow2 incompatible feature bits 0x10000000000"),
    (qcow2_header(incompatible=1 << 1), "qcow2 corrupt bit is set"),
    (qcow2_header(version=4), "unknown qcow2 version 4"),
    (qcow2_header(cluster_bits=40), "invalid qcow2 cluster size (2^40 bytes)"),
    (qcow2_header(size=1 << 62), "absurd qcow2 virtual size (4611686018427387904 bytes)"),
    (qcow2_header(header_length=1 << 20), "invalid qcow2 header length 1048576 (beyond the first cluster)"),
    (qcow2_header(header_length=100), "invalid qcow2 header length 100"),
    (qcow2_header(cluster_bits=9, header_length=1024), "invalid qcow2 header length 1024 (beyond the first cluster)"),
    (qcow2_header(incompatible=1 << 3), "qcow2 compression type and its incompatible feature bit disagree"),
    (qcow2_header()[:40], "truncated qcow2 header (40 bytes)"),
    (qcow2_header(), "truncated qcow2 image: its tables end at byte 196608, the file at 150000"),
    (qcow2_header(snapshots=65536), "truncated qcow2 image: its tables end at byte 2621440, the file at 150000"),
], ids=["unknown-bit", "corrupt", "version", "cluster-bits", "huge", "header-length", "header-too-short",
        "header-beyond-small-cluster", "compression-bit", "truncated", "tables-past-end", "snapshots-past-end"])
def test_header_problems(header, problem):
    report = inspect_bytes(header, 150000 if "tables" in problem else MIB)
    assert problem in report.problems
    assert problem in safety_problems(report, report.detected_format)


def test_backing_name_beyond_the_file_is_a_problem_not_a_read_elsewhere():
    header = bytearray(qcow2_header())
    struct.pack_into(">QI", header, 8, 4096, 10)
    calls = []

    def reader(offset, length):
        calls.append((offset, length))
        return b""

    report = inspect_bytes(bytes(header[:1024]), 1024, reader)
    assert "qcow2 backing file name lies beyond the end of the image" in report.problems
    assert (4096, 10) in calls


def test_the_extension_walk_ends_with_the_first_cluster_as_qemu_s_does():
    """qemu has no count limit: many small unknown extensions up to the cluster's end are fine."""
    header = bytearray(qcow2_header())
    for offset in range(112, 65536 - 8, 8):
        struct.pack_into(">II", header, offset, 0x12345678, 0)
    assert inspect_bytes(bytes(header), MIB).problems == []
    struct.pack_into(">II", header, 65536 - 8, 0x12345678, 8)
    assert inspect_bytes(bytes(header), MIB).problems == [
        "qcow2 header extension 0x12345678 runs past the end of its area"]


def test_qcow_version_1_is_refused_by_name():
    report = inspect_bytes(qcow2_header(version=1), MIB)
    assert report.detected_format == "qcow"
    assert safety_problems(report, "qcow") == [f"qcow images are refused: {REFUSED_FORMATS['qcow']}"]


def test_qed_is_refused_by_name():
    data = bytearray(4096)
    struct.pack_into("<4sIIIQQQQQII", data, 0, b"QED\0", 65536, 4, 1, 1, 0, 0, 65536, GIB, 512, 8)
    data[512:520] = b"base.raw"
    report = inspect_bytes(bytes(data), MIB)
    assert (report.detected_format, report.backing_file, report.virtual_size) == ("qed", "base.raw", GIB)
    assert safety_problems(report, "qed") == [f"qed images are refused: {REFUSED_FORMATS['qed']}"]


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


def test_luks_is_encrypted_and_refused():
    report = inspect_bytes(b"LUKS\xba\xbe\0\x02" + b"\0" * 100, MIB)
    assert report.encrypted
    assert safety_problems(report, "luks") == [
        f"luks images are refused: {REFUSED_FORMATS['luks']}",
        "the image is encrypted; converting it needs its secret, which is not supported"]


# ---- vdi ----

def test_vdi_virtual_size_is_qemus():
    """qemu rounds an odd disk size up to a whole sector."""
    data = vdi_image(disk_size=64 * MIB + 1)
    report = inspect_bytes(data, len(data))
    assert (report.detected_format, report.virtual_size, report.cluster_size) == ("vdi", 64 * MIB + 512, MIB)
    assert safety_problems(report, "vdi") == []


@pytest.mark.parametrize("options, problem", [
    ({"parent": True}, "a differencing VDI (parent UUID set): qemu does not read its parent"),
    ({"link": True}, "a differencing VDI (link UUID set): qemu does not read its parent"),
    ({"version": 0x00010000}, "unsupported VDI version 0x10000"),
    ({"block_size": 2 * MIB}, "VDI block size 2097152 is not 1 MiB"),
    ({"blocks": 10}, "VDI disk size exceeds its block map"),
    ({"blocks": 1 << 20}, "VDI block map larger than its disk or beyond the end of the file"),
], ids=["parent", "link", "version", "block-size", "map-too-small", "map-too-large"])
def test_vdi_problems(options, problem):
    data = vdi_image(**options)
    assert inspect_bytes(data, len(data)).problems == [problem]


# ---- vpc ----

@pytest.mark.parametrize("creator, geometry, size, expected", [
    (b"qemu", (520, 16, 63), 64 * MIB, 520 * 16 * 63 * 512),
    (b"vpc ", (520, 16, 63), 64 * MIB, 520 * 16 * 63 * 512),
    (b"qem2", (520, 16, 63), 64 * MIB, 64 * MIB),
    (b"win ", (520, 16, 63), 64 * MIB, 64 * MIB),
    (b"tap\0", (520, 16, 63), 64 * MIB, 64 * MIB),
    (b"qemu", (65535, 16, 255), 200 * GIB, 200 * GIB),
    (b"abcd", (520, 16, 63), 520 * 16 * 63 * 512, 520 * 16 * 63 * 512),
], ids=["qemu-chs", "vpc-chs", "qem2-size", "hyper-v-size", "xen-size", "max-geometry-size", "unknown-but-agreeing"])
def test_vhd_virtual_size_is_qemus(creator, geometry, size, expected):
    data = dynamic_vhd(size, geometry, creator, entries=-(-expected // (2 * MIB)))
    report = inspect_bytes(data, len(data))
    assert (report.detected_format, report.virtual_size) == ("vpc", expected)
    assert safety_problems(report, "vpc") == []


def test_vhd_whose_size_qemu_7_and_10_read_differently_is_refused():
    """qemu 7.2 reads an unknown creator's size from current_size, 10.0 from the geometry."""
    data = dynamic_vhd(64 * MIB, (520, 16, 63), b"wa\0\0")
    assert inspect_bytes(data, len(data)).problems == [
        "VHD from creator application b'wa\\x00\\x00': qemu 7.2 and 10.0 read its size differently"]


@pytest.mark.parametrize("data, problem", [
    (dynamic_vhd(disk_type=4), "a differencing VHD: qemu does not read its parent"),
    (dynamic_vhd()[:-512] + bytes(512), None),
    (vpc_footer(MIB, 32, 4, 17)[:64] + b"\0\0\0\1" + bytes(444), "VHD footer checksum is wrong"),
    (bytes(4 * MIB) + vpc_footer(4 * MIB, 130, 16, 63, disk_type=3), "invalid VHD footer (a footer at the end must be"
                                                                     " a fixed disk's)"),
    (dynamic_vhd(entries=1), "VHD block table too small for its size"),
], ids=["differencing", "no-footer-copy-at-the-end", "checksum", "dynamic-footer-at-the-end", "table-too-small"])
def test_vhd_problems(data, problem):
    report = inspect_bytes(data, len(data))
    assert report.problems == ([problem] if problem else [])


# ---- vhdx ----

def test_crc32c_is_castagnoli():
    assert crc32c(b"123456789") == 0xE3069283 == bitwise_crc32c(b"123456789")


def test_vhdx_virtual_size_is_qemus():
    data = vhdx_image(virtual_size=GIB + 1000)
    report = inspect_bytes(data, len(data))
    assert (report.detected_format, report.virtual_size, report.cluster_size) == ("vhdx", GIB + 512, 32 * MIB)
    assert safety_problems(report, "vhdx") == []


@pytest.mark.parametrize("options, problem", [
    ({"bits": 2, "parent_locator": True}, "a differencing VHDX (parent locator): qemu does not read its parent"),
    ({"bits": 2}, "a differencing VHDX (has a parent): qemu does not read its parent"),
    ({"logical": 4096}, "VHDX logical sector size 4096 (qemu reads only 512)"),
    ({"block_size": 3 * MIB}, "invalid VHDX block size 3145728"),
    ({"headers": ((1, bytes(16)), (2, b"\1" * 16))}, "VHDX with a log to replay (qemu cannot open it read-only)"),
    ({"headers": ((1, bytes(16)), (1, bytes(16)))}, "two different VHDX headers with the same sequence number"),
    ({"region_crc_ok": False}, "invalid VHDX region table"),
], ids=["parent-locator", "has-parent", "4k-sectors", "block-size", "log", "same-sequence", "region-crc"])
def test_vhdx_problems(options, problem):
    data = vhdx_image(**options)
    assert inspect_bytes(data, len(data)).problems == [problem]


def test_vhdx_takes_the_newer_header_as_qemu_does():
    data = vhdx_image(headers=((2, bytes(16)), (1, b"\1" * 16)))
    assert inspect_bytes(data, len(data)).problems == []


# ---- paths and backing chains on real files ----

@pytest.fixture
def images(tmp_path):
    """An allowed directory with a raw base, a secret beside it, and links of both kinds."""
    allowed = tmp_path / "images"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "sub").mkdir()
    write(allowed / "base.raw", bytes(MIB))
    write(allowed / "sub" / "base.raw", bytes(MIB))
    write(outside / "shadow", b"secret\n")
    (allowed / "link-out").symlink_to(outside / "shadow")
    (allowed / "link-in").symlink_to(allowed / "base.raw")
    (allowed / "dir-out").symlink_to(outside)
    (allowed / "dir-in").symlink_to(allowed / "sub")
    return allowed


def overlay(directory, name, backing, backing_format="raw"):
    return write(directory / name, qcow2_header(backing=backing, backing_format=backing_format) + bytes(MIB))


def test_a_backing_file_inside_is_followed_and_listed(images):
    top = overlay(images, "top.qcow2", "base.raw")
    vetting = vet_image(top, "qcow2", [str(images)])
    assert vetting.safe and vetting.report.backing_file == "base.raw"
    assert vetting.chain == [(str(images / "base.raw"), "raw")]


def test_a_chain_is_listed_in_order_with_formats(images):
    overlay(images, "middle.qcow2", str(images / "base.raw"))
    top = overlay(images, "top.qcow2", "middle.qcow2", "qcow2")
    assert vet_image(top, "qcow2", [str(images)]).chain == [
        (str(images / "middle.qcow2"), "qcow2"), (str(images / "base.raw"), "raw")]


def test_the_default_allowed_directory_is_the_image_s_own(images):
    top = overlay(images, "top.qcow2", "base.raw")
    assert vet_image(top, "qcow2").safe
    assert not vet_image(overlay(images / "sub", "top.qcow2", "../base.raw"), "qcow2").safe


@pytest.mark.parametrize("name, problem", [
    ("link-out", "backing file link-out (resolved: {outside}/shadow) is outside the allowed directories ({images})"),
    ("dir-out/shadow", "backing file dir-out/shadow (resolved: {outside}/shadow) is outside the allowed directories"
                       " ({images})"),
    ("dir-in/../../outside/shadow", "backing file dir-in/../../outside/shadow (resolved: {outside}/shadow) is outside"
                                    " the allowed directories ({images})"),
    ("../outside/shadow", "backing file ../outside/shadow (resolved: {outside}/shadow) is outside the allowed"
                          " directories ({images})"),
    ("{outside}/shadow", "backing file {outside}/shadow is outside the allowed directories ({images})"),
    ("/{outside}/shadow", "backing file /{outside}/shadow (resolved: {outside}/shadow) is outside the allowed"
                          " directories ({images})"),
    ("missing.raw", "{images}/missing.raw does not exist"),
    ("top.qcow2", "backing file {images}/top.qcow2 makes the backing chain a loop"),
], ids=["link-to-a-file-outside", "link-to-a-directory-outside", "dot-dot-after-a-link", "dot-dot",
        "absolute-outside", "double-slash", "missing", "itself"])
def test_backing_files_that_leave_or_do_not_exist(images, name, problem):
    outside = images.parent / "outside"
    name = name.format(outside=outside)
    top = overlay(images, "top.qcow2", name)
    assert vet_image(top, "qcow2", [str(images)]).problems == [problem.format(images=images, outside=outside)]


@pytest.mark.parametrize("name", ["link-in", "dir-in/base.raw", "dir-in/../base.raw", "sub/../base.raw", "./base.raw"])
def test_links_and_dots_that_stay_inside_are_followed(images, name):
    vetting = vet_image(overlay(images, "top.qcow2", name), "qcow2", [str(images)])
    assert vetting.safe, vetting.problems
    expected = images / "sub" / "base.raw" if name == "dir-in/base.raw" else images / "base.raw"
    assert vetting.chain == [(str(expected), "raw")]


def test_a_relative_name_is_joined_to_the_path_as_given_not_to_a_link_s_target(images):
    """qemu opens sub/top.qcow2 as dir-in/top.qcow2: its "base.raw" is dir-in/base.raw,
    and a link to it in images/ names images/base.raw."""
    overlay(images / "sub", "top.qcow2", "base.raw")
    assert vet_image(str(images / "dir-in" / "top.qcow2"), "qcow2", [str(images)]).chain == [
        (str(images / "sub" / "base.raw"), "raw")]
    (images / "top-link.qcow2").symlink_to(images / "sub" / "top.qcow2")
    assert vet_image(str(images / "top-link.qcow2"), "qcow2", [str(images)]).chain == [
        (str(images / "base.raw"), "raw")]


def test_an_allowed_directory_given_through_a_link_is_resolved(images, tmp_path):
    (tmp_path / "images-link").symlink_to(images)
    top = overlay(images, "top.qcow2", str(images / "base.raw"))
    assert vet_image(top, "qcow2", [str(tmp_path / "images-link")]).safe


def test_a_backing_file_naming_a_host_file_is_refused_one_level_down(images):
    outside = images.parent / "outside"
    overlay(images, "middle.qcow2", str(outside / "shadow"))
    top = overlay(images, "top.qcow2", "middle.qcow2", "qcow2")
    assert vet_image(top, "qcow2", [str(images)]).problems == [
        f"backing file {outside}/shadow is outside the allowed directories ({images})"]


def test_a_raw_backing_file_carrying_a_header_is_refused(images):
    carrier = write(images / "carrier.raw", qcow2_header(backing="/etc/shadow", backing_format="raw"))
    top = overlay(images, "top.qcow2", "carrier.raw")
    assert vet_image(top, "qcow2", [str(images)]).problems == [
        f"backing file {carrier}: declared raw, but the image starts with a qcow2 header"
        " (a guest can write one into its raw disk)"]


def test_two_images_naming_each_other_are_a_loop(images):
    overlay(images, "a.qcow2", "b.qcow2", "qcow2")
    overlay(images, "b.qcow2", "a.qcow2", "qcow2")
    assert vet_image(str(images / "a.qcow2"), "qcow2", [str(images)]).problems == [
        f"backing file {images}/a.qcow2 makes the backing chain a loop"]


def test_a_chain_deeper_than_the_limit_is_refused(images):
    below, below_format = "base.raw", "raw"
    for level in range(MAX_CHAIN_DEPTH + 1):
        overlay(images, f"level{level}.qcow2", below, below_format)
        below, below_format = f"level{level}.qcow2", "qcow2"
    assert vet_image(str(images / f"level{MAX_CHAIN_DEPTH - 1}.qcow2"), "qcow2", [str(images)]).safe
    assert vet_image(str(images / f"level{MAX_CHAIN_DEPTH}.qcow2"), "qcow2", [str(images)]).problems == [
        f"backing chain longer than {MAX_CHAIN_DEPTH} files"]


@pytest.mark.parametrize("name, backing_format, problem", [
    ("base.raw", None, "backing file base.raw has no declared format"),
    ("base.raw", "vmdk", "backing file base.raw is declared vmdk, which is not accepted (raw, qcow2, vdi, vpc, vhdx)"),
    ("base.raw", "host_device", "backing file base.raw is declared host_device, which is not accepted"
                                " (raw, qcow2, vdi, vpc, vhdx)"),
    ("base.raw", "qcow2", "backing file {images}/base.raw: declared qcow2, but the header says raw"),
    ('json:{"file.filename":"/etc/shadow"}', "raw",
     'backing file json:{"file.filename":"/etc/shadow"} is a protocol, not a file'),
    ("file:/etc/shadow", "raw", "backing file file:/etc/shadow is a protocol, not a file"),
], ids=["no-format", "vmdk", "protocol-driver", "wrong-format", "json", "file-protocol"])
def test_backing_references_qemu_would_not_open_as_plain_files(images, name, backing_format, problem):
    top = write(images / "top.qcow2", qcow2_header(backing=name, backing_format=backing_format) + bytes(MIB))
    assert vet_image(top, "qcow2", [str(images)]).problems == [problem.replace("{images}", str(images))]


def test_a_name_with_a_colon_after_a_slash_is_a_file(images):
    write(images / "a:b.raw", bytes(MIB))
    assert vet_image(overlay(images, "top.qcow2", "./a:b.raw"), "qcow2", [str(images)]).safe


def test_safety_problems_follows_the_chain_when_given_the_path(images):
    outside = images.parent / "outside"
    overlay(images, "middle.qcow2", str(outside / "shadow"))
    top = overlay(images, "top.qcow2", "middle.qcow2", "qcow2")
    assert safety_problems(inspect_path(top), "qcow2", allowed_backing_dirs=[str(images)], path=top) == [
        f"backing file {outside}/shadow is outside the allowed directories ({images})"]


def test_without_the_image_s_path_a_backing_name_is_never_enough():
    report = inspect_bytes(qcow2_header(backing="base.raw", backing_format="raw"), MIB)
    assert safety_problems(report, "qcow2", allowed_backing_dirs=["/var/lib/libvirt/images"]) == [
        "backing file base.raw cannot be resolved without the image's path"]


def test_vet_image_of_a_missing_file(tmp_path):
    vetting = vet_image(str(tmp_path / "missing.raw"), "raw")
    assert not vetting.safe and vetting.problems == [f"{tmp_path / 'missing.raw'} does not exist"]
    assert vetting.chain == []


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


def test_inspect_path_finds_a_fixed_vhd_footer_in_a_file_of_odd_length(tmp_path):
    """qemu sees the length rounded up to a sector and reads its footer from there, zeros past the end."""
    footer = vpc_footer(4 * MIB, 130, 16, 63, disk_type=2, data_offset=2**64 - 1)
    assert not any(footer[100:])
    image = write(tmp_path / "odd.vhd", bytes(4 * MIB) + footer[:100])
    report = inspect_path(image)
    assert (report.detected_format, report.virtual_size) == ("vpc", 130 * 16 * 63 * 512)


def test_empty_file_is_raw_of_size_zero(tmp_path):
    image = tmp_path / "empty.raw"
    image.write_bytes(b"")
    report = inspect_path(str(image))
    assert (report.detected_format, report.virtual_size, report.problems) == ("raw", 0, [])
