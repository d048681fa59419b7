# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Image formats, as qemu spells them (private to kvm.images)."""

from __future__ import annotations

# What the collection converts to, and what a domain's disk must declare to be converted.
TARGET_FORMATS = ("raw", "qcow2")

# What a source may be: formats whose every field that makes qemu open another file, and whose virtual size,
# the inspector reads exactly as qemu does (held to it by the differential tests).
ACCEPTED_FORMATS = ("raw", "qcow2", "vdi", "vpc", "vhdx")
REFUSED_FORMATS = {
    "qcow": "qcow version 1 names a backing file with no format for it, which qemu then probes",
    "qed": "QED names a backing file, which qemu probes when the image gives no format for it; the inspector does"
           " not follow QED chains",
    "vmdk": "VMDK descriptors name extent and parent files, and qemu reads descriptor text more loosely than any"
            " second parser",
    "luks": "a LUKS image needs its secret, which is not supported",
    "parallels": "the inspector does not read Parallels headers as qemu does",
    "bochs": "the inspector does not read Bochs headers as qemu does",
    "cloop": "the inspector does not read cloop headers as qemu does",
    "dmg": "the inspector does not read DMG trailers as qemu does",
}
# Every format qemu detects by content; none of them is ever reported as raw.
KNOWN_FORMATS = ACCEPTED_FORMATS + tuple(REFUSED_FORMATS)
