# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several conversions in one run: decided first, space added up per file system, several at once, and none
started that would end after the deadline. Real files; the qemu-img seam faked."""

from __future__ import annotations

import pathlib
import threading
import time

import pytest

from ansible_collections.kvm.images.plugins.module_utils import image_convert
from ansible_collections.kvm.images.plugins.module_utils.conversion_batch import Throughput, convert_all
from ansible_collections.kvm.images.plugins.module_utils.image_convert import Converter
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress
from ansible_collections.kvm.images.plugins.module_utils.schedule import MIB, Schedule
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeModule, FakeQemu
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.image_builders import (
    qcow2_image,
    raw_image,
    request,
)


class SlowQemu(FakeQemu):
    """Takes ``seconds`` per conversion, counts how many run at the same time, and writes a whole qcow2 image."""

    def __init__(self, seconds=0.2, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def write(self, dest):
        qcow2_image(pathlib.Path(dest))

    def convert(self, src, src_format, dest, dest_format, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return super().convert(src, src_format, dest, dest_format, **kwargs)


def sources(tmp_path, count):
    return [raw_image(tmp_path / f"disk{index}.raw") for index in range(count)]


def run(tmp_path, qemu, requests, **kwargs):
    converter = Converter(FakeModule(), qemu)
    kwargs.setdefault("schedule", Schedule())
    return convert_all(converter, requests, parallel=kwargs.pop("parallel", 1), check_mode=kwargs.pop("check", False),
                       diff=False, **kwargs)


def test_parallel_runs_that_many_at_once_and_keeps_the_order(tmp_path):
    qemu = SlowQemu()
    results = run(tmp_path, qemu, [request(src) for src in sources(tmp_path, 4)], parallel=2)
    assert qemu.most == 2
    assert [r["src"] for r in results] == sources(tmp_path, 4)
    assert all(r["changed"] and r["verified"] for r in results)


def test_one_failure_fails_alone(tmp_path):
    good, bad = sources(tmp_path, 2)
    (tmp_path / "disk1.raw").write_bytes(b"QFI\xfb" + b"\0" * 4092)
    results = run(tmp_path, SlowQemu(seconds=0), [request(good), request(bad)])
    assert results[0]["changed"] and not results[0].get("failed")
    assert results[1]["failed"] is True
    assert "declared raw, but the image starts with a qcow2 header" in results[1]["msg"]
    assert results[1]["src"] == bad


def test_images_that_fit_one_by_one_but_not_together_are_refused_together(tmp_path, monkeypatch):
    monkeypatch.setattr(image_convert, "free_bytes", lambda directory: 250 << 20)
    qemu = SlowQemu(seconds=0, required=100 << 20)
    alone = run(tmp_path, qemu, [request(sources(tmp_path, 1)[0])])
    assert alone[0]["changed"] and not alone[0].get("failed")
    together = run(tmp_path, qemu, [request(src, force=True) for src in sources(tmp_path, 2)])
    assert all(r["failed"] for r in together)
    assert "and the 1 other new image(s) on its file system: together they need 209715200 bytes" in together[0]["msg"]
    assert together[0]["dest"] == str(tmp_path / "disk0.qcow2")
    assert len(qemu.converted) == 1, "only the conversion that fitted alone was written"


def test_check_mode_predicts_and_writes_nothing(tmp_path):
    qemu = SlowQemu(seconds=0)
    results = run(tmp_path, qemu, [request(src) for src in sources(tmp_path, 2)], check=True)
    assert [r["changed"] for r in results] == [True, True]
    assert [r["dest_actual_size"] for r in results] == [1 << 20, 1 << 20]
    assert qemu.converted == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk0.raw", "disk1.raw"]


@pytest.mark.parametrize("schedule, measured, now, expected", [
    (Schedule(), None, 0, None),
    (Schedule(deadline=100, expected_mib_s=10), None, 0, None),
    (Schedule(deadline=100, expected_mib_s=1), None, 0, "not started: 200 MiB at 1 MiB/s would take until"),
    (Schedule(deadline=100, expected_mib_s=10), 1 * MIB, 0, "at 1 MiB/s would take until 1970-01-01T00:03:20Z"),
    (Schedule(deadline=100, expected_mib_s=100, bandwidth_mib=1), None, 0, "at 1 MiB/s"),
    (Schedule(deadline=100), None, 150, "the deadline 1970-01-01T00:01:40Z has passed"),
    (Schedule(deadline=100), None, 50, None),
], ids=["no-deadline", "fits", "too-slow", "measured-wins", "cap-wins", "passed", "no-estimate"])
def test_deferral(schedule, measured, now, expected):
    reason = schedule.deferral(200 * MIB, measured, now)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason
        assert reason.endswith("the next run converts it")


def test_a_conversion_that_would_end_after_the_deadline_is_not_started(tmp_path):
    """The throughput measured on the first conversion decides for the next ones."""
    clock = [1000.0]
    qemu = SlowQemu(seconds=0, required=100 * MIB)
    converter = Converter(FakeModule(), qemu)
    original = converter.run

    def timed_run(*args, **kwargs):
        clock[0] += 10  # each conversion takes 10 s of the run: 10 MiB/s
        result = original(*args, **kwargs)
        result["duration_s"] = 10.0
        return result
    converter.run = timed_run
    results = convert_all(converter, [request(src) for src in sources(tmp_path, 3)], parallel=1, check_mode=False,
                          diff=False, schedule=Schedule(deadline=1025.0, expected_mib_s=1000), clock=lambda: clock[0])
    assert [bool(r.get("deferred")) for r in results] == [False, False, True]
    assert results[2]["changed"] is False
    assert "at 10 MiB/s would take until" in results[2]["reason"]
    assert len(qemu.converted) == 2


def test_throughput_adds_up_every_worker():
    throughput = Throughput()
    assert throughput.rate() is None
    throughput.add(100, 2.0)
    throughput.add(300, 2.0)
    assert throughput.rate() == 100.0


def test_progress_follows_each_conversion(tmp_path):
    progress_file = tmp_path / "progress.json"
    progress = Progress(str(progress_file), every=0)
    results = run(tmp_path, SlowQemu(seconds=0), [request(src, label=f"web01 vd{'ab'[i]}")
                                                  for i, src in enumerate(sources(tmp_path, 2))], progress=progress)
    assert all(r["changed"] for r in results)
    items = {item["label"]: item for item in progress.snapshot()}
    assert set(items) == {"web01 vda", "web01 vdb"}
    assert all(item["phase"] == "done" and item["done"] == item["total"] == 1 << 20 for item in items.values())
    assert progress_file.exists()
    progress.close()
    assert not progress_file.exists()
