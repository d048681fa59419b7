# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Long copies: progress lines in the play's output while the module runs.
    DOCUMENTATION = r"""
options:
  progress_interval:
    description:
      - Print a progress line every this many seconds while the copy runs - per disk, its label, how much of it
        is copied, the throughput and the time left - in the output of C(ansible-playbook), whatever its stdout
        callback. The module's action plugin runs it in the background for that and follows it.
      - V(0) runs the module as any other, with no lines until it is done. Ignored in check mode and when the task
        has its own C(async).
    type: int
    default: 0
  progress_file:
    description:
      - Where the module keeps its progress (a small JSON file, removed when it ends). The action plugin sets it
        when O(progress_interval) asks for progress lines; set it only when running the module some other way.
    type: path
"""

    # Change windows.
    SCHEDULE = r"""
options:
  deadline:
    description:
      - The moment (Unix time, seconds) by which copies must be done. A copy whose estimated end - its data at the
        throughput measured so far in this task, else O(expected_throughput), never above the bandwidth cap - would
        come after it is not started; its result says C(deferred=true) and why, and nothing of it is changed, so
        that the next run picks it up.
    type: float
  expected_throughput:
    description: MiB/s a copy is expected to move until this task has measured one, for O(deadline).
    type: float
"""
