# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's filters: each registered and documented, bad input named, and the glue each adds."""

from __future__ import annotations

import datetime
import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.images.plugins.filter import disk_format
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import disk, domain

FILTER_DIR = pathlib.Path(disk_format.__file__).parent


def test_every_filter_is_documented_and_every_document_is_a_filter():
    documented = {path.stem for path in FILTER_DIR.glob("disk_format_*.yml")}
    assert documented == set(disk_format.FilterModule().filters())
    for name in documented:
        doc = yaml.safe_load((FILTER_DIR / f"{name}.yml").read_text())
        assert doc["DOCUMENTATION"]["name"] == name


@pytest.mark.parametrize("name, args", [
    ("disk_format_plan", ([{"name": "web01", "disks": []}], "vmdk")),
    ("disk_format_preflight", ([{"domain": "a", "target": "vda", "action": "convert"}], [])),
    ("disk_format_deadline", ("tomorrow", 0.0)),
    ("disk_format_outcomes", ([{}], [], "hv1")),
], ids=["bad-format", "no-result", "bad-deadline", "lengths"])
def test_bad_input_is_a_filter_error_naming_the_filter(name, args):
    with pytest.raises(AnsibleFilterError) as caught:
        disk_format.FilterModule().filters()[name](*args)
    assert str(caught.value).startswith(f"{name}: ")


def test_plan_marks_the_stale_image_a_rollback_kept():
    now = [domain(disks=[disk(source="/images/a.raw", fmt="raw")])]
    switches = [
        {"domain": "web01", "target": "vda", "source": "/images/a.raw", "dest": "/images/a.qcow2"},
        {"domain": "web01", "target": "vda", "source": "/images/a.qcow2", "dest": "/images/a.raw"},
    ]
    [record] = disk_format.disk_format_plan(now, "qcow2", switches=switches)
    assert record["replaces_stale_original"] is True


@pytest.mark.parametrize("spec, expected", [
    ("", None), (None, None), ("90m", 1000 + 5400), ("2h30m", 1000 + 9000), ("45s", 1045), ("600", 1600),
], ids=["empty", "none", "minutes", "hours", "seconds", "plain"])
def test_deadline_durations_count_from_the_start(spec, expected):
    assert disk_format.disk_format_deadline(spec, 1000) == expected


def test_a_time_of_day_is_the_next_one_after_the_start():
    start = datetime.datetime(2026, 12, 6, 22, 0).timestamp()
    assert disk_format.disk_format_deadline("06:00", start) == datetime.datetime(2026, 12, 7, 6, 0).timestamp()
    assert disk_format.disk_format_deadline("23:30", start) == datetime.datetime(2026, 12, 6, 23, 30).timestamp()


def records(*names, required=100 << 20):
    return [{"domain": name, "target": "vda", "action": "convert", "required": required, "domain_state": "running",
             "method": "offline", "source": f"/i/{name}.raw", "source_format": "raw", "dest": f"/i/{name}.qcow2",
             "target_format": "qcow2"} for name in names]


def test_defer_late_uses_the_throughput_measured_so_far():
    group = records("web01", "db01", required=1000 << 20)
    kept = disk_format.disk_format_defer_late(group, 1000 + 60, [], 10, 0, now=1000)
    assert [r["action"] for r in kept] == ["defer", "defer"]
    assert kept[0]["reason"].startswith("not started: 1000 MiB at 10 MiB/s would take until")
    measured = [{"throughput_mib_s": 100.0}]
    assert [r["action"] for r in disk_format.disk_format_defer_late(group, 1060, measured, 10, 0, now=1000)] == [
        "convert", "convert"]
    assert disk_format.disk_format_defer_late(group, None, [], 10, 0, now=1000) == group


def test_offline_groups_keep_domains_whole():
    group = records("a", "b", "c") + [dict(records("a")[0], target="vdb")]
    groups = disk_format.disk_format_offline_groups(group, 2)
    assert [[(r["domain"], r["target"]) for r in g] for g in groups] == [
        [("a", "vda"), ("a", "vdb"), ("b", "vda")], [("c", "vda")]]


def test_seconds_and_conversions():
    group = records("a", "b", required=400 << 20)
    assert disk_format.disk_format_seconds(group, 200, 0, 1) == 4.0
    assert disk_format.disk_format_seconds(group, 200, 100, 2) == 4.0
    [first, _second] = disk_format.disk_format_conversions(group)
    assert first == {"src": "/i/a.raw", "src_format": "raw", "dest": "/i/a.qcow2", "format": "qcow2",
                     "label": "a vda", "force": False}


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (7, "7 s"), (71.1, "1 min 12 s"), (7322, "2 h 02 min")])
def test_a_duration_is_rounded_up_and_read_as_a_person_does(seconds, text):
    assert disk_format.disk_format_duration(seconds) == text
