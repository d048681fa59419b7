# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The disk_format role's logic as filters; each is documented in the YAML file of its name beside this one."""

from __future__ import annotations

import functools
import math
import time
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import (
    conversion_images,
    mark_stale_images,
    offline_groups,
    plan_disks,
)
from ansible_collections.kvm.images.plugins.module_utils.fleet_report import host_record
from ansible_collections.kvm.images.plugins.module_utils.outcomes import offline_outcome, outcome_records
from ansible_collections.kvm.images.plugins.module_utils.preflight import (
    apply_preflight,
    preflight_requests,
    space_by_filesystem,
)
from ansible_collections.kvm.images.plugins.module_utils.rollback_plan import rollback_plan
from ansible_collections.kvm.images.plugins.module_utils.schedule import (
    MIB,
    Schedule,
    deadline_of,
    defer_late,
    human_duration,
)
from ansible_collections.kvm.images.plugins.module_utils.space import SPACE_MARGIN_BYTES, SPACE_MARGIN_RATIO

Filter = t.Callable[..., t.Any]
FILTERS: dict[str, Filter] = {}


def role_filter(function: Filter) -> Filter:
    """Register ``function`` as the filter of its name; bad input becomes an AnsibleFilterError naming it."""
    @functools.wraps(function)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return function(*args, **kwargs)
        except (ValueError, KeyError, TypeError) as exc:
            raise AnsibleFilterError(f"{function.__name__}: {exc}") from exc
    FILTERS[function.__name__] = wrapper
    return wrapper


@role_filter
def disk_format_plan(domains: list[dict[str, t.Any]], format: str, overrides: dict[str, t.Any] | None = None,
                     exclude: list[str] | None = None, method: str = "auto", include: list[str] | None = None,
                     switches: list[dict[str, t.Any]] | None = None) -> list[dict[str, t.Any]]:
    records = plan_disks(domains, format, overrides or {}, exclude or [], method, ["*"] if include is None else include)
    return mark_stale_images(records, switches or [], domains)


@role_filter
def disk_format_rollback_plan(switches: list[dict[str, t.Any]], domains: list[dict[str, t.Any]], method: str = "auto",
                              include: list[str] | None = None,
                              exclude: list[str] | None = None) -> list[dict[str, t.Any]]:
    return rollback_plan(switches, domains, method, ["*"] if include is None else include, exclude or [])


@role_filter
def disk_format_preflight_requests(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return preflight_requests(records)


@role_filter
def disk_format_preflight(records: list[dict[str, t.Any]], results: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return apply_preflight(records, results)


@role_filter
def disk_format_space(records: list[dict[str, t.Any]], filesystems: list[dict[str, t.Any]],
                      margin_ratio: float = SPACE_MARGIN_RATIO,
                      margin_bytes: int = SPACE_MARGIN_BYTES) -> list[dict[str, t.Any]]:
    return space_by_filesystem([record for record in records if record["action"] == "convert"], filesystems,
                               margin_ratio, margin_bytes)


@role_filter
def disk_format_deadline(spec: str | int | float | None, started: float) -> float | None:
    return deadline_of(spec, float(started))


@role_filter
def disk_format_defer_late(records: list[dict[str, t.Any]], deadline: float | None, results: list[dict[str, t.Any]],
                           expected_mib_s: float | None = None, bandwidth_mib: int | None = None,
                           now: float | None = None) -> list[dict[str, t.Any]]:
    measured = measured_rate(results)
    schedule = Schedule(deadline, expected_mib_s, bandwidth_mib or None)
    return defer_late(records, schedule, measured, time.time() if now is None else now)


def measured_rate(results: list[dict[str, t.Any]]) -> float | None:
    """Bytes/s the conversions of this run moved so far (those that report a throughput)."""
    rates = [float(result["throughput_mib_s"]) * MIB for result in results if result.get("throughput_mib_s")]
    return sum(rates) / len(rates) if rates else None


@role_filter
def disk_format_seconds(records: list[dict[str, t.Any]], expected_mib_s: float, bandwidth_mib: int = 0,
                        parallel: int = 1) -> float:
    """Seconds these conversions should take: their data at the expected throughput (never above the cap),
    ``parallel`` at once."""
    schedule = Schedule(None, float(expected_mib_s), int(bandwidth_mib or 0) or None)
    rate = schedule.rate(None) or 1
    data = sum(int(record.get("required") or 0) for record in records)
    return data / rate / max(1, min(int(parallel), len(records) or 1))


@role_filter
def disk_format_duration(seconds: float) -> str:
    """Rounded up: a copy that takes a fraction of a second is not "about 0 s"."""
    return human_duration(math.ceil(float(seconds)))


@role_filter
def disk_format_offline_groups(records: list[dict[str, t.Any]], domains_per_group: int) -> list[list[dict[str, t.Any]]]:
    return offline_groups(records, domains_per_group)


@role_filter
def disk_format_conversions(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return conversion_images(records)


@role_filter
def disk_format_outcomes(disks: list[dict[str, t.Any]], task_results: list[dict[str, t.Any]], host: str,
                         downtime_s: float | None = None, running: bool = False) -> list[dict[str, t.Any]]:
    return outcome_records(disks, task_results, host, downtime_s, running)


@role_filter
def disk_format_offline_outcome(disks: list[dict[str, t.Any]], convert_results: list[dict[str, t.Any]], host: str,
                                update_result: dict[str, t.Any] | None = None,
                                downtime_s: float | None = 0, running: bool = False) -> dict[str, t.Any]:
    return offline_outcome(disks, convert_results, host, update_result, downtime_s, running)


@role_filter
def disk_format_host_record(host: str, plan: list[dict[str, t.Any]] | None = None,
                            results: list[dict[str, t.Any]] | None = None, failure: dict[str, t.Any] | None = None,
                            hypervisor: dict[str, t.Any] | None = None, domains: list[str] | None = None,
                            planning: bool = False, overrides: dict[str, t.Any] | None = None,
                            include: list[str] | None = None) -> dict[str, t.Any]:
    return host_record(host, plan=plan, results=results, failure=failure or None, hypervisor=hypervisor,
                       domains=domains, planning=planning, overrides=list(overrides or {}),
                       include=["*"] if include is None else include)


class FilterModule:
    def filters(self) -> dict[str, Filter]:
        return dict(FILTERS)
