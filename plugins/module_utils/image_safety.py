# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure-Python image header inspection and the safety policy (private to kvm.images).

The inspector is a second parser of bytes that qemu parses first: wherever the two
read a header differently, qemu may open a file the inspector never saw. So every
field is read the way qemu's own driver reads it (qemu 7.2 and 10.0: block/qcow2.c,
vdi.c, vpc.c, vhdx.c), whatever cannot be read the same way is refused by name, and
the differential tests (tests/differential) hold the result to qemu itself.

Reads a bounded number of bytes of the image, and of the backing files it vets
(which must lie inside the allowed directories); never opens anything else an image
names (data files, VMDK extents, files outside the allowed directories).
"""

from __future__ import annotations

import os
import re
import stat
import struct
import typing as t
from dataclasses import dataclass, field

from ansible_collections.kvm.images.plugins.module_utils.formats import (
    ACCEPTED_FORMATS,
    KNOWN_FORMATS,
    REFUSED_FORMATS,
)

HEAD_BYTES = 1 << 20
SECTOR = 512
MAX_VIRTUAL_SIZE = 1 << 60
# Offsets qemu's block layer rejects (BDRV_MAX_LENGTH is just below 2^63): refuse them first.
MAX_OFFSET = 1 << 62
MAX_CHAIN_DEPTH = 16
# A path the kernel refuses (ENAMETOOLONG) or qemu truncates in its fixed buffers.
PATH_MAX = 4096

QCOW_MAGIC = b"QFI\xfb"
QCOW2_MIN_CLUSTER_BITS = 9
QCOW2_MAX_CLUSTER_BITS = 21
QCOW2_MAX_BACKING_NAME = 1023
QCOW2_MAX_BACKING_FORMAT = 15
QCOW2_EXT_END = 0x00000000
QCOW2_EXT_BACKING_FORMAT = 0xE2792ACA
QCOW2_EXT_DATA_FILE = 0x44415441
QCOW2_INCOMPAT_DIRTY = 1 << 0
QCOW2_INCOMPAT_CORRUPT = 1 << 1
QCOW2_INCOMPAT_DATA_FILE = 1 << 2
QCOW2_INCOMPAT_COMPRESSION = 1 << 3
QCOW2_INCOMPAT_EXTL2 = 1 << 4
QCOW2_INCOMPAT_KNOWN = 0x1F
QCOW2_COMPAT_LAZY_REFCOUNTS = 1 << 0
ISO_MAGIC_OFFSETS = (0x8001, 0x8801, 0x9001)

VDI_SIGNATURE = 0xBEDA107F
VDI_VERSION_1_1 = 0x00010001
VDI_BLOCK_SIZE = 1 << 20
VDI_BLOCKS_MAX = 0x3FFFFFFF
VDI_DISK_SIZE_MAX = VDI_BLOCKS_MAX * VDI_BLOCK_SIZE

VPC_MAGIC = b"conectix"
VPC_FIXED, VPC_DYNAMIC, VPC_DIFFERENCING = 2, 3, 4
VPC_MAX_GEOMETRY = 65535 * 16 * 255
VPC_MAX_SECTORS = 0xFF000000
# qemu 7.2 reads a VHD's size from its CHS geometry unless its creator application is
# one of VPC_SIZE_CREATORS; qemu 10.0 only when it is one of VPC_CHS_CREATORS. For any
# other creator the two agree only when both readings give the same size.
VPC_CHS_CREATORS = (b"vpc ", b"qemu")
VPC_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")

VHDX_MAGIC = b"vhdxfile"
VHDX_HEADER_OFFSETS = (64 << 10, 128 << 10)
VHDX_HEADER_SIZE = 4 << 10
VHDX_REGION_TABLE_OFFSET = 192 << 10
VHDX_REGION_TABLE_SIZE = 64 << 10
VHDX_METADATA_TABLE_SIZE = 64 << 10
VHDX_BLOCK_SIZE_MIN = 1 << 20
VHDX_BLOCK_SIZE_MAX = 256 << 20
VHDX_PARAMS_HAS_PARENT = 0x02
VHDX_REGION_REQUIRED = 0x01
VHDX_METADATA_REQUIRED = 0x04

PARALLELS_MAGICS = (b"WithoutFreeSpace", b"WithouFreSpacExt")
BOCHS_MAGIC = b"Bochs Virtual HD Image"
CLOOP_MAGIC = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
DMG_MAGIC = b"koly"
LUKS_MAGIC = b"LUKS\xba\xbe"
# qemu's vmdk_probe: comment lines and blank lines, then a "version=N" line.
VMDK_TEXT = re.compile(rb"\A(?:#[^\n]*\n| +\r?\n)*version=[123]\r?\n")

Reader = t.Callable[[int, int], bytes]


def _ms_guid(data1: int, data2: int, data3: int, data4: str) -> bytes:
    """A Microsoft GUID as VHDX stores it (the first three fields little-endian)."""
    return struct.pack("<IHH", data1, data2, data3) + bytes.fromhex(data4)


VHDX_BAT_GUID = _ms_guid(0x2DC27766, 0xF623, 0x4200, "9d64115e9bfd4a08")
VHDX_METADATA_GUID = _ms_guid(0x8B7CA206, 0x4790, 0x4B9A, "b8fe575f050f886e")
VHDX_FILE_PARAMETERS = _ms_guid(0xCAA16737, 0xFA36, 0x4D43, "b3b633f0aa44e76b")
VHDX_VIRTUAL_SIZE = _ms_guid(0x2FA54224, 0xCD1B, 0x4876, "b2115dbed83bf4b8")
VHDX_PAGE83 = _ms_guid(0xBECA12AB, 0xB2E6, 0x4523, "93efc309e000c746")
VHDX_PHYSICAL_SECTOR = _ms_guid(0xCDA348C7, 0x445D, 0x4471, "9cc9e9885251c556")
VHDX_LOGICAL_SECTOR = _ms_guid(0x8141BF1D, 0xA96F, 0x4709, "ba47f233a8faab5f")
VHDX_PARENT_LOCATOR = _ms_guid(0xA8D35F2D, 0xB30B, 0x454D, "abf7d3d84834ab0c")
VHDX_REQUIRED_ITEMS = (VHDX_FILE_PARAMETERS, VHDX_VIRTUAL_SIZE, VHDX_PAGE83, VHDX_LOGICAL_SECTOR,
                       VHDX_PHYSICAL_SECTOR)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _bit in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of VHDX headers and region tables."""
    crc = 0xFFFFFFFF
    table = CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass
