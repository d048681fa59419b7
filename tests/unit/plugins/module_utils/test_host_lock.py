# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import multiprocessing

import pytest

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.host_lock import HostLock, try_create
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeClock


def test_acquire_release_and_idempotence(tmp_path):
    path = str(tmp_path / "lock")
    lock = HostLock(path, "run-a")
    assert lock.acquire(0, 3600)["changed"] is True
    assert json.loads((tmp_path / "lock").read_text())["owner"] == "run-a"
    assert lock.acquire(0, 3600)["changed"] is False
    assert lock.release()["changed"] is True
    assert not (tmp_path / "lock").exists()
    assert lock.release()["changed"] is False


def test_second_run_waits_then_fails_without_touching_the_lock(tmp_path):
    path = str(tmp_path / "lock")
    clock = FakeClock(1000.0)
    HostLock(path, "run-a", clock=clock).acquire(0, 3600)
    second = HostLock(path, "run-b", clock=clock, sleep=clock.sleep)
    with pytest.raises(KvmImagesError) as caught:
        second.acquire(wait_timeout=30, stale_after=3600)
    assert "another run (run-a" in caught.value.msg
    assert "waited 30 s and changed nothing" in caught.value.msg
    assert clock.now >= 1030
    assert json.loads((tmp_path / "lock").read_text())["owner"] == "run-a"


def test_second_run_gets_the_lock_once_released(tmp_path):
    path = str(tmp_path / "lock")
    first = HostLock(path, "run-a")
    first.acquire(0, 3600)
    clock = FakeClock(1000.0)

    def sleep_and_release(seconds):
        clock.sleep(seconds)
        first.release()

    second = HostLock(path, "run-b", clock=clock, sleep=sleep_and_release)
    assert second.acquire(wait_timeout=30, stale_after=3600)["changed"] is True


def test_stale_lock_is_taken_over(tmp_path):
    path = str(tmp_path / "lock")
    clock = FakeClock(now=1000.0)
    HostLock(path, "killed-run", clock=clock).acquire(0, 3600)
    clock.now += 7200
    result = HostLock(path, "run-b", clock=clock).acquire(0, stale_after=3600)
    assert result["taken_over"]["owner"] == "killed-run"
    assert json.loads((tmp_path / "lock").read_text())["owner"] == "run-b"


def test_release_refuses_someone_elses_lock(tmp_path):
    path = str(tmp_path / "lock")
    HostLock(path, "run-a").acquire(0, 3600)
    with pytest.raises(KvmImagesError, match="held by run-a"):
        HostLock(path, "run-b").release()
    assert (tmp_path / "lock").exists()


def _create(path, owner, results):
    results.put((owner, try_create(path, owner, 0.0)))


def _take_over(path, owner, results):
    try:
        HostLock(path, owner).acquire(0, 3600, take_over="killed-run")
        results.put((owner, True))
    except KvmImagesError:
        results.put((owner, False))


def race(attempt, path: str) -> list[str]:
    """Eight processes attempt at once; the owners that won."""
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=attempt, args=(path, f"run-{i}", results)) for i in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [owner for owner, won in (results.get() for proc in procs) if won]


def test_exactly_one_of_many_processes_creates_the_lock(tmp_path):
    won = race(_create, str(tmp_path / "lock"))
    assert len(won) == 1
    assert json.loads((tmp_path / "lock").read_text())["owner"] == won[0]


def test_a_lock_of_a_run_known_dead_is_taken_over_at_once(tmp_path):
    path = str(tmp_path / "lock")
    HostLock(path, "killed-run", process={"host": "ctl", "pid": 4242, "started": "77"}).acquire(0, 3600)
    with pytest.raises(KvmImagesError, match=r"another run \(killed-run"):
        HostLock(path, "run-b").acquire(0, 3600, take_over="some-other-run")
    result = HostLock(path, "run-b", process={"host": "ctl", "pid": 5151, "started": "88"}).acquire(
        0, 3600, take_over="killed-run")
    assert result["taken_over"]["process"] == {"host": "ctl", "pid": 4242, "started": "77"}
    assert json.loads((tmp_path / "lock").read_text())["process"]["pid"] == 5151


def test_exactly_one_of_many_processes_takes_over_a_dead_lock(tmp_path):
    path = str(tmp_path / "lock")
    HostLock(path, "killed-run").acquire(0, 3600)
    won = race(_take_over, path)
    assert len(won) == 1
    assert json.loads((tmp_path / "lock").read_text())["owner"] == won[0]


@pytest.mark.parametrize("age, take_over, expected", [
    (10, None, ("wait", None)),
    (7200, None, ("take_over", "killed-run")),
    (10, "killed-run", ("take_over", "killed-run")),
], ids=["live", "stale", "known-dead"])
def test_check_mode_applies_the_rules_of_a_real_run_and_writes_nothing(tmp_path, age, take_over, expected):
    path = tmp_path / "lock"
    clock = FakeClock(now=1000.0)
    HostLock(str(path), "killed-run", clock=clock).acquire(0, 3600)
    clock.now += age
    before = path.read_text()
    checking = HostLock(str(path), "run-b", clock=clock, sleep=clock.sleep)
    action, _holder = expected
    if action == "wait":
        with pytest.raises(KvmImagesError, match=r"another run \(killed-run, for 10 s\) holds the lock .*; waited 0 s"):
            checking.acquire(wait_timeout=600, stale_after=3600, take_over=take_over, apply=False)
        assert clock.now == 1010.0
    else:
        result = checking.acquire(wait_timeout=0, stale_after=3600, take_over=take_over, apply=False)
        assert result == {"changed": True, "taken_over": json.loads(before)}
        # The real run, from the same state, does what check mode said.
        real = HostLock(str(path), "run-b", clock=clock).acquire(0, 3600, take_over=take_over)
        assert real == result
        path.write_text(before)
    assert path.read_text() == before


def test_check_mode_release_writes_nothing(tmp_path):
    path = str(tmp_path / "lock")
    lock = HostLock(path, "run-a")
    lock.acquire(0, 3600)
    assert lock.release(apply=False) == {"changed": True}
    assert (tmp_path / "lock").exists()
    assert HostLock(path, "run-a").acquire(0, 3600, apply=False) == {"changed": False, "taken_over": None}
    assert HostLock(str(tmp_path / "free"), "run-a").acquire(0, 3600, apply=False) == {
        "changed": True, "taken_over": None}
    assert not (tmp_path / "free").exists()
