# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The disk_format role's logic as filters; each is documented in the YAML file of its name beside this one."""

from __future__ import annotations

import functools
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import mark_stale_images, plan_disks
from ansible_collections.kvm.images.plugins.module_utils.fleet_report import report_records
from ansible_collections.kvm.images.plugins.module_utils.journal import parse_entries, pending_restarts
from ansible_collections.kvm.images.plugins.module_utils.outcomes import offline_outcome, outcome_records
from ansible_collections.kvm.images.plugins.module_utils.preflight import (
    apply_preflight,
    preflight_requests,
    space_by_filesystem,
)
from ansible_collections.kvm.images.plugins.module_utils.rollback_plan import rollback_plan
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
                     exclude: list[str] | None = None, method: str = "auto",
                     include: list[str] | None = None, journal: str = "") -> list[dict[str, t.Any]]:
    records = plan_disks(domains, format, overrides or {}, exclude or [], method, ["*"] if include is None else include)
    return mark_stale_images(records, parse_entries(journal or ""), domains)


@role_filter
def disk_format_space(records: list[dict[str, t.Any]], filesystems: list[dict[str, t.Any]],
                      margin_ratio: float = SPACE_MARGIN_RATIO,
                      margin_bytes: int = SPACE_MARGIN_BYTES) -> list[dict[str, t.Any]]:
    return space_by_filesystem(records, filesystems, margin_ratio, margin_bytes)


@role_filter
def disk_format_preflight(records: list[dict[str, t.Any]], results: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return apply_preflight(records, results)


@role_filter
def disk_format_preflight_requests(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return preflight_requests(records)


@role_filter
def disk_format_rollback_plan(journal: str, domains: list[dict[str, t.Any]], method: str = "auto",
                              include: list[str] | None = None,
                              exclude: list[str] | None = None) -> list[dict[str, t.Any]]:
    return rollback_plan(parse_entries(journal), domains, method, ["*"] if include is None else include, exclude or [])


@role_filter
def disk_format_outcomes(disks: list[dict[str, t.Any]], task_results: list[dict[str, t.Any]], host: str,
                         downtime_s: float | None = None, running: bool = False) -> list[dict[str, t.Any]]:
    return outcome_records(disks, task_results, host, downtime_s, running)


@role_filter
def disk_format_offline_outcome(disks: list[dict[str, t.Any]], convert_results: list[dict[str, t.Any]], host: str,
                                update_result: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    return offline_outcome(disks, convert_results, host, update_result)


@role_filter
def disk_format_report_records(results: list[dict[str, t.Any]], plan: list[dict[str, t.Any]],
                               host: str) -> list[dict[str, t.Any]]:
    return report_records(results, plan, host)


@role_filter
def disk_format_restart_pending(journal: str, domains: list[dict[str, t.Any]]) -> list[str]:
    # A running one was started by hand since: starting it is a no-op that closes its shutdown line.
    present = {domain["name"] for domain in domains if domain.get("state") in ("shut off", "running")}
    return [name for name in pending_restarts(journal) if name in present]


class FilterModule:
    def filters(self) -> dict[str, Filter]:
        return dict(FILTERS)