class HeaderReport:
    """What one image's own header says, and what is wrong with it (no file it names is read)."""

    detected_format: str = "raw"
    is_iso: bool = False
    # The format's magic is at the end of the file (a fixed VHD's footer, a DMG trailer).
    magic_at_end: bool = False
    qcow2_version: int | None = None
    virtual_size: int | None = None
    cluster_bits: int | None = None
    # Names as qemu uses them: cut at the first NUL, bytes kept (os.fsdecode).
    backing_file: str | None = None
    backing_format: str | None = None
    data_file: str | None = None
    incompatible_features: int = 0
    compatible_features: int = 0
    encrypted: bool = False
    snapshots: int = 0
    compression_type: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def compat(self) -> str | None:
        return {2: "0.10", 3: "1.1"}.get(self.qcow2_version or 0)

    @property
    def dirty(self) -> bool:
        return bool(self.incompatible_features & QCOW2_INCOMPAT_DIRTY)

    @property
    def lazy_refcounts(self) -> bool:
        return bool(self.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS)

    @property
    def cluster_size(self) -> int | None:
        return 1 << self.cluster_bits if self.cluster_bits is not None else None


@dataclass
class Vetting:
    """An image judged with its whole backing chain; no problems means qemu-img may open it.

    ``chain`` holds the backing files qemu will open, in order, as (real path, format):
    together with the image itself, exactly the files qemu-img needs to read.
    """

    problems: list[str]
    report: HeaderReport
    chain: list[tuple[str, str]] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.problems


