# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which ansible-playbook process runs this play, and whether another one still runs (controller side)."""

from __future__ import annotations

import os
import socket
import typing as t


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, which a reused pid does not share; None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def this_run() -> dict[str, t.Any]:
    """Action plugins run in a worker forked by ansible-playbook: its parent is the run."""
    pid = os.getppid()
    return {"host": socket.gethostname(), "pid": pid, "started": start_time(pid)}


def is_dead(process: t.Any, ours: dict[str, t.Any]) -> bool:
    """True only when sure: the process ran on this controller and is gone (or its pid now names another).

    A process on another controller, or one this controller cannot tell about, counts as alive.
    """
    if not isinstance(process, dict) or process.get("host") != ours["host"]:
        return False
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == ours["pid"]:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = process.get("started")
    now = start_time(pid)
    return started is not None and now is not None and now != started
