# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Change windows: when copies must be done by, and whether one can still start (private to kvm.images)."""

from __future__ import annotations

import datetime
import re
import time
import typing as t
from dataclasses import dataclass

MIB = 1 << 20
DURATION = re.compile(r"^(?:(\d+)h)?\s*(?:(\d+)m(?:in)?)?\s*(?:(\d+)s)?$")
TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def deadline_of(spec: str | int | float | None, started: float,
                local: t.Callable[[float], datetime.datetime] | None = None) -> float | None:
    """The Unix time a run that ``started`` must be done by.

    ``spec`` is a time of day (``06:00``, local time; the next one after the start), a duration from the start
    (``2h30m``, ``90m``, ``45s``, or seconds), or empty for none.
    """
    if spec in (None, ""):
        return None
    if isinstance(spec, (int, float)):
        return started + float(spec)
    text = str(spec).strip()
    if text.isdigit():
        return started + int(text)
    match = TIME_OF_DAY.match(text)
    if match:
        start = (local or datetime.datetime.fromtimestamp)(started)
        end = start.replace(hour=int(match.group(1)), minute=int(match.group(2)), second=0, microsecond=0)
        if end <= start:
            end += datetime.timedelta(days=1)
        return end.timestamp()
    match = DURATION.match(text)
    if match and any(match.groups()):
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return started + hours * 3600 + minutes * 60 + seconds
    raise ValueError(f"deadline {spec!r} is neither a time of day (06:00) nor a duration (2h30m, 90m, 45s)")


@dataclass
class Schedule:
    """When conversions must be done by, and the throughput to expect until one has been measured."""

    deadline: float | None = None
    expected_mib_s: float | None = None
    bandwidth_mib: int | None = None

    def rate(self, measured: float | None) -> float | None:
        """Bytes/s to expect of the next conversion: what this run measured, else what was expected, never
        above the bandwidth cap."""
        rate = measured if measured else (self.expected_mib_s * MIB if self.expected_mib_s else None)
        cap = self.bandwidth_mib * MIB if self.bandwidth_mib else None
        if rate is None:
            return cap
        return min(rate, cap) if cap else rate

    def deferral(self, size: int, measured: float | None, now: float) -> str | None:
        """Why a conversion of ``size`` bytes must not start now, or None."""
        if self.deadline is None:
            return None
        if now >= self.deadline:
            return f"not started: the deadline {utc(self.deadline)} has passed; the next run converts it"
        rate = self.rate(measured)
        if rate is None:
            return None
        end = now + size / rate
        if end <= self.deadline:
            return None
        return (f"not started: {size / MIB:.0f} MiB at {rate / MIB:.0f} MiB/s would take until {utc(end)}, after the"
                f" deadline {utc(self.deadline)}; the next run converts it")


def defer_late(records: list[dict[str, t.Any]], schedule: Schedule, measured: float | None,
               now: float) -> list[dict[str, t.Any]]:
    """Records to convert whose domain could not be done by the deadline are deferred, a domain as a whole
    (its disks one after the other at the expected rate): a guest is not shut down for a conversion that
    would not be started."""
    by_domain: dict[str, int] = {}
    for record in records:
        if record.get("action") == "convert":
            by_domain[record["domain"]] = by_domain.get(record["domain"], 0) + int(record.get("required") or 0)
    late = {name: schedule.deferral(size, measured, now) for name, size in by_domain.items()}
    marked = []
    for record in records:
        reason = late.get(record["domain"]) if record.get("action") == "convert" else None
        marked.append(dict(record, action="defer", reason=reason) if reason else record)
    return marked


def human_duration(seconds: float) -> str:
    """``7 s``, ``1 min 12 s``, ``2 h 02 min``: to the nearest second."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def utc(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
