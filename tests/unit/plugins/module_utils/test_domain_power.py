# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.domain_power import PowerControl, power_action
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fake_clock import FakeClock


class FakeDomain:
    """A guest that turns off ``off_after`` seconds after the shutdown request (never if None)."""

    def __init__(self, clock, off_after):
        self.clock = clock
        self.off_after = off_after
        self.requested_at = None
        self.destroyed = False
        self.calls = []

    def name(self):
        return "web01"

    def shutdown(self):
        self.calls.append("shutdown")
        self.requested_at = self.clock()

    def destroy(self):
        self.calls.append("destroy")
        self.destroyed = True

    def isActive(self):
        if self.destroyed:
            return False
        if self.requested_at is None or self.off_after is None:
            return True
        return self.clock() - self.requested_at < self.off_after


@pytest.mark.parametrize("current, desired, expected", [
    ("running", "running", None),
    ("shut off", "running", "start"),
    ("shut off", "shutoff", None),
    ("running", "shutoff", "shutdown"),
    ("paused", "shutoff", "shutdown"),
], ids=["running-running", "start", "off-off", "shutdown", "paused-shutdown"])
def test_power_action(current, desired, expected):
    assert power_action(current, desired) == expected


def test_power_action_refuses_to_start_a_paused_domain():
    with pytest.raises(KvmImagesError, match="domain is paused"):
        power_action("paused", "running")


def test_graceful_shutdown_within_timeout():
    clock = FakeClock()
    domain = FakeDomain(clock, off_after=3)
    result = PowerControl(domain, clock=clock, sleep=clock.sleep).shutdown(timeout=10, force_off=True)
    assert result["forced"] is False
    assert 3 <= result["duration_s"] < 4
    assert domain.calls == ["shutdown"]


def test_guest_ignoring_acpi_is_left_running_without_force():
    clock = FakeClock()
    domain = FakeDomain(clock, off_after=None)
    with pytest.raises(KvmImagesError) as caught:
        PowerControl(domain, clock=clock, sleep=clock.sleep).shutdown(timeout=5, force_off=False)
    assert "did not shut down within 5 s" in caught.value.msg
    assert "still running" in caught.value.msg
    assert "destroy" not in domain.calls


def test_guest_ignoring_acpi_is_powered_off_when_allowed():
    clock = FakeClock()
    domain = FakeDomain(clock, off_after=None)
    result = PowerControl(domain, clock=clock, sleep=clock.sleep).shutdown(timeout=5, force_off=True)
    assert result["forced"] is True
    assert domain.calls == ["shutdown", "destroy"]
