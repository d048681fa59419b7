# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Graceful power changes of a libvirt domain (private to kvm.images)."""

from __future__ import annotations

import time
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.journal import power_entry, record_before
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import libvirt_call, state_name

STATES = ("running", "shutoff")


def power_action(current: str, desired: str) -> str | None:
    """What to do to go from libvirt's state name ``current`` to ``desired``."""
    if desired not in STATES:
        raise KvmImagesError(f"state must be one of {', '.join(STATES)}, not {desired!r}")
    if desired == "running":
        if current == "running":
            return None
        if current == "shut off":
            return "start"
        raise KvmImagesError(f"domain is {current}; only a shut-off domain is started here")
    if current == "shut off":
        return None
    return "shutdown"


class PowerControl:
    """Drives one domain; ``domain`` is a libvirt virDomain (the seam tests fake)."""

    def __init__(self, domain: t.Any, *, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep, poll_interval: float = 0.2) -> None:
        self.domain = domain
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval

    def start(self) -> None:
        self.domain.create()

    def shutdown(self, timeout: float, force_off: bool) -> dict[str, t.Any]:
        """ACPI shutdown, waiting up to ``timeout`` s; power off only when allowed."""
        name = self.domain.name()
        started = self.clock()
        if self.domain.isActive():
            self.domain.shutdown()
        while self.domain.isActive() and self.clock() - started < timeout:
            self.sleep(self.poll_interval)
        if not self.domain.isActive():
            return {"forced": False, "duration_s": round(self.clock() - started, 2)}
        if not force_off:
            raise KvmImagesError(
                f"domain {name} did not shut down within {timeout:g} s after an ACPI shutdown request;"
                " it is still running and nothing was changed (set force_off to power it off)",
                domain=name, timeout=timeout)
        self.domain.destroy()
        return {"forced": True, "duration_s": round(self.clock() - started, 2)}


def bring_to(domain: t.Any, desired: str, *, shutdown_timeout: float, force_off: bool, journal: str | None,
             apply: bool, control: PowerControl | None = None) -> dict[str, t.Any]:
    """Decide, then (when ``apply``) shut down or start, journaling a shutdown before it and a start after it."""
    name = domain.name()
    before = state_name(domain)
    action = power_action(before, desired)
    result = {"changed": action is not None, "previous_state": before, "state": before,
              "forced": False, "duration_s": 0.0}
    if action is not None:
        result["reason"] = f"{before} -> {'running' if action == 'start' else 'shut off'}" + (
            " (ACPI shutdown)" if action == "shutdown" else "")
    if not apply:
        return result
    control = control or PowerControl(domain)
    if action == "shutdown":
        record_before(journal, [power_entry(name, "shutdown")], name, "shutdown")
        try:
            result.update(libvirt_call(f"cannot shut down domain {name}", control.shutdown, shutdown_timeout,
                                       force_off))
        except KvmImagesError:
            if domain.isActive():
                note_running(journal, name)
            raise
    elif desired == "running":
        if action == "start":
            libvirt_call(f"cannot start domain {name}", control.start)
        # Also when it ran already, perhaps started by hand after a killed run: that shutdown is done with.
        note_running(journal, name)
    result["state"] = state_name(domain)
    return result


def note_running(journal: str | None, name: str) -> None:
    """Best effort: a missing start line only makes the next run start a running domain, which changes nothing."""
    try:
        record_before(journal, [power_entry(name, "start")], name, "start")
    except KvmImagesError:
        pass
