# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.domain_power import PowerControl, bring_all, power_action
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.journal import pending_restarts
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeClock, FakeDomain


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
    domain = FakeDomain(clock=clock, off_after=3)
    result = PowerControl(clock=clock, sleep=clock.sleep).shutdown([domain], timeout=10, force_off=True)["web01"]
    assert result["forced"] is False
    assert 3 <= result["duration_s"] < 4
    assert domain.calls == ["shutdown"]


def test_guest_ignoring_acpi_is_left_running_without_force():
    clock = FakeClock()
    domain = FakeDomain(clock=clock, off_after=None)
    with pytest.raises(KvmImagesError) as caught:
        PowerControl(clock=clock, sleep=clock.sleep).shutdown([domain], timeout=5, force_off=False)
    assert caught.value.msg == ("domain web01 did not shut down within 5 s after an ACPI shutdown request; it is"
                                " still running and nothing was changed (set force_off to power it off).")
    assert "destroy" not in domain.calls


def test_guest_ignoring_acpi_is_powered_off_when_allowed():
    clock = FakeClock()
    domain = FakeDomain(clock=clock, off_after=None)
    result = PowerControl(clock=clock, sleep=clock.sleep).shutdown([domain], timeout=5, force_off=True)["web01"]
    assert result["forced"] is True
    assert domain.calls == ["shutdown", "destroy"]


class JournaledDomain(FakeDomain):
    """Notes what the journal held at each shutdown request."""

    def __init__(self, clock, off_after, journal, name="web01"):
        super().__init__(name, clock=clock, off_after=off_after)
        self.journal = journal
        self.seen = []

    def shutdown(self):
        self.seen.append(pending_restarts(self.journal.read_text()) if self.journal.exists() else [])
        super().shutdown()


def bring(domain, desired, clock, journal, apply=True):
    [result] = bring_all([domain], desired, shutdown_timeout=5, force_off=False, journal=str(journal), apply=apply,
                         control=PowerControl(clock=clock, sleep=clock.sleep))
    return result


def test_a_shutdown_is_journaled_before_it_is_asked_and_a_start_after(tmp_path):
    clock, journal = FakeClock(), tmp_path / "journal.jsonl"
    domain = JournaledDomain(clock, 2, journal)
    assert bring(domain, "shutoff", clock, journal)["state"] == "shut off"
    assert domain.seen == [["web01"]], "the shutdown line was on disk before the request"
    assert pending_restarts(journal.read_text()) == ["web01"]
    assert bring(domain, "running", clock, journal)["state"] == "running"
    assert pending_restarts(journal.read_text()) == []


def test_a_guest_that_stays_up_is_not_left_pending(tmp_path):
    clock, journal = FakeClock(), tmp_path / "journal.jsonl"
    with pytest.raises(KvmImagesError, match="did not shut down within 5 s"):
        bring(JournaledDomain(clock, None, journal), "shutoff", clock, journal)
    assert pending_restarts(journal.read_text()) == []


def test_check_mode_journals_nothing(tmp_path):
    clock, journal = FakeClock(), tmp_path / "journal.jsonl"
    result = bring(JournaledDomain(clock, 2, journal), "shutoff", clock, journal, apply=False)
    assert result["changed"] and result["reason"] == "running -> shut off (ACPI shutdown)"
    assert not journal.exists()


def test_several_domains_shut_down_together_in_one_wait(tmp_path):
    clock, journal = FakeClock(), tmp_path / "journal.jsonl"
    fast, slow, off = (JournaledDomain(clock, 2, journal, "web01"), JournaledDomain(clock, 4, journal, "db01"),
                       JournaledDomain(clock, 0, journal, "app01"))
    off.requested_at = -1
    results = bring_all([fast, slow, off], "shutoff", shutdown_timeout=10, force_off=False, journal=str(journal),
                        apply=True, control=PowerControl(clock=clock, sleep=clock.sleep, poll_interval=0.5))
    assert [(r["name"], r["changed"], r["state"]) for r in results] == [
        ("web01", True, "shut off"), ("db01", True, "shut off"), ("app01", False, "shut off")]
    # Asked at once: the whole wait is the slowest guest's, not the sum.
    assert 4 <= clock.now < 5
    # Both shutdown lines were on disk, in one write, before the first request.
    assert [sorted(seen) for seen in fast.seen] == [["db01", "web01"]]
    assert sorted(pending_restarts(journal.read_text())) == ["db01", "web01"]


def test_one_of_several_that_stays_up_fails_by_name_and_is_not_left_pending(tmp_path):
    clock, journal = FakeClock(), tmp_path / "journal.jsonl"
    stubborn, fine = JournaledDomain(clock, None, journal, "db01"), JournaledDomain(clock, 1, journal, "web01")
    with pytest.raises(KvmImagesError) as caught:
        bring_all([stubborn, fine], "shutoff", shutdown_timeout=3, force_off=False, journal=str(journal), apply=True,
                  control=PowerControl(clock=clock, sleep=clock.sleep))
    assert caught.value.msg.startswith("domain db01 did not shut down within 3 s")
    assert caught.value.msg.endswith("Shut off meanwhile: web01.")
    assert pending_restarts(journal.read_text()) == ["web01"]


def test_several_that_stay_up_are_named_together():
    clock = FakeClock()
    first, second = FakeDomain("db01", clock=clock, off_after=None), FakeDomain("db02", clock=clock, off_after=None)
    with pytest.raises(KvmImagesError) as caught:
        PowerControl(clock=clock, sleep=clock.sleep).shutdown([first, second], timeout=2, force_off=False)
    assert caught.value.msg == ("domains db01, db02 did not shut down within 2 s after an ACPI shutdown request; they"
                                " are still running and nothing was changed (set force_off to power them off)."
                                " Shut off meanwhile: none.")
    assert "destroy" not in first.calls + second.calls
