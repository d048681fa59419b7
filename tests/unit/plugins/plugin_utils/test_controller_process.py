# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import socket
import subprocess

from ansible_collections.kvm.images.plugins.plugin_utils.controller_process import is_dead, start_time, this_run

HERE = socket.gethostname()


def finished_process() -> dict:
    child = subprocess.Popen(["sleep", "0"])
    started = start_time(child.pid)
    child.wait()
    return {"host": HERE, "pid": child.pid, "started": started}


def test_this_run_is_the_parent_process_with_its_start_time():
    run = this_run()
    assert (run["host"], run["pid"]) == (HERE, os.getppid())
    assert run["started"] == start_time(os.getppid()) and run["started"].isdigit()


def test_a_process_of_this_controller_that_ended_is_dead():
    assert is_dead(finished_process(), this_run())


def test_a_reused_pid_is_told_apart_by_its_start_time():
    alive = {"host": HERE, "pid": os.getpid(), "started": start_time(os.getpid())}
    assert not is_dead(alive, this_run())
    assert is_dead(dict(alive, started="1"), this_run())


def test_only_sure_deaths_count():
    ours = this_run()
    gone = finished_process()
    assert not is_dead(dict(gone, host="another-controller"), ours)
    assert not is_dead(None, ours)
    assert not is_dead({"host": HERE, "pid": "12"}, ours)
    assert not is_dead(dict(ours), ours)
    assert not is_dead({"host": HERE, "pid": 1, "started": None}, ours)
