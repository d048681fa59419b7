# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure-Python image header inspection and the safety policy (private to kvm.images).

Reads a bounded number of bytes of the image itself and never opens anything
the image names (backing files, data files, VMDK extents): a guest controls
those bytes.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import typing as t
from dataclasses import dataclass, field

HEAD_BYTES = 1 << 20
QCOW_MAGIC = b"QFI\xfb"
ISO_MAGIC_OFFSETS = (0x8001, 0x8801, 0x9001)
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
MAX_VIRTUAL_SIZE = 1 << 60
# Formats whose header says what the bytes are; finding one under a declared
# "raw" means the guest wrote it (or the definition is wrong).
STRUCTURED = ("qcow2", "qcow", "vmdk", "vhd", "vhdx", "vdi", "luks", "qed")
VMDK_SAFE_TYPES = ("monolithicSparse", "streamOptimized")

Reader = t.Callable[[int, int], bytes]


@dataclass
class HeaderReport:
    detected_format: str = "raw"
    is_iso: bool = False
    qcow2_version: int | None = None
    virtual_size: int | None = None
    cluster_bits: int | None = None
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


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from(">I", data, offset)[0]


def _u64(data: bytes, offset: int) -> int:
    return struct.unpack_from(">Q", data, offset)[0]


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _slice(data: bytes, reader: Reader | None, offset: int, length: int) -> bytes:
    if offset + length <= len(data):
        return data[offset:offset + length]
    return reader(offset, length) if reader else b""


def inspect_qcow(data: bytes, file_size: int, reader: Reader | None, report: HeaderReport) -> None:
    if len(data) < 72:
        report.detected_format = "qcow2"
        report.problems.append(f"truncated qcow2 header ({len(data)} bytes)")
        return
    version = _u32(data, 4)
    if version == 1:
        report.detected_format = "qcow"
        report.problems.append("qcow version 1 image (obsolete format)")
        return
    report.detected_format = "qcow2"
    report.qcow2_version = version
    if version not in (2, 3):
        report.problems.append(f"unknown qcow2 version {version}")
        return
    backing_offset, backing_size = _u64(data, 8), _u32(data, 16)
    report.cluster_bits = _u32(data, 20)
    report.virtual_size = _u64(data, 24)
    report.encrypted = _u32(data, 32) != 0
    report.snapshots = _u32(data, 60)
    if not 9 <= report.cluster_bits <= 21:
        report.problems.append(f"invalid qcow2 cluster size (2^{report.cluster_bits} bytes)")
    if report.virtual_size > MAX_VIRTUAL_SIZE:
        report.problems.append(f"absurd qcow2 virtual size ({report.virtual_size} bytes)")
    l1_end = _u64(data, 40) + 8 * _u32(data, 36)
    refcount_end = _u64(data, 48) + (_u32(data, 56) << min(report.cluster_bits, 21))
    if max(l1_end, refcount_end) > file_size:
        report.problems.append(f"truncated qcow2 image: its tables end at byte {max(l1_end, refcount_end)},"
                               f" the file at {file_size}")
    header_length = 72
    if version == 3:
        if len(data) < 104:
            report.problems.append("truncated qcow2 v3 header")
            return
        report.incompatible_features = _u64(data, 72)
        report.compatible_features = _u64(data, 80)
        header_length = _u32(data, 100)
        if header_length < 104 or header_length > 65536:
            report.problems.append(f"invalid qcow2 header length {header_length}")
            return
        report.compression_type = "zlib"
        if report.incompatible_features & QCOW2_INCOMPAT_COMPRESSION and header_length > 104 and len(data) > 104:
            report.compression_type = {0: "zlib", 1: "zstd"}.get(data[104], f"unknown ({data[104]})")
        unknown = report.incompatible_features & ~QCOW2_INCOMPAT_KNOWN
        if unknown:
            report.problems.append(f"unknown qcow2 incompatible feature bits {unknown:#x}")
        if report.incompatible_features & QCOW2_INCOMPAT_CORRUPT:
            report.problems.append("qcow2 corrupt bit is set")
    if backing_offset:
        if backing_size == 0 or backing_size > 1023:
            report.problems.append(f"invalid qcow2 backing file name length {backing_size}")
        else:
            raw = _slice(data, reader, backing_offset, backing_size)
            if len(raw) != backing_size:
                report.problems.append("qcow2 backing file name lies beyond the end of the image")
            report.backing_file = raw.decode("utf-8", "replace")
    read_extensions(data, reader, header_length, report)
    if report.incompatible_features & QCOW2_INCOMPAT_DATA_FILE and report.data_file is None:
        report.data_file = ""


def read_extensions(data: bytes, reader: Reader | None, offset: int, report: HeaderReport) -> None:
    """Walk the qcow2 header extensions (bounded by the first cluster)."""
    limit = min(1 << (report.cluster_bits or 16), HEAD_BYTES)
    for _extension in range(64):
        if offset + 8 > limit:
            return
        head = _slice(data, reader, offset, 8)
        if len(head) < 8:
            report.problems.append("truncated qcow2 header extension")
            return
        ext_type, length = struct.unpack(">II", head)
        if ext_type == QCOW2_EXT_END:
            return
        if offset + 8 + length > limit:
            report.problems.append(f"qcow2 header extension {ext_type:#x} runs past the first cluster")
            return
        body = _slice(data, reader, offset + 8, length)
        if ext_type == QCOW2_EXT_BACKING_FORMAT:
            report.backing_format = _text(body)
        elif ext_type == QCOW2_EXT_DATA_FILE:
            report.data_file = _text(body)
        offset += 8 + ((length + 7) & ~7)
    report.problems.append("too many qcow2 header extensions")


