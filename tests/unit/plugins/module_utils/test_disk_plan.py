# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import mark_stale_images, plan_disks
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import converted_record, disk, domain


def test_running_raw_disk_goes_live():
    [record] = plan_disks([domain()], "qcow2")
    assert record["action"] == "convert"
    assert record["method"] == "live"
    assert record["dest"] == "/images/a.qcow2"
    assert record["reason"] == "raw -> qcow2 (live)"


def test_offline_method_for_running_domain():
    [record] = plan_disks([domain()], "qcow2", method="offline")
    assert (record["action"], record["method"]) == ("convert", "offline")


def test_shut_off_domain_is_converted_offline_even_when_live_asked():
    [record] = plan_disks([domain(state="shut off")], "qcow2", method="live")
    assert (record["action"], record["method"]) == ("convert", "offline")


@pytest.mark.parametrize("state", ["paused", "pmsuspended", "crashed"])
def test_other_states_are_skipped_with_reason(state):
    [record] = plan_disks([domain(state=state)], "qcow2")
    assert record["action"] == "skip"
    assert state in record["reason"]


def test_already_in_format_is_ok_not_convert():
    [record] = plan_disks([domain(disks=[disk(fmt="qcow2", source="/i/a.qcow2")])], "qcow2")
    assert (record["action"], record["reason"]) == ("ok", "already qcow2")


def test_unconvertible_disk_keeps_its_reason():
    cdrom = disk(target="sda", source="/i/x.iso", convertible=False, skip_reason="cdrom")
    [record] = plan_disks([domain(disks=[cdrom])], "qcow2")
    assert (record["action"], record["reason"]) == ("skip", "cdrom")


def test_override_pins_domain_to_raw():
    domains = [domain("web01"), domain("db01")]
    records = plan_disks(domains, "qcow2", {"db01": {"format": "raw"}})
    by_domain = {r["domain"]: r for r in records}
    assert by_domain["web01"]["action"] == "convert"
    assert by_domain["db01"]["action"] == "ok"
    assert by_domain["db01"]["target_format"] == "raw"


def test_exclusion_pattern_wins():
    [record] = plan_disks([domain("test-1")], "qcow2", exclude=["prod-*", "test-*"])
    assert record["action"] == "skip"
    assert record["reason"] == "domain excluded by pattern 'test-*'"


@pytest.mark.parametrize("kwargs, message", [
    ({"default_format": "vmdk"}, "the format must be one of raw, qcow2, not 'vmdk'"),
    ({"default_format": "qcow2", "method": "fast"}, "method must be one of auto, live, offline, not 'fast'"),
    ({"default_format": "qcow2", "overrides": {"web01": {"format": "vdi"}}},
     "disk_format_domains['web01'].format must be one of raw, qcow2, not 'vdi'"),
    ({"default_format": "qcow2", "overrides": {"web01": {"target": "raw"}}},
     "disk_format_domains['web01'] sets target; the format is set with format (format: raw)"),
], ids=["bad-format", "bad-method", "bad-override", "target-is-a-device"])
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(ValueError) as caught:
        plan_disks([domain()], **kwargs)
    assert str(caught.value) == message


def test_include_list_limits_the_domains():
    records = plan_disks([domain("demo-web01"), domain("prod-db")], "qcow2", include=["demo-*"])
    by_domain = {r["domain"]: r for r in records}
    assert by_domain["demo-web01"]["action"] == "convert"
    assert by_domain["prod-db"]["action"] == "skip"
    assert by_domain["prod-db"]["reason"] == "domain matches no pattern of the include list"


def test_a_migration_after_a_rollback_replaces_the_copy_the_rollback_kept():
    migrated = converted_record()
    rolled_back = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2", dest="/images/a.raw",
                       target_format="raw")
    now = [domain(disks=[disk(source="/images/a.raw", fmt="raw")])]
    [record] = mark_stale_images(plan_disks(now, "qcow2"), [migrated, rolled_back], now)
    assert record["dest"] == "/images/a.qcow2" and record["replaces_stale_original"] is True
    assert "replaces /images/a.qcow2, the stale image the disk left in an earlier run" in record["summary"]
    # Not after a first migration alone, and never a file some domain uses.
    [record] = mark_stale_images(plan_disks(now, "qcow2"), [migrated], now)
    assert "replaces_stale_original" not in record
    other = domain("db01", disks=[disk(source="/images/a.qcow2", fmt="qcow2")])
    records = mark_stale_images(plan_disks(now + [other], "qcow2"), [migrated, rolled_back], now + [other])
    assert not any(r.get("replaces_stale_original") for r in records)
