# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a converted image goes: beside its source (private to kvm.images).

Used on the hypervisor (qemu_image_convert's default O(dest)) and by the planner alike.
"""

from __future__ import annotations

import os

EXTENSIONS = {"raw": ".raw", "qcow2": ".qcow2"}
# Extensions that name a format; anything else is kept and the new one appended.
KNOWN_EXTENSIONS = (".raw", ".img", ".qcow2", ".qcow", ".bin")


def destination_path(source: str, target_format: str) -> str:
    """Where the converted image goes: beside the source, extension replaced."""
    stem, ext = os.path.splitext(source)
    if ext.lower() not in KNOWN_EXTENSIONS:
        stem = source
    dest = stem + EXTENSIONS[target_format]
    if dest == source:
        # e.g. a raw file named *.qcow2 by mistake: never write over the source.
        dest = stem + "-" + target_format + EXTENSIONS[target_format]
    return dest
