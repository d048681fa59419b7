# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the host_lock module, naming this run's ansible-playbook process in the lock, so that a later run on
the same controller takes over at once a lock whose run was killed (kill -9, Ctrl-C: no cleanup ran)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.kvm.images.plugins.plugin_utils.controller_process import is_dead, this_run


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("state", "acquired") != "acquired" or "take_over" in args:
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
            return result
        ours = this_run()
        args.setdefault("process", ours)
        # First without waiting: a dead holder is known at once, not after wait_timeout.
        outcome = self._execute_module(module_args=dict(args, wait_timeout=0), task_vars=task_vars)
        holder = outcome.get("holder") if outcome.get("failed") else None
        if holder and is_dead(holder.get("process"), ours):
            outcome = self._execute_module(module_args=dict(args, wait_timeout=0, take_over=holder.get("owner")),
                                           task_vars=task_vars)
        elif holder and str(args.get("wait_timeout", 0)) not in ("0", ""):
            outcome = self._execute_module(module_args=args, task_vars=task_vars)
        result.update(outcome)
        return result
