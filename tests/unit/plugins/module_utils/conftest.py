# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the unit tests of module_utils."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils import block_copy


@pytest.fixture
def live_disk_from_the_fake(monkeypatch):
    """block_copy reads a disk from the live XML; a MirroringDomain answers from its own state."""
    monkeypatch.setattr(block_copy, "live_disk", lambda dom, target: dom.live_disk(target))
