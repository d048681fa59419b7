# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bench-only callback: per host, the tasks that ran and how many of them reached the host (remote calls).

Written to the file named by KVM_IMAGES_TASK_COUNT when the playbook ends.
"""

from __future__ import annotations

import collections
import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_count
type: aggregate
short_description: counts tasks and remote calls per host (kvm.images benchmarks)
description: Counts, per host, the tasks that ran and those that ran a module on the host.
requirements: [KVM_IMAGES_TASK_COUNT names the output file]
"""

# Actions that run on the controller alone.
LOCAL = {"set_fact", "debug", "fail", "assert", "include_tasks", "include_role", "import_tasks", "meta",
         "add_host", "group_by", "validate_argument_spec", "ansible.builtin.set_fact", "ansible.builtin.debug",
         "ansible.builtin.fail", "ansible.builtin.assert", "ansible.builtin.include_tasks",
         "ansible.builtin.include_role", "ansible.builtin.meta", "ansible.builtin.validate_argument_spec"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: collections.Counter[str] = collections.Counter()
        self.remote: collections.Counter[str] = collections.Counter()

    def count(self, result, ran: bool = True) -> None:
        host = result._host.get_name()
        self.tasks[host] += 1
        task = result._task
        delegated = task.delegate_to and task.delegate_to not in (host,)
        if ran and task.action not in LOCAL and not delegated:
            self.remote[host] += 1

    def v2_runner_on_ok(self, result) -> None:
        # A loop reports each item (counted there), then the whole task.
        self.count(result, ran="results" not in result._result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self.count(result)

    def v2_runner_on_unreachable(self, result) -> None:
        self.count(result)

    def v2_runner_on_skipped(self, result) -> None:
        self.count(result, ran=False)

    def v2_runner_item_on_ok(self, result) -> None:
        # A loop's items are one task, and one remote call each.
        if result._task.action not in LOCAL:
            self.remote[result._host.get_name()] += 1

    def v2_playbook_on_stats(self, stats) -> None:
        path = os.environ.get("KVM_IMAGES_TASK_COUNT")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"tasks": dict(self.tasks), "remote": dict(self.remote)}, handle)