class Image:
    """The bytes of one image as qemu's block layer reads them.

    ``head`` holds the first bytes; ``reader`` fetches other ranges (short or empty
    past the end). qemu reads past the end of a file as zeros and sees its length
    rounded up to a whole sector; ``padded`` and ``qemu_length`` do the same.
    """

    def __init__(self, head: bytes, size: int, reader: Reader | None = None) -> None:
        self.head = head
        self.size = size
        self.reader = reader

    def read(self, offset: int, length: int) -> bytes:
        """The bytes at ``offset``; fewer when the file ends (or is not at hand) before."""
        if offset < 0 or length <= 0:
            return b""
        if offset + length <= len(self.head):
            return self.head[offset:offset + length]
        if self.reader is not None:
            return self.reader(offset, length)
        return self.head[offset:offset + length]

    def padded(self, offset: int, length: int) -> bytes:
        """The bytes qemu reads at ``offset``: past the end of the file, zeros."""
        data = self.read(offset, length)
        return data + bytes(length - len(data))

    @property
    def qemu_length(self) -> int:
        return -(-self.size // SECTOR) * SECTOR

    def last_sector(self) -> bytes:
        """The last 512 bytes of the file as qemu's length makes them (zeros past the end)."""
        if self.qemu_length < SECTOR:
            return b""
        offset = self.qemu_length - SECTOR
        if self.reader is None and self.size > len(self.head):
            # The file's last bytes are not at hand.
            return b""
        return self.padded(offset, SECTOR)


def _u16le(data: bytes, offset: int) -> int:
    return struct.unpack_from("<H", data, offset)[0]


def _u32le(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _u64le(data: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from(">I", data, offset)[0]


def _u64(data: bytes, offset: int) -> int:
    return struct.unpack_from(">Q", data, offset)[0]


def _c_string(raw: bytes) -> bytes:
    """What C code reads from a buffer: everything before the first NUL."""
    return raw.split(b"\0", 1)[0]


def _name(raw: bytes) -> str:
    """A file name exactly as its bytes say (undecodable bytes survive, for os.* calls)."""
    return os.fsdecode(raw)


def printable(name: str) -> str:
    """A name for messages and facts: bytes that are not UTF-8 as \\xNN, control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


# ---- qcow2 (block/qcow2.c: qcow2_do_open, qcow2_read_extensions) ----

def inspect_qcow(image: Image, report: HeaderReport) -> None:
    """qcow (v1) and qcow2 headers, read as qcow2_do_open reads them."""
    available = len(image.read(0, 112))
    data = image.padded(0, 112)
    version = _u32(data, 4)
    if version == 1:
        inspect_qcow1(image, report)
        return
    report.detected_format = "qcow2"
    if available < 72:
        report.problems.append(f"truncated qcow2 header ({available} bytes)")
        return
    report.qcow2_version = version
    if version not in (2, 3):
        report.problems.append(f"unknown qcow2 version {version}")
        return
    backing_offset, backing_size = _u64(data, 8), _u32(data, 16)
    cluster_bits = _u32(data, 20)
    report.cluster_bits = cluster_bits
    size = _u64(data, 24)
    # qemu counts whole sectors: a size of 1000 bytes reads as 512.
    report.virtual_size = size // SECTOR * SECTOR
    report.encrypted = _u32(data, 32) != 0
    report.snapshots = _u32(data, 60)
    if not QCOW2_MIN_CLUSTER_BITS <= cluster_bits <= QCOW2_MAX_CLUSTER_BITS:
        report.problems.append(f"invalid qcow2 cluster size (2^{cluster_bits} bytes)")
        return
    cluster_size = 1 << cluster_bits
    if size > MAX_VIRTUAL_SIZE:
        report.problems.append(f"absurd qcow2 virtual size ({size} bytes)")
    check_qcow2_tables(data, image.size, cluster_bits, report)
    header_length = 72
    if version == 3:
        if available < 104:
            report.problems.append("truncated qcow2 v3 header")
            return
        report.incompatible_features = _u64(data, 72)
        report.compatible_features = _u64(data, 80)
        refcount_order = _u32(data, 96)
        header_length = _u32(data, 100)
        if header_length < 104:
            report.problems.append(f"invalid qcow2 header length {header_length}")
            return
        if refcount_order > 6:
            report.problems.append(f"invalid qcow2 refcount order {refcount_order}")
        check_qcow2_features(data, header_length, report)
    if header_length > cluster_size:
        report.problems.append(f"invalid qcow2 header length {header_length} (beyond the first cluster)")
        return
    if backing_offset > cluster_size:
        report.problems.append(f"invalid qcow2 backing file offset {backing_offset} (beyond the first cluster)")
        return
    # qemu reads header extensions up to the backing file name, or to the end of the first cluster.
    read_extensions(image, header_length, backing_offset or cluster_size, report)
    if backing_offset:
        read_backing_name(image, backing_offset, backing_size, cluster_size, report)
    if report.incompatible_features & QCOW2_INCOMPAT_DATA_FILE and report.data_file is None:
        report.data_file = ""


def check_qcow2_tables(data: bytes, file_size: int, cluster_bits: int, report: HeaderReport) -> None:
    """Tables that end past the end of the file: a truncated image."""
    l1_end = _u64(data, 40) + 8 * _u32(data, 36)
    refcount_end = _u64(data, 48) + (_u32(data, 56) << cluster_bits)
    # Every snapshot header takes at least 40 bytes: a count the file cannot hold is a forgery
    # that only makes qemu-img read and print tens of thousands of them.
    snapshots_end = _u64(data, 64) + 40 * _u32(data, 60)
    end = max(l1_end, refcount_end, snapshots_end)
    if end > file_size:
        report.problems.append(f"truncated qcow2 image: its tables end at byte {end}, the file at {file_size}")


def check_qcow2_features(data: bytes, header_length: int, report: HeaderReport) -> None:
    """Feature bits and the compression type of a version 3 header (validate_compression_type)."""
    incompatible = report.incompatible_features
    compression = data[104] if header_length > 104 else 0
    report.compression_type = {0: "zlib", 1: "zstd"}.get(compression, f"unknown ({compression})")
    if compression not in (0, 1):
        report.problems.append(f"unknown qcow2 compression type {compression}")
    elif bool(compression) != bool(incompatible & QCOW2_INCOMPAT_COMPRESSION):
        report.problems.append("qcow2 compression type and its incompatible feature bit disagree")
    unknown = incompatible & ~QCOW2_INCOMPAT_KNOWN
    if unknown:
        report.problems.append(f"unknown qcow2 incompatible feature bits {unknown:#x}")
    if incompatible & QCOW2_INCOMPAT_CORRUPT:
        report.problems.append("qcow2 corrupt bit is set")


def read_extensions(image: Image, offset: int, end: int, report: HeaderReport) -> None:
    """Walk the qcow2 header extensions from ``offset`` to ``end`` exactly as qemu does.

    No count limit: the walk advances at least 8 bytes a step inside one cluster.
    """
    while offset < end:
        head = image.read(offset, 8)
        if len(head) < 8:
            report.problems.append("truncated qcow2 header extension")
            return
        ext_type, length = struct.unpack(">II", head)
        offset += 8
        if offset > end or length > end - offset:
            report.problems.append(f"qcow2 header extension {ext_type:#x} runs past the end of its area")
            return
        if ext_type == QCOW2_EXT_END:
            return
        body = image.read(offset, length)
        if len(body) < length:
            report.problems.append(f"qcow2 header extension {ext_type:#x} lies beyond the end of the image")
            return
        if ext_type == QCOW2_EXT_BACKING_FORMAT:
            if length > QCOW2_MAX_BACKING_FORMAT:
                report.problems.append(f"qcow2 backing format name too long ({length} bytes)")
                return
            # A later extension of the same type replaces an earlier one, in qemu too.
            report.backing_format = _name(_c_string(body))
        elif ext_type == QCOW2_EXT_DATA_FILE:
            if b"\0" in body:
                report.problems.append("qcow2 data file name contains a NUL byte")
            report.data_file = _name(_c_string(body))
        offset += (length + 7) & ~7


def read_backing_name(image: Image, offset: int, length: int, cluster_size: int, report: HeaderReport) -> None:
    """The backing file name: qemu's length limits, and its C string (cut at the first NUL)."""
    if length > min(QCOW2_MAX_BACKING_NAME, cluster_size - offset):
        report.problems.append(f"invalid qcow2 backing file name length {length}")
        return
    raw = image.read(offset, length)
    if len(raw) < length:
        report.problems.append("qcow2 backing file name lies beyond the end of the image")
        return
    name = _c_string(raw)
    report.backing_file = _name(name)
    if len(name) < len(raw):
        report.problems.append("qcow2 backing file name contains a NUL byte: qemu reads only"
                               f" '{printable(report.backing_file)}'")
    if not name:
        report.problems.append("qcow2 backing file name is empty")


def inspect_qcow1(image: Image, report: HeaderReport) -> None:
    """qcow version 1 (refused by name): its size and backing name, for the facts."""
    data = image.padded(0, 48)
    report.detected_format = "qcow"
    report.virtual_size = _u64(data, 24) // SECTOR * SECTOR
    report.encrypted = _u32(data, 36) != 0
    backing_offset, backing_size = _u64(data, 8), _u32(data, 16)
    if backing_offset and 0 < backing_size <= QCOW2_MAX_BACKING_NAME:
        report.backing_file = _name(_c_string(image.read(backing_offset, backing_size)))


def inspect_qed(image: Image, report: HeaderReport) -> None:
    """QED (refused by name): its size and backing name, for the facts."""
    data = image.padded(0, 64)
    report.detected_format = "qed"
    report.virtual_size = _u64le(data, 48)
    backing_offset, backing_size = _u32le(data, 56), _u32le(data, 60)
    if backing_offset and 0 < backing_size <= QCOW2_MAX_BACKING_NAME:
        report.backing_file = _name(_c_string(image.read(backing_offset, backing_size)))


# ---- vdi (block/vdi.c: vdi_open) ----

def inspect_vdi(image: Image, report: HeaderReport) -> None:
    """A VDI header, with vdi_open's checks in its order; qemu refuses every VDI with a parent."""
    report.detected_format = "vdi"
    header = image.padded(0, 512)
    if image.size < 512:
        report.problems.append(f"truncated VDI header ({image.size} bytes)")
        return
    disk_size = _u64le(header, 368)
    if disk_size > VDI_DISK_SIZE_MAX:
        report.problems.append(f"VDI disk size {disk_size} exceeds qemu's maximum")
        return
    # VBoxManage writes odd sizes; qemu rounds them up to a whole sector.
    disk_size = _round_up(disk_size, SECTOR)
    block_size, blocks = _u32le(header, 376), _u32le(header, 384)
    checks = (
        (_u32le(header, 68) != VDI_VERSION_1_1, f"unsupported VDI version {_u32le(header, 68):#x}"),
        (_u32le(header, 340) % SECTOR != 0, "VDI block map offset is not sector aligned"),
        (_u32le(header, 344) % SECTOR != 0, "VDI data offset is not sector aligned"),
        (_u32le(header, 360) != SECTOR, f"VDI sector size {_u32le(header, 360)} is not 512"),
        (block_size != VDI_BLOCK_SIZE, f"VDI block size {block_size} is not 1 MiB"),
        (disk_size > blocks * block_size, "VDI disk size exceeds its block map"),
        (any(header[424:440]), "a differencing VDI (link UUID set): qemu does not read its parent"),
        (any(header[440:456]), "a differencing VDI (parent UUID set): qemu does not read its parent"),
        (blocks > VDI_BLOCKS_MAX, f"VDI has too many blocks ({blocks})"),
    )
    for failed, problem in checks:
        if failed:
            report.problems.append(problem)
            return
    # Beyond qemu: a block map larger than the disk needs, or past the end of the file, makes
    # qemu read (and check walk) up to 4 GiB of nothing; no VDI writer makes one.
    if blocks > -(-disk_size // block_size) or _u32le(header, 340) + 4 * blocks > image.size:
        report.problems.append("VDI block map larger than its disk or beyond the end of the file")
        return
    report.virtual_size = disk_size
    report.cluster_bits = VDI_BLOCK_SIZE.bit_length() - 1


# ---- vpc (block/vpc.c: vpc_open) ----

def vpc_checksum(footer: bytes) -> int:
    """One's complement of the byte sum with the checksum field zeroed."""
    return ~(sum(footer) - sum(footer[64:68])) & 0xFFFFFFFF


def vpc_sectors(footer: bytes, use_chs: bool) -> int:
    """The virtual size in sectors as vpc_open computes it, given whether the geometry counts."""
    sectors = struct.unpack_from(">H", footer, 56)[0] * footer[58] * footer[59]
    if not use_chs or sectors == VPC_MAX_GEOMETRY:
        sectors = _u64(footer, 48) // SECTOR
    return sectors


def inspect_vpc(image: Image, report: HeaderReport) -> None:
    """A VHD: its footer at offset 0 (dynamic) or in the last sector (fixed), as vpc_open picks it."""
    report.detected_format = "vpc"
    footer = image.padded(0, SECTOR)
    dynamic = footer.startswith(VPC_MAGIC)
    if not dynamic:
        footer = image.last_sector()
        report.magic_at_end = True
        if len(footer) < SECTOR or not footer.startswith(VPC_MAGIC) or _u32(footer, 60) != VPC_FIXED:
            report.problems.append("invalid VHD footer (a footer at the end must be a fixed disk's)")
            return
    if vpc_checksum(footer) != _u32(footer, 64):
        report.problems.append("VHD footer checksum is wrong")
        return
    if dynamic and _u32(footer, 60) == VPC_DIFFERENCING:
        report.problems.append("a differencing VHD: qemu does not read its parent")
        return
    creator = footer[28:32]
    sectors = vpc_sectors(footer, creator not in VPC_SIZE_CREATORS)
    if sectors != vpc_sectors(footer, creator in VPC_CHS_CREATORS):
        report.problems.append(f"VHD from creator application {creator!r}: qemu 7.2 and 10.0 read its size"
                               " differently")
        return
    if sectors > VPC_MAX_SECTORS:
        report.problems.append(f"VHD larger than qemu's maximum ({sectors} sectors)")
        return
    if dynamic and not check_vpc_dynamic_header(image, footer, sectors, report):
        return
    report.virtual_size = sectors * SECTOR


def check_vpc_dynamic_header(image: Image, footer: bytes, sectors: int, report: HeaderReport) -> bool:
    """The dynamic disk header qemu reads at the footer's data offset (its parent fields are never used)."""
    offset = _u64(footer, 16)
    if offset > MAX_OFFSET:
        report.problems.append(f"VHD dynamic header offset {offset} is out of range")
        return False
    header = image.padded(offset, 1024)
    block_size = _u32(header, 32)
    if not header.startswith(b"cxsparse"):
        report.problems.append("VHD dynamic header has no cxsparse magic")
    elif block_size < SECTOR or block_size & (block_size - 1):
        report.problems.append(f"invalid VHD block size {block_size}")
    elif _u32(header, 28) * block_size < sectors * SECTOR:
        report.problems.append("VHD block table too small for its size")
    elif _u64(header, 16) + 4 * _u32(header, 28) > image.size:
        # Beyond qemu, which reads (and allocates) a table past the end as zeros.
        report.problems.append("VHD block table beyond the end of the file")
    else:
        report.cluster_bits = block_size.bit_length() - 1
        return True
    return False


# ---- vhdx (block/vhdx.c: vhdx_parse_header, vhdx_open_region_tables, vhdx_parse_metadata) ----

def vhdx_current_header(image: Image, report: HeaderReport) -> bytes | None:
    """The header qemu uses: a valid one (checksum, signature, version 1), the newer of two."""
    valid = []
    for offset in VHDX_HEADER_OFFSETS:
        block = image.padded(offset, VHDX_HEADER_SIZE)
        checksum_ok = crc32c(block[:4] + bytes(4) + block[8:]) == _u32le(block, 4)
        if checksum_ok and block.startswith(b"head") and _u16le(block, 66) == 1:
            valid.append(block)
    if not valid:
        report.problems.append("no valid VHDX header")
        return None
    if len(valid) == 2:
        first, second = (_u64le(block, 8) for block in valid)
        if first == second:
            if valid[0][:80] != valid[1][:80]:
                report.problems.append("two different VHDX headers with the same sequence number")
                return None
            return valid[0]
        return valid[0] if first > second else valid[1]
    return valid[0]


def check_vhdx_log(header: bytes, report: HeaderReport) -> bool:
    """The log qemu checks first (vhdx_parse_log); one to replay is refused."""
    log_offset = _u64le(header, 72)
    if log_offset < VHDX_BLOCK_SIZE_MIN or log_offset % VHDX_BLOCK_SIZE_MIN or _u16le(header, 64) != 0:
        report.problems.append("invalid VHDX log location or version")
        return False
    if any(header[48:64]):
        report.problems.append("VHDX with a log to replay (qemu cannot open it read-only)")
        return False
    return True


def vhdx_metadata_offset(image: Image, header: bytes, report: HeaderReport) -> int | None:
    """Where the metadata region starts, from the region table (with qemu's checks of it)."""
    table = image.padded(VHDX_REGION_TABLE_OFFSET, VHDX_REGION_TABLE_SIZE)
    if crc32c(table[:4] + bytes(4) + table[8:]) != _u32le(table, 4) or not table.startswith(b"regi"):
        report.problems.append("invalid VHDX region table")
        return None
    count = _u32le(table, 8)
    if count > 2047:
        report.problems.append(f"too many VHDX regions ({count})")
        return None
    taken = [(_u64le(header, 72), _u64le(header, 72) + _u32le(header, 68))]
    found: dict[bytes, tuple[int, int]] = {}
    for index in range(count):
        guid, start, length, bits = struct.unpack_from("<16sQII", table, 16 + 32 * index)
        if any(not (start >= taken_end or start + length <= taken_start) for taken_start, taken_end in taken):
            report.problems.append("overlapping VHDX regions")
            return None
        taken.append((start, start + length))
        if guid in (VHDX_BAT_GUID, VHDX_METADATA_GUID):
            if guid in found:
                report.problems.append("a VHDX region appears twice")
                return None
            found[guid] = (start, length)
            if start + length > image.size:
                # Beyond qemu, which reads (and allocates) a region past the end as zeros.
                report.problems.append("a VHDX region lies beyond the end of the file")
                return None
        elif bits & VHDX_REGION_REQUIRED:
            report.problems.append("a required VHDX region qemu does not know")
            return None
    if len(found) != 2:
        report.problems.append("VHDX region table lacks the BAT or the metadata region")
        return None
    return found[VHDX_METADATA_GUID][0]


def vhdx_metadata(image: Image, offset: int, report: HeaderReport) -> dict[bytes, int] | None:
    """The metadata items qemu knows, by GUID: their offsets in the file."""
    if offset > MAX_OFFSET:
        report.problems.append(f"VHDX metadata offset {offset} is out of range")
        return None
    table = image.padded(offset, VHDX_METADATA_TABLE_SIZE)
    count = _u16le(table, 10)
    if not table.startswith(b"metadata") or count * 32 > VHDX_METADATA_TABLE_SIZE - 32:
        report.problems.append("invalid VHDX metadata table")
        return None
    items: dict[bytes, int] = {}
    for index in range(count):
        guid, item_offset, _length, bits = struct.unpack_from("<16sIII", table, 32 + 32 * index)
        if guid in VHDX_REQUIRED_ITEMS or guid == VHDX_PARENT_LOCATOR:
            if guid in items:
                report.problems.append("a VHDX metadata item appears twice")
                return None
            items[guid] = offset + item_offset
        elif bits & VHDX_METADATA_REQUIRED:
            report.problems.append("a required VHDX metadata item qemu does not know")
            return None
    if VHDX_PARENT_LOCATOR in items:
        report.problems.append("a differencing VHDX (parent locator): qemu does not read its parent")
        return None
    if any(guid not in items for guid in VHDX_REQUIRED_ITEMS):
        report.problems.append("VHDX metadata lacks a required item")
        return None
    return items


def inspect_vhdx(image: Image, report: HeaderReport) -> None:
    """A VHDX: its current header, region table and metadata, as vhdx_open reads them."""
    report.detected_format = "vhdx"
    header = vhdx_current_header(image, report)
    if header is None:
        return
    if not check_vhdx_log(header, report):
        return
    metadata_offset = vhdx_metadata_offset(image, header, report)
    if metadata_offset is None:
        return
    items = vhdx_metadata(image, metadata_offset, report)
    if items is None:
        return
    block_size, bits = struct.unpack("<II", image.padded(items[VHDX_FILE_PARAMETERS], 8))
    if bits & VHDX_PARAMS_HAS_PARENT:
        report.problems.append("a differencing VHDX (has a parent): qemu does not read its parent")
        return
    disk_size = _u64le(image.padded(items[VHDX_VIRTUAL_SIZE], 8), 0)
    logical_sector = _u32le(image.padded(items[VHDX_LOGICAL_SECTOR], 4), 0)
    if not VHDX_BLOCK_SIZE_MIN <= block_size <= VHDX_BLOCK_SIZE_MAX or block_size & (block_size - 1):
        report.problems.append(f"invalid VHDX block size {block_size}")
        return
    if logical_sector != SECTOR:
        # qemu 7.2 opens only 512-byte sectors.
        report.problems.append(f"VHDX logical sector size {logical_sector} (qemu reads only 512)")
        return
    report.virtual_size = disk_size // SECTOR * SECTOR
    report.cluster_bits = block_size.bit_length() - 1
    if report.virtual_size > MAX_VIRTUAL_SIZE:
        report.problems.append(f"absurd VHDX virtual size ({disk_size} bytes)")


# ---- detection ----

def head_formats(data: bytes) -> list[str]:
    """Formats whose magic is at the start of the image (qemu's probes, VMDK's more strictly)."""
    found = []
    if data.startswith(QCOW_MAGIC):
        found.append("qcow" if data[4:8] == b"\0\0\0\1" else "qcow2")
    checks = (
        ("qed", data.startswith(b"QED\0")),
        ("vmdk", data.startswith((b"KDMV", b"COWD", b"# Disk DescriptorFile"))
         or VMDK_TEXT.match(data[:65536]) is not None),
        ("vhdx", data.startswith(VHDX_MAGIC)),
        ("vpc", data.startswith(VPC_MAGIC)),
        ("vdi", len(data) >= 68 and _u32le(data, 64) == VDI_SIGNATURE),
        ("luks", data.startswith(LUKS_MAGIC)),
        ("parallels", data.startswith(PARALLELS_MAGICS)),
        ("bochs", data.startswith(BOCHS_MAGIC)),
        # qemu's cloop probe compares no more than the file holds: a short file that is a
        # prefix of the magic is cloop to it.
        ("cloop", data.startswith(CLOOP_MAGIC) or (0 < len(data) < len(CLOOP_MAGIC) and CLOOP_MAGIC.startswith(data))),
    )
    found.extend(fmt for fmt, matched in checks if matched)
    return found


def tail_format(image: Image) -> str | None:
    """Formats known by their last sector: a fixed VHD's footer, a DMG's koly trailer."""
    last = image.last_sector()
    if last.startswith(VPC_MAGIC):
        return "vpc"
    if last.startswith(DMG_MAGIC) or image.read(image.size - SECTOR, 4) == DMG_MAGIC:
        return "dmg"
    return None


INSPECTORS: dict[str, t.Callable[[Image, HeaderReport], None]] = {
    "qcow": inspect_qcow,
    "qcow2": inspect_qcow,
    "qed": inspect_qed,
    "vdi": inspect_vdi,
    "vpc": inspect_vpc,
    "vhdx": inspect_vhdx,
}


def inspect_image(image: Image) -> HeaderReport:
    """Detect the format of ``image`` and read its header."""
    report = HeaderReport()
    head = image.head[:HEAD_BYTES]
    report.is_iso = any(head[offset:offset + 5] == b"CD001" for offset in ISO_MAGIC_OFFSETS)
    found = head_formats(head)
    if len(found) > 1:
        report.problems.append(f"the image is both {found[0]} and {found[1]}")
    if not found:
        tail = tail_format(image)
        found = [tail] if tail else ["raw"]
        report.magic_at_end = tail is not None
    report.detected_format = found[0]
    inspector = INSPECTORS.get(found[0])
    if inspector is not None:
        inspector(image, report)
    elif found[0] == "luks":
        report.encrypted = True
    if report.detected_format == "raw":
        # qemu sees a raw file's length rounded up to a whole sector.
        report.virtual_size = image.qemu_length
    if report.is_iso and report.detected_format != "raw":
        # An ISO's first 32 KiB are free for anything: a header there makes the
        # image read as two formats at once (CVE-2024-32498 class).
        report.problems.append(f"the image is both an ISO and {report.detected_format}")
    return report


def inspect_bytes(data: bytes, file_size: int, reader: Reader | None = None) -> HeaderReport:
    """Inspect an image from its first bytes (``reader`` fetches ranges beyond them)."""
    return inspect_image(Image(data, file_size, reader))


def path_problems(path: str) -> list[str]:
    """Problems with the path itself: missing, not a regular file or block device, unreadable."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return [f"{path} does not exist"]
    except OSError as exc:
        return [f"{path} cannot be examined: {exc.strerror}"]
    if stat.S_ISDIR(info.st_mode):
        return [f"{path} is a directory"]
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISBLK(info.st_mode)):
        return [f"{path} is not a regular file or block device"]
    if not os.access(path, os.R_OK):
        return [f"{path} is not readable"]
    return []


def inspect_path(path: str) -> HeaderReport:
    """Inspect the image at ``path`` (which ``path_problems`` found acceptable)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        data = os.pread(fd, HEAD_BYTES, 0)

        def reader(offset: int, length: int) -> bytes:
            if not 0 <= offset < size:
                return b""
            return os.pread(fd, min(length, size - offset), offset)

        return inspect_image(Image(data, size, reader))
    finally:
        os.close(fd)


# ---- the policy ----

def has_protocol(name: str) -> bool:
    """``json:{...}``, ``nbd://...``: a backing name qemu would read as a protocol (path_has_protocol)."""
    head = name.split("/", 1)[0]
    return ":" in head


def backing_path(image_path: str, backing_file: str) -> str:
    """The path qemu opens: a relative name joined to the directory of the image's path as given.

    Not normalised: the kernel resolves ``..`` after symbolic links, which
    ``os.path.realpath`` of this path reproduces and ``normpath`` would not.
    """
    if backing_file.startswith("/"):
        return backing_file
    return os.path.join(os.path.dirname(image_path), backing_file)


def inside(path: str, directories: t.Iterable[str]) -> bool:
    """Whether ``path`` lies below one of ``directories`` (both compared as given)."""
    for directory in directories:
        prefix = directory.rstrip("/") + "/"
        if path.startswith(prefix) and path != prefix:
            return True
    return False


def format_problems(report: HeaderReport, declared_format: str | None) -> list[str]:
    """The declared format against the header, and formats refused by name."""
    problems = []
    detected = report.detected_format
    if declared_format is not None and declared_format not in KNOWN_FORMATS:
        return [f"unknown image format {declared_format}"]
    if declared_format is not None and declared_format != detected:
        if declared_format == "raw":
            where = "ends with a" if report.magic_at_end else "starts with a"
            problems.append(f"declared raw, but the image {where} {detected} header"
                            " (a guest can write one into its raw disk)")
        else:
            problems.append(f"declared {declared_format}, but the header says {detected}")
    used = declared_format or detected
    if used in REFUSED_FORMATS:
        problems.append(f"{used} images are refused: {REFUSED_FORMATS[used]}")
    return problems


def header_problems(report: HeaderReport, declared_format: str | None) -> list[str]:
    """Everything wrong with one image's own header under the declared format (no chain)."""
    problems = format_problems(report, declared_format)
    if declared_format is not None and declared_format != report.detected_format:
        # qemu reads it as declared: the header it carries is refused above, not parsed.
        return problems
    problems = list(report.problems) + problems
    if report.data_file is not None:
        problems.append(f"qcow2 with an external data file ({printable(report.data_file) or 'unnamed'})")
    if report.encrypted:
        problems.append("the image is encrypted; converting it needs its secret, which is not supported")
    return problems


def backing_name_problems(name: str, backing_format: str | None) -> list[str]:
    """A backing reference qemu would not open as a plain file of an accepted format."""
    problems = []
    shown = printable(name)
    if not backing_format:
        problems.append(f"backing file {shown} has no declared format")
    elif backing_format not in ACCEPTED_FORMATS:
        problems.append(f"backing file {shown} is declared {printable(backing_format)}, which is not accepted"
                        f" ({', '.join(ACCEPTED_FORMATS)})")
    if has_protocol(name):
        problems.append(f"backing file {shown} is a protocol, not a file")
    return problems


def allowed_dirs(allowed_backing_dirs: list[str] | None, path: str) -> list[str]:
    """The allowed directories, resolved; None means the image's own directory."""
    dirs = [os.path.dirname(path)] if allowed_backing_dirs is None else allowed_backing_dirs
    return [os.path.realpath(directory) for directory in dirs]


def vet_backing(parent_path: str, name: str, dirs: list[str], seen: set[str]) -> tuple[list[str], str, str]:
    """One link of a chain: where qemu opens it, whether that is allowed. (problems, opened, real)"""
    opened = backing_path(parent_path, name)
    real = os.path.realpath(opened)
    described = (f"backing file {printable(opened)}" if opened == real
                 else f"backing file {printable(name)} (resolved: {printable(real)})")
    if len(os.fsencode(opened)) >= PATH_MAX:
        return [f"backing file path is too long ({len(opened)} characters)"], opened, real
    if not inside(real, dirs):
        return [f"{described} is outside the allowed directories ({', '.join(dirs) or 'none'})"], opened, real
    if real in seen:
        return [f"{described} makes the backing chain a loop"], opened, real
    return [printable(problem) for problem in path_problems(opened)], opened, real


def chain_problems(path: str, report: HeaderReport, dirs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Follow the backing chain as qemu will: each file's own header, with its declared format."""
    chain: list[tuple[str, str]] = []
    seen = {os.path.realpath(path)}
    parent_path, parent = path, report
    while parent.backing_file is not None:
        name, backing_format = parent.backing_file, parent.backing_format
        if len(chain) == MAX_CHAIN_DEPTH:
            return [f"backing chain longer than {MAX_CHAIN_DEPTH} files"], chain
        problems = backing_name_problems(name, backing_format)
        if problems or backing_format is None:
            return problems, chain
        problems, opened, real = vet_backing(parent_path, name, dirs, seen)
        if problems:
            return problems, chain
        seen.add(real)
        backing = inspect_path(opened)
        problems = header_problems(backing, backing_format)
        if problems:
            return [f"backing file {printable(opened)}: {problem}" for problem in problems], chain
        chain.append((real, backing_format))
        parent_path, parent = opened, backing
    return [], chain


def vet_report(report: HeaderReport, declared_format: str | None, allowed_backing_dirs: list[str] | None,
               path: str | None) -> tuple[list[str], list[tuple[str, str]]]:
    """The policy on an inspected image: (problems, chain)."""
    problems = header_problems(report, declared_format)
    header_counts = declared_format is None or declared_format == report.detected_format
    if problems or not header_counts or report.backing_file is None:
        return problems, []
    if path is None:
        # Without the image's path nothing can be resolved: a name alone is never enough.
        problems = backing_name_problems(report.backing_file, report.backing_format)
        return problems or [f"backing file {printable(report.backing_file)} cannot be resolved without the"
                            " image's path"], []
    return chain_problems(path, report, allowed_dirs(allowed_backing_dirs, path))


def safety_problems(report: HeaderReport, declared_format: str | None, *,
                    allowed_backing_dirs: list[str] | None = None, path: str | None = None) -> list[str]:
    """The safety policy; an empty list means safe to hand to qemu-img with the declared format.

    ``allowed_backing_dirs`` None means the image's own directory. With ``path``, the
    backing chain is followed and vetted file by file (see ``vet_image``).
    """
    return vet_report(report, declared_format, allowed_backing_dirs, path)[0]


def vet_image(path: str, declared_format: str | None, allowed_backing_dirs: list[str] | None = None) -> Vetting:
    """Judge the image at ``path`` with its whole backing chain.

    The chain lists the backing files qemu will open (real paths, formats): with the
    image, exactly what a confined qemu-img must be allowed to read.
    """
    problems = path_problems(path)
    if problems:
        return Vetting(problems, HeaderReport(problems=list(problems)))
    report = inspect_path(path)
    problems, chain = vet_report(report, declared_format, allowed_backing_dirs, path)
    return Vetting(problems, report, chain)


def readable_backing(vetting: Vetting, path: str, allowed_backing_dirs: list[str] | None) -> tuple[str, ...]:
    """The backing files the kernel lets qemu-img read besides the image: the vetted chain, resolved, and of
    it only what lies inside the allowed directories - so that a verdict the inspector got wrong cannot widen
    what qemu-img may read."""
    resolved = allowed_dirs(allowed_backing_dirs, path)
    return tuple(real for real, _format in vetting.chain if inside(real, resolved))
