# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Graceful power changes of libvirt domains, one or several together (private to kvm.images)."""

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
    """Drives domains; each is a libvirt virDomain (the seam tests fake)."""

    def __init__(self, *, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep, poll_interval: float = 0.2) -> None:
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval

    def shutdown(self, domains: list[t.Any], timeout: float, force_off: bool) -> dict[str, dict[str, t.Any]]:
        """ACPI shutdown of every domain at once, then one wait of up to ``timeout`` s for all of them;
        power off what is still up only when allowed. Returns ``forced`` and ``duration_s`` per name.

        Without ``force_off``, a domain still running fails the call, naming it; the others are off.
        """
        started = self.clock()
        for domain in domains:
            if domain.isActive():
                domain.shutdown()
        done: dict[str, dict[str, t.Any]] = {}
        while True:
            for domain in domains:
                if domain.name() not in done and not domain.isActive():
                    done[domain.name()] = {"forced": False, "duration_s": round(self.clock() - started, 2)}
            if len(done) == len(domains) or self.clock() - started >= timeout:
                break
            self.sleep(self.poll_interval)
        still_up = [domain for domain in domains if domain.name() not in done]
        if still_up and not force_off:
            names = ", ".join(domain.name() for domain in still_up)
            off = ", ".join(sorted(done)) or "none"
            subject = f"domain {names} did not" if len(still_up) == 1 else f"domains {names} did not"
            running = "it is still running" if len(still_up) == 1 else "they are still running"
            raise KvmImagesError(
                f"{subject} shut down within {timeout:g} s after an ACPI shutdown request;"
                f" {running} and nothing was changed (set force_off to power {'it' if len(still_up) == 1 else 'them'}"
                " off)." + (f" Shut off meanwhile: {off}." if len(domains) > 1 else ""),
                domain=still_up[0].name() if len(still_up) == 1 else [domain.name() for domain in still_up],
                timeout=timeout, shut_off=sorted(done))
        for domain in still_up:
            domain.destroy()
            done[domain.name()] = {"forced": True, "duration_s": round(self.clock() - started, 2)}
        return done


def decide(domain: t.Any, desired: str) -> dict[str, t.Any]:
    """The result a change of ``domain`` to ``desired`` starts from, with its ``action`` (None: nothing)."""
    before = state_name(domain)
    action = power_action(before, desired)
    result = {"name": domain.name(), "changed": action is not None, "previous_state": before, "state": before,
              "forced": False, "duration_s": 0.0, "action": action}
    if action is not None:
        result["reason"] = f"{before} -> {'running' if action == 'start' else 'shut off'}" + (
            " (ACPI shutdown)" if action == "shutdown" else "")
    return result


def bring_all(domains: list[t.Any], desired: str, *, shutdown_timeout: float, force_off: bool, journal: str | None,
              apply: bool, control: PowerControl | None = None) -> list[dict[str, t.Any]]:
    """Decide for every domain, then (when ``apply``) shut them down together or start them, journaling the
    shutdowns before they are asked for and each start after it. One result per domain, in order."""
    results = [decide(domain, desired) for domain in domains]
    if apply:
        control = control or PowerControl()
        if desired == "shutoff":
            shut_down(domains, results, control, shutdown_timeout, force_off, journal)
        else:
            for domain, result in zip(domains, results):
                if result["action"] == "start":
                    libvirt_call(f"cannot start domain {domain.name()}", domain.create)
                # Also when it ran already, perhaps started by hand after a killed run: that shutdown is done with.
                note_running(journal, domain.name())
        for domain, result in zip(domains, results):
            result["state"] = state_name(domain)
    for result in results:
        result.pop("action")
    return results


def shut_down(domains: list[t.Any], results: list[dict[str, t.Any]], control: PowerControl,
              timeout: float, force_off: bool, journal: str | None) -> None:
    going = [domain for domain, result in zip(domains, results) if result["action"] == "shutdown"]
    if not going:
        return
    names = ", ".join(domain.name() for domain in going)
    record_before(journal, [power_entry(domain.name(), "shutdown") for domain in going], names, "shutdown")
    try:
        done = libvirt_call(f"cannot shut down domain {names}", control.shutdown, going, timeout, force_off)
    except KvmImagesError:
        # A domain that stays up is not one to start again later.
        for domain in going:
            if domain.isActive():
                note_running(journal, domain.name())
        raise
    for result in results:
        result.update(done.get(result["name"], {}))


def note_running(journal: str | None, name: str) -> None:
    """Best effort: a missing start line only makes the next run start a running domain, which changes nothing."""
    try:
        record_before(journal, [power_entry(name, "start")], name, "start")
    except KvmImagesError:
        pass
