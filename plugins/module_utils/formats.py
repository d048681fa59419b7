# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Image formats, as qemu spells them (private to kvm.images)."""

from __future__ import annotations

# What the collection converts to, and what a domain's disk must declare to be converted.
TARGET_FORMATS = ("raw", "qcow2")

# What a source may be declared as: every other format is refused by name (image_safety).
SOURCE_FORMATS = ("raw", "qcow2", "qcow", "vmdk", "vdi", "vhdx", "vpc", "qed", "luks")
