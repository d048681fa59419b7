# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugins of long copies: run the module in the background and print its progress (controller side).

A module cannot print while it runs; its action plugin can. With ``progress_interval`` set, the plugin starts
the module under Ansible's async wrapper, asks every interval for the job's status and the module's progress
file, and prints one line per disk in progress - through Ansible's display, so whatever stdout callback the
play uses shows it. The result is the module's own, as if it had run in the foreground.
"""

from __future__ import annotations

import base64
import json
import time
import typing as t
import uuid

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.kvm.images.plugins.module_utils.schedule import human_duration

display = Display()

# The async wrapper kills a job older than this; the module's own timeouts end a stuck copy far sooner.
ASYNC_LIMIT_S = 7 * 24 * 3600
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout", "stderr", "stdout_lines",
              "stderr_lines", "erased")
PHASES_SHOWN = ("copying", "verifying", "pivoting")


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024
    return f"{count:.1f} TiB"


def progress_line(item: dict[str, t.Any]) -> str:
    """``web01 vda: 42 % of 20.0 GiB at 180.3 MiB/s, 1 min 12 s left (offline)``.

    The rate is the bytes done by the item's last update over the time since it started, both on the managed
    host's clock: the controller's may differ from it."""
    done, total = int(item.get("done") or 0), int(item.get("total") or 0)
    elapsed = max(float(item.get("updated") or 0) - float(item.get("started") or 0), 0.001)
    rate = done / elapsed
    percent = 100.0 * done / total if total else 0.0
    left = f"{human_duration((total - done) / rate)} left" if rate > 0 and total > done else "finishing"
    phase = item.get("phase") or "copying"
    if phase != "copying":
        left = phase
    mode = item.get("mode") or ""
    return (f"{item.get('label')}: {percent:.0f} % of {human_bytes(total)} at {human_bytes(rate)}/s, {left}"
            + (f" ({mode})" if mode else ""))


def progress_lines(host: str, progress: dict[str, t.Any] | None) -> list[str]:
    """One line per disk still copying, verifying or pivoting."""
    if not progress:
        return []
    return [f"[{host}] {progress_line(item)}" for item in progress.get("items", [])
            if item.get("phase") in PHASES_SHOWN]


class ProgressAction(ActionBase):
    """The action plugin of a module with ``progress_interval`` and ``progress_file`` options."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        interval = int(self._task.args.get("progress_interval") or 0)
        if interval <= 0 or self._play_context.check_mode or self._task.async_val:
            wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        return merge_hash(result, self.follow(task_vars or {}, interval))

    def follow(self, task_vars: dict[str, t.Any], interval: int) -> dict[str, t.Any]:
        """Start the module in the background, print its progress every ``interval`` s, return its result."""
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        progress_file = self._connection._shell.join_path(async_dir, f"kvm-images-progress-{uuid.uuid4().hex}.json")
        args = dict(self._task.args, progress_file=progress_file)
        self._task.async_val = ASYNC_LIMIT_S
        try:
            started = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        if started.get("failed") or "ansible_job_id" not in started:
            return started
        jid = started["ansible_job_id"]
        host = task_vars.get("inventory_hostname", "?")
        # Asked often at first, so that a short copy is not kept waiting for a whole interval; a line per interval.
        pause, printed = 0.25, time.monotonic()
        while True:
            time.sleep(pause)
            pause = min(pause * 2, interval)
            status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                          module_args={"jid": jid, "_async_dir": async_dir})
            if status.get("finished") or (status.get("failed") and not status.get("started")):
                break
            if time.monotonic() - printed >= interval:
                printed = time.monotonic()
                for line in progress_lines(host, self.read_progress(progress_file, task_vars)):
                    display.display(line)
        self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                             module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir})
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return {key: value for key, value in status.items() if key not in ASYNC_KEYS}

    def read_progress(self, path: str, task_vars: dict[str, t.Any]) -> dict[str, t.Any] | None:
        """The module's progress file, or None while there is none (yet, or any more)."""
        read = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path},
                                    task_vars=task_vars)
        if read.get("failed") or "content" not in read:
            return None
        try:
            return json.loads(base64.b64decode(read["content"]))
        except ValueError:
            return None