def inspect_vmdk(data: bytes, report: HeaderReport) -> None:
    report.detected_format = "vmdk"
    descriptor = ""
    if data.startswith(b"KDMV") and len(data) >= 44:
        desc_sector, desc_sectors = struct.unpack_from("<QQ", data, 28)
        start, end = desc_sector * 512, (desc_sector + desc_sectors) * 512
        if desc_sector and end <= len(data):
            descriptor = _text(data[start:end])
        report.virtual_size = struct.unpack_from("<Q", data, 12)[0] * 512
    else:
        descriptor = _text(data[:65536])
    match = re.search(r'^\s*createType\s*=\s*"([^"]*)"', descriptor, re.MULTILINE)
    create_type = match.group(1) if match else None
    if create_type is not None and create_type not in VMDK_SAFE_TYPES:
        report.problems.append(f"VMDK of type {create_type} (only {', '.join(VMDK_SAFE_TYPES)} are accepted)")
    for extent in re.findall(r'^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]*)"', descriptor, re.MULTILINE):
        if "/" in extent:
            report.problems.append(f"VMDK extent names a path: {extent}")


def detect_format(data: bytes, file_size: int, footer: bytes) -> str:
    if data.startswith(QCOW_MAGIC):
        return "qcow"
    if data.startswith(b"KDMV") or data.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if data.startswith(b"vhdxfile"):
        return "vhdx"
    if data.startswith(b"conectix") or footer.startswith(b"conectix"):
        return "vhd"
    if len(data) >= 68 and struct.unpack_from("<I", data, 64)[0] == 0xBEDA107F:
        return "vdi"
    if data.startswith(b"LUKS\xba\xbe"):
        return "luks"
    if data.startswith(b"QED\0"):
        return "qed"
    return "raw"


def inspect_bytes(data: bytes, file_size: int, reader: Reader | None = None, footer: bytes = b"") -> HeaderReport:
    """Inspect an image from its first bytes (``reader`` fetches ranges beyond them)."""
    report = HeaderReport()
    report.is_iso = any(data[offset:offset + 5] == b"CD001" for offset in ISO_MAGIC_OFFSETS)
    found = detect_format(data, file_size, footer)
    if found == "qcow":
        inspect_qcow(data, file_size, reader, report)
    elif found == "vmdk":
        inspect_vmdk(data, report)
    else:
        report.detected_format = found
        if found == "luks":
            report.encrypted = True
    if report.detected_format == "raw":
        report.virtual_size = file_size
    if report.is_iso and report.detected_format != "raw":
        # An ISO's first 32 KiB are free for anything: a header there makes the
        # image read as two formats at once (CVE-2024-32498 class).
        report.problems.append(f"the image is both an ISO and {report.detected_format}")
    return report


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
        footer = os.pread(fd, 512, size - 512) if size >= 512 else b""

        def reader(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset) if 0 <= offset < size else b""

        return inspect_bytes(data, size, reader, footer)
    finally:
        os.close(fd)


def has_protocol(name: str) -> bool:
    """``json:{...}``, ``nbd://...``: a backing name qemu would read as a protocol."""
    head = name.split("/", 1)[0]
    return ":" in head


def backing_path(image_path: str, backing_file: str) -> str:
    """Where qemu would look: relative names are relative to the image's directory."""
    if not backing_file.startswith("/"):
        backing_file = os.path.join(os.path.dirname(image_path), backing_file)
    return os.path.normpath(backing_file)


def inside(path: str, directories: t.Iterable[str]) -> bool:
    for directory in directories:
        directory = os.path.normpath(directory)
        if path.startswith(directory.rstrip("/") + "/"):
            return True
    return False


def safety_problems(report: HeaderReport, declared_format: str | None, *,
                    allowed_backing_dirs: list[str] | None = None, path: str | None = None) -> list[str]:
    """The safety policy; an empty list means safe to hand to qemu-img with the declared format.

    ``allowed_backing_dirs`` None means the image's own directory.
    """
    problems = list(report.problems)
    detected = report.detected_format
    if declared_format is not None and declared_format != detected:
        if declared_format == "raw" and detected in STRUCTURED:
            problems.append(f"declared raw, but the image starts with a {detected} header"
                            " (a guest can write one into its raw disk)")
        elif declared_format != "raw":
            problems.append(f"declared {declared_format}, but the header says {detected}")
    header_counts = declared_format is None or declared_format == detected
    if header_counts and report.data_file is not None:
        problems.append(f"qcow2 with an external data file ({report.data_file or 'unnamed'})")
    if header_counts and report.backing_file is not None:
        name = report.backing_file
        if not report.backing_format:
            problems.append(f"backing file {name} has no declared format")
        if has_protocol(name):
            problems.append(f"backing file {name} is a protocol, not a file")
        else:
            dirs = allowed_backing_dirs
            if dirs is None:
                dirs = [os.path.dirname(path)] if path else []
            where = backing_path(path or "/", name)
            if not inside(where, dirs):
                problems.append(f"backing file {where} is outside the allowed directories"
                                f" ({', '.join(dirs) or 'none'})")
    if header_counts and report.encrypted:
        problems.append("the image is encrypted; converting it needs its secret, which is not supported")
    return problems
