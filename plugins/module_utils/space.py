# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The free space a new image must leave: what qemu-img measure says plus a margin (private to kvm.images)."""

from __future__ import annotations

SPACE_MARGIN_RATIO = 0.05
SPACE_MARGIN_BYTES = 64 << 20


def with_margin(required: int, ratio: float = SPACE_MARGIN_RATIO, margin_bytes: int = SPACE_MARGIN_BYTES) -> int:
    """Bytes to demand free for ``required`` bytes of new images."""
    return int(required * (1 + ratio)) + margin_bytes
