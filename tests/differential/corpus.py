# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A seeded generator of test images: honest ones made by qemu-img, hand-made headers,
hostile backing references, and random and targeted mutations of them all.

Layout under the root: ``allowed/`` is the only allowed backing directory; ``secret/``
holds planted files that hostile images name (a leak shows as an open of one of them).
Every case carries its recipe, printed when qemu-img opens something unforeseen.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import typing as t
import zlib
from dataclasses import dataclass

from ansible_collections.kvm.images.tests.differential.tracing import ENVIRONMENT, QEMU_IMG

MIB = 1 << 20
SECRET_TEXT = b"PLANTED SECRET - an image made qemu-img read this\n"
LUKS_SECRET = "kvmimages"
INTERESTING = (0, 1, 2, 3, 7, 8, 9, 15, 16, 21, 22, 63, 64, 72, 103, 104, 105, 112, 255, 256, 511, 512, 513,
               1023, 1024, 4095, 4096, 65535, 65536, 1 << 20, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
               1 << 40, 1 << 62, 1 << 63, (1 << 64) - 1)


@dataclass
class Case:
    """One image of the corpus."""

    name: str
    recipe: str
    path: str
    true_format: str
    honest: bool = False


def crc32c(data: bytes) -> int:
    """CRC-32C, bit by bit (deliberately not the inspector's table-driven one)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _bit in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def ms_guid(text: str) -> bytes:
    """A GUID in the mixed-endian layout VHDX stores."""
    data1, data2, data3, rest = text.split("-", 3)
    return struct.pack("<IHH", int(data1, 16), int(data2, 16), int(data3, 16)) + bytes.fromhex(rest.replace("-", ""))


VHDX_METADATA_REGION = ms_guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
VHDX_ITEMS = {
    "file_parameters": ms_guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"),
    "virtual_size": ms_guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8"),
    "logical_sector": ms_guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F"),
    "physical_sector": ms_guid("CDA348C7-445D-4471-9CC9-E9885251C556"),
}
VHDX_PARENT_LOCATOR = ms_guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")


def sparse_copy(source: str, target: str) -> None:
    """Copy a mostly empty image without writing its holes (mutants are many copies)."""
    chunk = 1 << 16
    with open(source, "rb") as reading, open(target, "wb") as writing:
        while True:
            data = reading.read(chunk)
            if not data:
                break
            if data.count(0) == len(data):
                writing.seek(len(data), os.SEEK_CUR)
            else:
                writing.write(data)
        writing.truncate()


def vpc_fix_checksum(footer: bytearray) -> None:
    struct.pack_into(">I", footer, 64, 0)
    struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)


class CorpusBuilder:
    """Makes the corpus under ``root``; ``mutants`` is the number of mutations per base image."""

    def __init__(self, root: str, seed: int, mutants: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.mutants = mutants
        self.root = root
        self.allowed = os.path.join(root, "allowed")
        self.secret = os.path.join(root, "secret")
        self.cases: list[Case] = []
        self.bases: list[Case] = []
        self.serial = 0
        for directory in (self.allowed, self.secret, os.path.join(self.allowed, "sub"), os.path.join(root, "out")):
            os.makedirs(directory, exist_ok=True)

    # ---- helpers ----

    def fresh(self, stem: str, directory: str | None = None) -> str:
        """A new file name in ``directory`` (the allowed one by default)."""
        self.serial += 1
        return os.path.join(directory or self.allowed, f"{self.serial:04d}-{stem}")

    def qemu_img(self, *args: str) -> None:
        """qemu-img create/convert for the corpus (never the command under test)."""
        for attempt in range(5):
            done = subprocess.run([t.cast(str, QEMU_IMG), *args], capture_output=True, text=True,
                                  env=dict(os.environ, **ENVIRONMENT), check=False)
            if done.returncode == 0:
                return
            # LUKS key derivation times itself and now and then fails on a busy machine.
            if "CPU usage" not in done.stderr or attempt == 4:
                raise RuntimeError(f"qemu-img {' '.join(args)} failed: {done.stderr.strip()}")

    def add(self, path: str, recipe: str, true_format: str, honest: bool = False, base: bool = False) -> Case:
        case = Case(os.path.basename(path), recipe, path, true_format, honest)
        self.cases.append(case)
        if base:
            self.bases.append(case)
        return case

    def random_size(self) -> int:
        return self.rng.choice([64 << 10, MIB, 3 * MIB + 512, 3000001, 10 * MIB, 33 * MIB - 512])

    def write(self, path: str, data: bytes, offset: int = 0) -> None:
        mode = "r+b" if os.path.exists(path) else "wb"
        with open(path, mode) as image:
            image.seek(offset)
            image.write(data)

    def read(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        with open(path, "rb") as image:
            image.seek(offset)
            return image.read(length)

    def build(self) -> list[Case]:
        self.plant_secrets()
        self.honest_images()
        self.images_with_data()
        self.handmade_images()
        self.backing_chains()
        self.symlinked_chains()
        self.odd_backing_names()
        self.forged_raw_disks()
        self.mutations()
        return self.cases

    # ---- the planted secrets ----

    def plant_secrets(self) -> None:
        """Host files the images try to name, outside the allowed directory."""
        self.shadow = os.path.join(self.secret, "shadow")
        self.write(self.shadow, SECRET_TEXT * 1024)
        self.secret_base = os.path.join(self.secret, "base.raw")
        self.write(self.secret_base, SECRET_TEXT * 2048)
        # A qcow2 outside that names yet another secret: a backing file's own backing file.
        self.secret_qcow2 = os.path.join(self.secret, "relay.qcow2")
        self.qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", self.shadow, self.secret_qcow2)
        self.base_raw = os.path.join(self.allowed, "base.raw")
        self.write(self.base_raw, os.urandom(MIB))
        self.sub_base_raw = os.path.join(self.allowed, "sub", "base.raw")
        self.write(self.sub_base_raw, os.urandom(MIB))

    # ---- honest images, one for each format qemu-img creates ----

    def qcow2_options(self) -> str:
        rng = self.rng
        compat = rng.choice(["0.10", "1.1"])
        options = [f"compat={compat}", f"cluster_size={rng.choice([512, 4096, 65536, 2 * MIB])}"]
        if compat == "1.1":
            options.append(f"lazy_refcounts={rng.choice(['on', 'off'])}")
            options.append(f"refcount_bits={rng.choice([1, 16, 64])}")
            if rng.random() < 0.3:
                options.append("compression_type=zstd")
        return ",".join(options)

    def honest_images(self) -> None:
        rng = self.rng
        specs: list[tuple[str, list[str], str]] = [
            ("raw", [], "raw"),
            ("raw", [], "raw"),
            ("qcow2", ["-o", self.qcow2_options()], "qcow2"),
            ("qcow2", ["-o", self.qcow2_options()], "qcow2"),
            ("qcow2", ["-o", "extended_l2=on,cluster_size=65536"], "qcow2"),
            ("qcow2", ["-o", "preallocation=metadata"], "qcow2"),
            ("qcow", [], "qcow"),
            ("qed", ["-o", f"cluster_size={rng.choice([4096, 65536])}"], "qed"),
            ("vdi", ["-o", f"static={rng.choice(['on', 'off'])}"], "vdi"),
            ("vdi", [], "vdi"),
            ("vpc", ["-o", "subformat=dynamic"], "vpc"),
            ("vpc", ["-o", "subformat=fixed"], "vpc"),
            ("vpc", ["-o", "subformat=dynamic,force_size=on"], "vpc"),
            ("vpc", ["-o", "subformat=fixed,force_size=on"], "vpc"),
            ("vhdx", ["-o", f"block_size={rng.choice([MIB, 8 * MIB, 32 * MIB])}"], "vhdx"),
            ("vhdx", ["-o", "subformat=fixed"], "vhdx"),
            ("parallels", [], "parallels"),
        ]
        for subformat in ("monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                          "streamOptimized"):
            specs.append(("vmdk", ["-o", f"subformat={subformat}"], "vmdk"))
        for fmt, options, true_format in specs:
            size = self.random_size()
            if fmt == "vhdx" and "subformat=fixed" in options:
                size = min(size, 3 * MIB)
            path = self.fresh(f"honest.{fmt}")
            self.qemu_img("create", "-q", "-f", fmt, *options, path, str(size))
            recipe = f"qemu-img create -f {fmt} {' '.join(options)} {path} {size}"
            self.add(path, recipe, true_format, honest=True, base=fmt in ("qcow2", "vdi", "vpc", "vhdx"))
        luks = self.fresh("honest.luks")
        self.qemu_img("create", "-q", "--object", f"secret,id=sec0,data={LUKS_SECRET}", "-f", "luks",
                      "-o", "key-secret=sec0,iter-time=10", luks, str(MIB))
        self.add(luks, f"qemu-img create -f luks (secret) {luks} 1M", "luks", honest=True)
        luks_qcow2 = self.fresh("honest-luks.qcow2")
        self.qemu_img("create", "-q", "--object", f"secret,id=sec0,data={LUKS_SECRET}", "-f", "qcow2",
                      "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", luks_qcow2, str(MIB))
        self.add(luks_qcow2, f"qemu-img create -f qcow2 -o encrypt.format=luks {luks_qcow2} 1M", "qcow2")
        # qemu sees a file's length rounded up to a sector, and zeros past its end: a fixed VHD
        # cut inside its footer's zero tail still has its footer, where qemu looks.
        cut = self.fresh("cut-footer.vhd")
        self.qemu_img("create", "-q", "-f", "vpc", "-o", "subformat=fixed", cut, str(self.random_size()))
        os.truncate(cut, os.path.getsize(cut) - 400)
        self.add(cut, "a fixed VHD whose last 400 bytes (zeros of its footer) were cut off", "vpc", honest=True)
        for size in (0, 1, 511, 1000001):
            path = self.fresh(f"odd-{size}.raw")
            self.write(path, os.urandom(size))
            self.add(path, f"{size} random bytes", "raw", honest=True)
        # qemu-img's other creators of VHDs, and some it does not know: their size is read
        # by geometry or by current_size, differently in qemu 7.2 and 10.0.
        for creator in (b"vpc ", b"win ", b"d2v ", b"CTXS", b"tap\0", b"wa\0\0", b"qemu", b"qem2", b"VBox",
                        b"\0\0\0\0"):
            path = self.fresh("creator.vhd")
            subformat = rng.choice(["fixed", "dynamic"])
            self.qemu_img("create", "-q", "-f", "vpc", "-o", f"subformat={subformat}", path, str(self.random_size()))
            self.set_vpc_creator(path, creator)
            self.add(path, f"qemu-img create -f vpc -o subformat={subformat}, creator {creator!r}", "vpc",
                     base=creator in (b"win ", b"VBox"))

    def set_vpc_creator(self, path: str, creator: bytes) -> None:
        size = os.path.getsize(path)
        for offset in sorted({0, size - 512}):
            footer = bytearray(self.read(path, offset, 512))
            if footer.startswith(b"conectix"):
                footer[28:32] = creator
                vpc_fix_checksum(footer)
                self.write(path, bytes(footer), offset)

    def images_with_data(self) -> None:
        """Conversions of a raw disk with data: allocated clusters, blocks, BAT entries."""
        source = os.path.join(self.root, "data.raw")
        self.write(source, os.urandom(MIB + 4096) + bytes(MIB) + os.urandom(8192))
        for fmt, options in (("qcow2", []), ("qcow2", ["-c"]), ("vdi", []), ("vpc", []), ("vhdx", []),
                             ("qed", []), ("vmdk", ["-o", "subformat=streamOptimized"]), ("parallels", []),
                             ("qcow", [])):
            path = self.fresh(f"data.{fmt}")
            self.qemu_img("convert", "-f", "raw", "-O", fmt, *options, source, path)
            self.add(path, f"qemu-img convert -f raw -O {fmt} {' '.join(options)} data.raw {path}", fmt, honest=True,
                     base=fmt in ("qcow2", "vdi", "vpc", "vhdx"))

    # ---- headers qemu-img cannot create ----

    def handmade_images(self) -> None:
        """Bochs, cloop and DMG headers, as those tools would write them."""
        bochs = bytearray(512)
        bochs[0:32] = b"Bochs Virtual HD Image".ljust(32, b"\0")
        bochs[32:48] = b"Redolog".ljust(16, b"\0")
        bochs[48:64] = b"Growing".ljust(16, b"\0")
        # version 2, header 512 bytes, 16 catalog entries, 512-byte bitmaps, 64 KiB extents, 1 MiB disk
        struct.pack_into("<IIIIIIQ", bochs, 64, 0x00020000, 512, 16, 512, 65536, 0, MIB)
        path = self.fresh("handmade.bochs")
        self.write(path, bytes(bochs) + b"\xff" * 64 + bytes(448))
        self.add(path, "hand-made Bochs redolog header, 1 MiB, nothing allocated", "bochs", honest=True)

        block = zlib.compress(os.urandom(2048) + bytes(2048))
        magic = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
        first = 128 + 8 + 8 * 3
        header = magic.ljust(128, b"\0") + struct.pack(">II", 4096, 2)
        header += struct.pack(">QQQ", first, first + len(block), first + 2 * len(block))
        path = self.fresh("handmade.cloop")
        self.write(path, header + block + block)
        self.add(path, "hand-made cloop v2.0 image, two 4 KiB blocks", "cloop", honest=True)

        koly = bytearray(512)
        koly[0:4] = b"koly"
        struct.pack_into(">III", koly, 4, 4, 512, 1)
        path = self.fresh("handmade.dmg")
        self.write(path, os.urandom(4096) + bytes(koly))
        self.add(path, "4 KiB of data and a DMG koly trailer", "dmg")

    # ---- backing chains ----

    def overlay(self, backing: str, backing_format: str, stem: str, name: str | None = None,
                directory: str | None = None, options: t.Sequence[str] = ()) -> str:
        """A qcow2 over ``backing`` named as ``name`` (the backing's path by default)."""
        path = self.fresh(stem, directory)
        self.qemu_img("create", "-q", "-f", "qcow2", *options, "-u", "-F", backing_format, "-b", name or backing, path,
                      str(os.path.getsize(backing) if backing_format == "raw" else MIB))
        return path

    def backing_chains(self) -> None:
        rng = self.rng
        base = self.base_raw
        for name in (base, "base.raw", "./base.raw", "sub/../base.raw", "sub/base.raw"):
            path = self.overlay(base, "raw", "over-raw.qcow2", name)
            self.add(path, f"qcow2 -F raw -b {name!r}", "qcow2", honest=True, base=name == "base.raw")
        for fmt in ("vdi", "vpc", "vhdx", "qcow2"):
            lower = self.fresh(f"lower.{fmt}")
            self.qemu_img("create", "-q", "-f", fmt, lower, str(MIB))
            path = self.overlay(lower, fmt, f"over-{fmt}.qcow2", os.path.basename(lower))
            self.add(path, f"qcow2 -F {fmt} -b {os.path.basename(lower)} (a {fmt} made by qemu-img)", "qcow2",
                     honest=True)
        for depth in (2, 3, 3):
            lower, lower_format, recipe = base, "raw", "base.raw (raw)"
            for level in range(depth):
                name = os.path.basename(lower) if rng.random() < 0.5 else lower
                lower = self.overlay(lower, lower_format, f"chain{depth}-{level}.qcow2", name,
                                     options=["-o", self.qcow2_options()])
                lower_format, recipe = "qcow2", f"{recipe} <- {name!r}"
            self.add(lower, f"backing chain of depth {depth}: {recipe}", "qcow2", honest=True)
        deep = base
        deep_format = "raw"
        for level in range(17):
            deep = self.overlay(deep, deep_format, f"deep-{level}.qcow2", os.path.basename(deep))
            deep_format = "qcow2"
        self.add(deep, "a chain of 17 qcow2 overlays over base.raw", "qcow2")
        for fmt, options in (("qed", []), ("qcow", []), ("vmdk", [])):
            path = self.fresh(f"over-raw.{fmt}")
            lower = base
            if fmt == "vmdk":
                lower = self.fresh("lower.vmdk")
                self.qemu_img("create", "-q", "-f", "vmdk", lower, str(MIB))
            self.qemu_img("create", "-q", "-f", fmt, *options, "-u", "-F", "vmdk" if fmt == "vmdk" else "raw",
                          "-b", lower, path, str(MIB))
            self.add(path, f"{fmt} with a backing file {lower}", fmt, honest=True)
        data_file = self.fresh("scratch-data.bin")
        path = self.fresh("datafile.qcow2")
        self.qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={data_file}", path, str(MIB))
        self.add(path, f"qcow2 with an external data file {data_file}", "qcow2")
        hostile = (
            (self.shadow, "raw", "names the planted secret"),
            (os.path.relpath(self.shadow, self.allowed), "raw", "names the secret by ../"),
            (self.secret_qcow2, "qcow2", "names a qcow2 outside that names the secret"),
            ("base.raw", "qcow2", "declares its raw backing file qcow2"),
            ("missing.raw", "raw", "names a missing file"),
            ("base.raw", "vmdk", "declares its backing file vmdk"),
            ("base.raw", "file", "declares its backing format as a protocol driver"),
        )
        for name, backing_format, why in hostile:
            path = self.overlay(base, "raw", "hostile.qcow2", name)
            self.forge_qcow2(path, name.encode(), backing_format.encode())
            self.add(path, f"qcow2 that {why}: -F {backing_format} -b {name}", "qcow2")
        # A qcow2 inside the allowed directory whose backing file names the secret: the top
        # image is innocent, its backing file is not.
        middle = self.overlay(base, "raw", "middle.qcow2", self.shadow)
        top = self.overlay(middle, "qcow2", "top.qcow2", os.path.basename(middle))
        self.add(top, f"qcow2 over {os.path.basename(middle)}, which names {self.shadow}", "qcow2")
        # A raw backing file that carries a qcow2 header naming the secret: qemu reads it as raw.
        carrier = self.fresh("carrier.raw")
        self.write(carrier, self.read(self.secret_qcow2, 0, 65536) + bytes(MIB))
        top = self.overlay(carrier, "raw", "over-carrier.qcow2", os.path.basename(carrier))
        self.add(top, "qcow2 over a raw backing file carrying a qcow2 header that names the secret", "qcow2")
        # Loops: an image naming itself, and two naming each other.
        self_loop = self.overlay(base, "raw", "loop-self.qcow2", "x")
        self.forge_qcow2(self_loop, os.path.basename(self_loop).encode(), b"qcow2")
        self.add(self_loop, "qcow2 naming itself as its qcow2 backing file", "qcow2")
        first = self.overlay(base, "raw", "loop-a.qcow2", "x")
        second = self.overlay(base, "raw", "loop-b.qcow2", os.path.basename(first))
        self.forge_qcow2(second, os.path.basename(first).encode(), b"qcow2")
        self.forge_qcow2(first, os.path.basename(second).encode(), b"qcow2")
        self.add(first, "two qcow2 naming each other", "qcow2")

    def symlinked_chains(self) -> None:
        """Symbolic links inside the allowed directory: to files inside, to files outside, to directories."""
        inside_link = self.fresh("link-to-base.raw")
        os.symlink(self.base_raw, inside_link)
        outside_link = self.fresh("link-to-secret.raw")
        os.symlink(self.shadow, outside_link)
        relative_out = self.fresh("relative-link-to-secret.raw")
        os.symlink(os.path.relpath(self.shadow, self.allowed), relative_out)
        secret_dir = self.fresh("secret-dir")
        os.symlink(self.secret, secret_dir)
        sub_dir = self.fresh("sub-dir")
        os.symlink(os.path.join(self.allowed, "sub"), sub_dir)
        names = (
            (os.path.basename(inside_link), "a link to base.raw inside"),
            (os.path.basename(outside_link), "a link to the secret"),
            (os.path.basename(relative_out), "a relative link to the secret"),
            (os.path.basename(secret_dir) + "/base.raw", "a file under a link to the secret directory"),
            (os.path.basename(sub_dir) + "/base.raw", "a file under a link to a directory inside"),
            (os.path.basename(sub_dir) + "/../base.raw", "'..' after a link to a directory inside"),
            (os.path.basename(secret_dir) + "/../allowed/base.raw", "'..' after a link to the secret directory"),
        )
        for name, why in names:
            path = self.overlay(self.base_raw, "raw", "over-link.qcow2", name)
            self.add(path, f"qcow2 -F raw -b {name!r}: {why}", "qcow2")
        # An image reached through a linked directory: qemu joins a relative backing name to
        # the directory of the path it was given, not to the link's target.
        inner = self.overlay(self.sub_base_raw, "raw", "in-sub.qcow2", "base.raw", os.path.join(self.allowed, "sub"))
        through = os.path.join(sub_dir, os.path.basename(inner))
        self.add(through, f"qcow2 with backing 'base.raw' opened through the linked directory {sub_dir}", "qcow2")
        # The middle of a chain is a link to a qcow2 in sub/ whose backing name is relative:
        # qemu opens it beside the link (allowed/base.raw), not beside its target.
        middle_link = self.fresh("middle-link.qcow2")
        os.symlink(inner, middle_link)
        top = self.overlay(middle_link, "qcow2", "over-middle-link.qcow2", os.path.basename(middle_link))
        self.add(top, f"qcow2 over {os.path.basename(middle_link)}, a link to sub/ whose qcow2 names 'base.raw'",
                 "qcow2")
        # The image itself is a link into sub/: its relative backing resolves beside the link.
        image_link = self.fresh("image-link.qcow2")
        os.symlink(inner, image_link)
        self.add(image_link, "a link to sub/in-sub.qcow2 (backing 'base.raw')", "qcow2")

    # ---- backing names with odd bytes ----

    def forge_qcow2(self, path: str, name: bytes | None, backing_format: bytes | None, *,
                    extensions: t.Sequence[tuple[int, bytes]] = (), name_offset: int | None = None,
                    name_length: int | None = None, after_name: t.Sequence[tuple[int, bytes]] = ()) -> None:
        """Rewrite a qcow2's header extensions and backing name by hand (what a hostile tool writes)."""
        header = bytearray(self.read(path, 0, 4096))
        version = struct.unpack_from(">I", header, 4)[0]
        offset = struct.unpack_from(">I", header, 100)[0] if version == 3 else 72
        area = bytearray()
        exts = list(extensions)
        if backing_format is not None:
            exts.append((0xE2792ACA, backing_format))
        for ext_type, body in exts:
            area += struct.pack(">II", ext_type, len(body)) + body + bytes(-len(body) % 8)
        area += bytes(8)
        start = offset + len(area) if name_offset is None else name_offset
        header[offset:offset + len(area)] = area
        if name is None:
            struct.pack_into(">QI", header, 8, 0, 0)
        else:
            struct.pack_into(">QI", header, 8, start, len(name) if name_length is None else name_length)
        self.write(path, bytes(header))
        if name is not None:
            self.write(path, name, start)
            tail = bytearray()
            for ext_type, body in after_name:
                tail += struct.pack(">II", ext_type, len(body)) + body + bytes(-len(body) % 8)
            self.write(path, bytes(tail), start + len(name) + (-len(name) % 8))

    def odd_backing_names(self) -> None:
        """Names qemu and a careless parser read differently, each beside a file it could mean."""
        allowed, secret = self.allowed.encode(), self.secret.encode()
        odd_files = [b"with spaces.raw", b"new\nline.raw", b"per%cent.raw", b"./colon:in.raw", b"colon:in.raw",
                     "ünïcødé.raw".encode(), b"\xff\xfe-not-utf8.raw", b"tab\there.raw", b"-leading-dash.raw"]
        for name in odd_files:
            target = os.path.join(self.allowed, os.fsdecode(name))
            if not os.path.exists(target):
                shutil.copyfile(self.base_raw, target)
        names: list[tuple[bytes, bytes | None, str]] = [(name, b"raw", "a file with odd bytes in its name")
                                                        for name in odd_files]
        names += [
            (secret + b"/shadow\0/../../allowed/base.raw", b"raw", "NUL: qemu reads only the secret"),
            (b"\0" + allowed + b"/base.raw", b"raw", "NUL first: qemu reads an empty name"),
            (allowed + b"/base.raw\0junk", b"raw", "NUL after an allowed name"),
            (b"//" + secret.lstrip(b"/") + b"/shadow", b"raw", "leading // to the secret"),
            (b"//" + allowed.lstrip(b"/") + b"/base.raw", b"raw", "leading // inside"),
            (b"../" + os.path.basename(self.secret).encode() + b"/shadow", b"raw", ".. to the secret"),
            (b"sub/../../" + os.path.basename(self.secret).encode() + b"/shadow", b"raw", "sub/../.. to the secret"),
            (b"json:{\"file.filename\":\"" + secret + b"/shadow\"}", b"raw", "a json: pseudo-protocol"),
            (b"file:" + secret + b"/shadow", b"raw", "the file: protocol"),
            (b"file:" + allowed + b"/base.raw", b"raw", "the file: protocol inside"),
            (b"nbd://127.0.0.1:1/x", b"raw", "an nbd URL"),
            (b"./" * 507 + b"base.raw", b"raw", "a 1022-byte name"),
            (b"./" * 508 + b"base.raw", b"raw", "a 1024-byte name (too long for qemu)"),
            (b"base.raw", b"raw\0qcow2", "backing format 'raw' cut at a NUL"),
            (b"base.raw", b"qcow2\0", "backing format 'qcow2' with a NUL"),
            (b"base.raw", b"RAW", "backing format in capitals"),
            (b"base.raw", b"host_device", "backing format of a protocol driver"),
            (b"base.raw", b"raw" + b" " * 13, "backing format 16 bytes long"),
            (b"base.raw", None, "no backing format extension"),
        ]
        for name, backing_format, why in names:
            path = self.overlay(self.base_raw, "raw", "odd-name.qcow2", "x")
            self.forge_qcow2(path, name, backing_format)
            self.add(path, f"qcow2 with backing name {name!r} format {backing_format!r}: {why}", "qcow2")
        layouts: list[tuple[dict[str, t.Any], str]] = [
            ({"extensions": [(0xE2792ACA, b"qcow2")]}, "two backing format extensions: qcow2, then raw"),
            ({"after_name": [(0xE2792ACA, b"qcow2")]}, "a second backing format extension after the name"),
            ({"extensions": [(0x44415441, secret + b"/shadow")]}, "a data file extension without the feature bit"),
            ({"extensions": [(0x12345678, b"x" * 40)] * 3}, "unknown extensions"),
            ({"name_offset": 65536 - 8}, "the name at the end of the first cluster"),
            ({"name_offset": 65536 - 4}, "the name crossing the end of the first cluster"),
            ({"name_offset": 65536 + 512}, "the name beyond the first cluster"),
            ({"name_length": 2000}, "a name length beyond qemu's limit"),
            ({"name_length": 0}, "a name length of zero"),
        ]
        for options, why in layouts:
            path = self.overlay(self.base_raw, "raw", "odd-layout.qcow2", "x")
            self.forge_qcow2(path, b"base.raw", b"raw", **options)
            self.add(path, f"qcow2 with backing 'base.raw': {why}", "qcow2")

    # ---- raw disks whose guest wrote a header ----

    def forged_raw_disks(self) -> None:
        """Raw disks carrying another format's header (declared raw they must be refused)."""
        headers = [case for case in self.cases if case.honest and case.true_format != "raw"]
        for case in self.rng.sample(headers, min(12, len(headers))):
            path = self.fresh(f"forged-{case.true_format}.raw")
            self.write(path, bytes(4 * MIB))
            size = os.path.getsize(case.path)
            if case.true_format == "vpc" and self.read(case.path, 0, 8) != b"conectix":
                self.write(path, self.read(case.path, size - 512, 512), 4 * MIB - 512)
            else:
                self.write(path, self.read(case.path, 0, 64 << 10))
            self.add(path, f"a 4 MiB raw disk carrying the header of {case.name} ({case.true_format})", "raw")

    # ---- mutations ----

    def mutations(self) -> None:
        mutators: dict[str, t.Callable[[bytearray, str], str]] = {
            "qcow2": self.mutate_qcow2, "vdi": self.mutate_vdi, "vpc": self.mutate_vpc, "vhdx": self.mutate_vhdx,
        }
        for base in list(self.bases):
            for index in range(self.mutants):
                path = self.fresh(f"mutant-{index}-{base.name}")
                sparse_copy(base.path, path)
                with open(path, "r+b") as image:
                    data = bytearray(image.read())
                    what = mutators[base.true_format](data, path)
                    image.seek(0)
                    image.write(data)
                    image.truncate(len(data))
                self.add(path, f"{base.recipe}, then {what}", base.true_format)

    def value(self, width: int, current: int) -> int:
        rng = self.rng
        limit = 1 << (8 * width)
        choice = rng.random()
        if choice < 0.5:
            return rng.choice([value for value in INTERESTING if value < limit])
        if choice < 0.7:
            return (current + rng.choice([-512, -1, 1, 512, 4096])) % limit
        if choice < 0.85:
            return current ^ (1 << rng.randrange(8 * width))
        return rng.randrange(limit)

    def set_field(self, data: bytearray, offset: int, width: int, order: str, label: str) -> str:
        fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
        current = struct.unpack_from(order + fmt, data, offset)[0]
        value = self.value(width, current)
        struct.pack_into(order + fmt, data, offset, value)
        return f"{label} {current:#x} -> {value:#x}"

    def random_bytes(self, data: bytearray, start: int, end: int) -> str:
        changes = []
        for _change in range(self.rng.randint(1, 4)):
            offset = self.rng.randrange(start, min(end, len(data)))
            data[offset] = self.rng.randrange(256)
            changes.append(f"{offset}={data[offset]:#x}")
        return "random bytes " + ", ".join(changes)

    def mutate_qcow2(self, data: bytearray, path: str) -> str:
        fields = [(4, 4, "version"), (8, 8, "backing offset"), (16, 4, "backing name length"), (20, 4, "cluster bits"),
                  (24, 8, "size"), (32, 4, "crypt method"), (36, 4, "L1 size"), (40, 8, "L1 offset"),
                  (48, 8, "refcount table offset"), (56, 4, "refcount table clusters"), (60, 4, "snapshots"),
                  (72, 8, "incompatible features"), (80, 8, "compatible features"), (96, 4, "refcount order"),
                  (100, 4, "header length"), (104, 1, "compression type")]
        if self.rng.random() < 0.25:
            return self.random_bytes(data, 0, 512)
        offset, width, label = self.rng.choice(fields)
        return self.set_field(data, offset, width, ">", label)

    def mutate_vdi(self, data: bytearray, path: str) -> str:
        fields = [(68, 4, "version"), (72, 4, "header size"), (76, 4, "image type"), (340, 4, "block map offset"),
                  (344, 4, "data offset"), (360, 4, "sector size"), (368, 8, "disk size"), (376, 4, "block size"),
                  (384, 4, "blocks in image"), (388, 4, "blocks allocated"), (424, 8, "link UUID"),
                  (440, 8, "parent UUID")]
        if self.rng.random() < 0.2:
            return self.random_bytes(data, 64, 512)
        offset, width, label = self.rng.choice(fields)
        return self.set_field(data, offset, width, "<", label)

    def mutate_vpc(self, data: bytearray, path: str) -> str:
        rng = self.rng
        dynamic = data[:8] == b"conectix"
        offset = 0 if dynamic else len(data) - 512
        footer = bytearray(data[offset:offset + 512])
        fields = [(8, 4, "features"), (12, 4, "version"), (16, 8, "data offset"), (40, 8, "original size"),
                  (48, 8, "current size"), (56, 2, "cylinders"), (58, 1, "heads"), (59, 1, "sectors"),
                  (60, 4, "disk type")]
        if rng.random() < 0.3:
            creator = rng.choice([b"vpc ", b"win ", b"d2v ", b"CTXS", b"tap\0", b"wa\0\0", b"qemu", b"qem2", b"xyz "])
            footer[28:32] = creator
            what = f"creator {creator!r}"
        elif dynamic and rng.random() < 0.3:
            header = struct.unpack_from(">Q", footer, 16)[0]
            dyn_fields = [(16, 8, "BAT offset"), (28, 4, "max table entries"), (32, 4, "block size")]
            field_offset, width, label = rng.choice(dyn_fields)
            what = "dynamic header " + self.set_field(data, header + field_offset, width, ">", label)
        else:
            field_offset, width, label = rng.choice(fields)
            what = self.set_field(footer, field_offset, width, ">", label)
        if rng.random() < 0.85:
            vpc_fix_checksum(footer)
            what += " (checksum fixed)"
        data[offset:offset + 512] = footer
        if dynamic and rng.random() < 0.5:
            data[-512:] = footer
        return what

    def vhdx_layout(self, data: bytes) -> tuple[int, dict[str, int]]:
        """The metadata region's offset and the file offsets of the items the corpus mutates."""
        table = data[192 << 10:(192 << 10) + (64 << 10)]
        metadata = 0
        for index in range(struct.unpack_from("<I", table, 8)[0]):
            guid, offset = struct.unpack_from("<16sQ", table, 16 + 32 * index)
            if guid == VHDX_METADATA_REGION:
                metadata = offset
        items = {}
        count = struct.unpack_from("<H", data, metadata + 10)[0]
        for index in range(count):
            guid, offset = struct.unpack_from("<16sI", data, metadata + 32 + 32 * index)
            for label, item in VHDX_ITEMS.items():
                if guid == item:
                    items[label] = metadata + offset
        return metadata, items

    def mutate_vhdx(self, data: bytearray, path: str) -> str:
        rng = self.rng
        metadata, items = self.vhdx_layout(bytes(data))
        choice = rng.random()
        if choice < 0.45:
            label = rng.choice(list(items))
            if label == "virtual_size":
                value = rng.choice([rng.randrange(1, 64) * MIB, rng.randrange(1, 1 << 20) * 512,
                                    rng.randrange(1, 1 << 30), 1 << 46, (1 << 64) - 512])
                struct.pack_into("<Q", data, items[label], value)
                return f"virtual size {value}"
            if label == "file_parameters":
                offset = items[label] + rng.choice([0, 4])
                return self.set_field(data, offset, 4, "<", "file parameters word")
            value = rng.choice([512, 4096, 1024, 0, 513])
            struct.pack_into("<I", data, items[label], value)
            return f"{label} {value}"
        if choice < 0.6:
            # A parent locator entry appended to the metadata table.
            count = struct.unpack_from("<H", data, metadata + 10)[0]
            struct.pack_into("<16sIII", data, metadata + 32 + 32 * count, VHDX_PARENT_LOCATOR, 65536 + 4096, 64, 4)
            struct.pack_into("<H", data, metadata + 10, count + 1)
            return "a parent locator metadata item"
        if choice < 0.8:
            table = (192 << 10)
            count = struct.unpack_from("<I", data, table + 8)[0]
            entry = table + 16 + 32 * rng.randrange(max(count, 1))
            offset, width, label = rng.choice([(entry + 16, 8, "region offset"), (entry + 24, 4, "region length"),
                                               (entry + 28, 4, "region flags"), (table + 8, 4, "region count")])
            what = "region table " + self.set_field(data, offset, width, "<", label)
            block = data[table:table + (64 << 10)]
            block[4:8] = bytes(4)
            struct.pack_into("<I", data, table + 4, crc32c(bytes(block)))
            return what + " (checksum fixed)"
        header = rng.choice([64 << 10, 128 << 10])
        offset, width, label = rng.choice([(header + 8, 8, "sequence number"), (header + 48, 8, "log GUID"),
                                           (header + 64, 2, "log version"), (header + 66, 2, "version"),
                                           (header + 68, 4, "log length"), (header + 72, 8, "log offset")])
        what = f"header at {header}: " + self.set_field(data, offset, width, "<", label)
        block = data[header:header + 4096]
        block[4:8] = bytes(4)
        struct.pack_into("<I", data, header + 4, crc32c(bytes(block)))
        return what + " (checksum fixed)"
