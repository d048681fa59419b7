# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.rollback_plan import rollback_plan
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import converted_record, disk, domain


def test_rollback_converts_the_current_image_back_to_the_original_path():
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    [record] = rollback_plan([converted_record()], now)
    assert record["action"] == "convert"
    assert (record["source"], record["source_format"]) == ("/images/a.qcow2", "qcow2")
    assert (record["dest"], record["target_format"]) == ("/images/a.raw", "raw")
    assert record["replaces_stale_original"] is True
    assert record["method"] == "live"


@pytest.mark.parametrize("now, reason_part", [
    ([], "no longer defined"),
    ([domain(disks=[disk(source="/elsewhere/b.qcow2", fmt="qcow2")])], "left alone"),
    ([domain(disks=[disk(source="/images/a.qcow2", fmt="raw")])], "left alone"),
    ([domain(state="paused", disks=[disk(source="/images/a.qcow2", fmt="qcow2")])], "paused"),
], ids=["undefined", "other-source", "other-format", "paused"])
def test_rollback_leaves_disks_it_cannot_vouch_for(now, reason_part):
    [record] = rollback_plan([converted_record()], now)
    assert record["action"] == "skip"
    assert reason_part in record["reason"]
    assert record["replaces_stale_original"] is False


def test_rollback_respects_include_and_exclude():
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    for kwargs in ({"include": ["db*"]}, {"exclude": ["web*"]}):
        [record] = rollback_plan([converted_record()], now, **kwargs)
        assert record["action"] == "skip"
        assert record["reason"] == "domain not selected by the include and exclude patterns"


def test_rollback_takes_the_last_switch_to_what_the_disk_uses_now():
    """A journal line is written before its switch: a later line whose switch failed must not hide the real one."""
    real = converted_record()
    failed_later = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2",
                        dest="/images/a.raw", target_format="raw")
    other_disk = converted_record("db01")
    now = [domain(disks=[disk(source="/images/a.qcow2", fmt="qcow2")])]
    records = rollback_plan([real, other_disk, failed_later], now)
    assert [(r["domain"], r["action"]) for r in records] == [("web01", "convert"), ("db01", "skip")]
    assert (records[0]["source"], records[0]["dest"]) == ("/images/a.qcow2", "/images/a.raw")


def test_rollback_of_a_disk_switched_twice_goes_back_one_step():
    first = converted_record()
    second = dict(converted_record(), source="/images/a.qcow2", source_format="qcow2",
                  dest="/images/b.qcow2", target_format="qcow2")
    now = [domain(disks=[disk(source="/images/b.qcow2", fmt="qcow2")])]
    [record] = rollback_plan([first, second], now)
    assert (record["action"], record["source"], record["dest"]) == ("convert", "/images/b.qcow2", "/images/a.qcow2")
