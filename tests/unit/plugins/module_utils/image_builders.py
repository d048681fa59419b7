# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small images on disk, as the header inspector reads them, and the request to convert one."""

from __future__ import annotations

import os
import struct

from ansible_collections.kvm.images.plugins.module_utils.image_convert import Request


def raw_image(path, size=1 << 20):
    path.write_bytes(b"\x5a" * 4096)
    os.truncate(path, size)
    return str(path)


def qcow2_image(path, size=1 << 20, snapshots=0):
    header = bytearray(4096)
    struct.pack_into(">4sIQIIQIIQQIIQ", header, 0, b"QFI\xfb", 3, 0, 0, 16, size, 0, 0, 0x30000, 0x10000, 1,
                     snapshots, 0)
    struct.pack_into(">QQQII", header, 72, 0, 0, 0, 4, 112)
    path.write_bytes(bytes(header))
    os.truncate(path, 0x40000)
    return str(path)


def request(src, **kwargs):
    return Request(src=src, src_format=kwargs.pop("src_format", "raw"), dest=kwargs.pop("dest", None),
                   format=kwargs.pop("format", "qcow2"), **kwargs)
