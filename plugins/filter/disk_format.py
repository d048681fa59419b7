# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import (
    apply_preflight,
    mark_stale_images,
    offline_outcome,
    outcome_records,
    plan_disks,
    preflight_requests,
    report_records,
    rollback_plan,
    space_by_filesystem,
)
from ansible_collections.kvm.images.plugins.module_utils.journal import parse_entries, pending_restarts


def disk_format_plan(domains: list[dict[str, t.Any]], target: str, overrides: dict[str, t.Any] | None = None,
                     exclude: list[str] | None = None, method: str = "auto",
                     include: list[str] | None = None, journal: str = "") -> list[dict[str, t.Any]]:
    try:
        records = plan_disks(domains, target, overrides or {}, exclude or [], method,
                             ["*"] if include is None else include)
        return mark_stale_images(records, parse_entries(journal or ""), domains)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_plan: {exc}") from exc


def disk_format_space(records: list[dict[str, t.Any]], filesystems: list[dict[str, t.Any]],
                      margin_ratio: float = 0.05, margin_bytes: int = 64 << 20) -> list[dict[str, t.Any]]:
    try:
        return space_by_filesystem(records, filesystems, margin_ratio, margin_bytes)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_space: {exc}") from exc


def disk_format_preflight(records: list[dict[str, t.Any]], results: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    try:
        return apply_preflight(records, results)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_preflight: {exc}") from exc


def disk_format_preflight_requests(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    try:
        return preflight_requests(records)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_preflight_requests: {exc}") from exc


def disk_format_rollback_plan(journal: str, domains: list[dict[str, t.Any]],
                              method: str = "auto", include: list[str] | None = None,
                              exclude: list[str] | None = None) -> list[dict[str, t.Any]]:
    try:
        return rollback_plan(parse_entries(journal), domains, method, ["*"] if include is None else include, exclude or [])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_rollback_plan: {exc}") from exc


def disk_format_outcomes(disks: list[dict[str, t.Any]], task_results: list[dict[str, t.Any]], host: str,
                         downtime_s: float | None = None, running: bool = False) -> list[dict[str, t.Any]]:
    try:
        return outcome_records(disks, task_results, host, downtime_s, running)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_outcomes: {exc}") from exc


def disk_format_offline_outcome(disks: list[dict[str, t.Any]], convert_results: list[dict[str, t.Any]], host: str,
                                update_result: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    try:
        return offline_outcome(disks, convert_results, host, update_result)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_offline_outcome: {exc}") from exc


def disk_format_report_records(results: list[dict[str, t.Any]], plan: list[dict[str, t.Any]],
                               host: str) -> list[dict[str, t.Any]]:
    try:
        return report_records(results, plan, host)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_report_records: {exc}") from exc


def disk_format_restart_pending(journal: str, domains: list[dict[str, t.Any]]) -> list[str]:
    try:
        # A running one was started by hand since: starting it is a no-op that closes its shutdown line.
        present = {domain["name"] for domain in domains if domain.get("state") in ("shut off", "running")}
        return [name for name in pending_restarts(journal) if name in present]
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"disk_format_restart_pending: {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            "disk_format_plan": disk_format_plan,
            "disk_format_space": disk_format_space,
            "disk_format_preflight": disk_format_preflight,
            "disk_format_preflight_requests": disk_format_preflight_requests,
            "disk_format_rollback_plan": disk_format_rollback_plan,
            "disk_format_restart_pending": disk_format_restart_pending,
            "disk_format_outcomes": disk_format_outcomes,
            "disk_format_offline_outcome": disk_format_offline_outcome,
            "disk_format_report_records": disk_format_report_records,
        }
