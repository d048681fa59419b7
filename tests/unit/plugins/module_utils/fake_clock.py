# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""FakeClock lives with the other fakes, in fakes.py; this import path stays for the tests that use it."""

from __future__ import annotations

from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeClock

__all__ = ["FakeClock"]
