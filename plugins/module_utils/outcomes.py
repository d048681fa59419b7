# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What became of each disk a run converted, as records for the report (private to kvm.images).

A domain moves whole or not at all; each disk's record still carries its own outcome and its own error.
"""

from __future__ import annotations

import typing as t

# What a converting module's result adds to a disk's record (record key: result key).
MEASURED = {"dest_size": "dest_actual_size", "duration_s": "duration_s", "throughput_mib_s": "throughput_mib_s",
            "copy_mode": "copy_mode", "attempts": "attempts"}


def converted_record(disk: dict[str, t.Any], result: dict[str, t.Any], host: str, *, downtime_s: float | None,
                     running: bool) -> dict[str, t.Any]:
    """A disk that moved: its plan record and what the module measured. A live copy reports its own pause
    (``max_pause_s``); an offline conversion is given its domain's downtime."""
    record = dict(disk, host=host, status="converted", running=running, verified=bool(result.get("verified")),
                  source_size=result.get("src_actual_size", disk.get("source_size")),
                  downtime_s=result.get("max_pause_s", downtime_s))
    record.update({key: result[name] for key, name in MEASURED.items() if name in result})
    return record


def not_converted(disk: dict[str, t.Any], host: str, status: str, why: str) -> dict[str, t.Any]:
    """A disk that did not move: failed (with its ``error``) or deferred (with its ``reason``)."""
    return dict(disk, host=host, status=status, **{"error" if status == "failed" else "reason": why})


def outcome_records(disks: list[dict[str, t.Any]], task_results: list[dict[str, t.Any]], host: str,
                    downtime_s: float | None = None, running: bool = False) -> list[dict[str, t.Any]]:
    """One record per disk that moved on its own - a live copy pivots disk by disk - with its own outcome:
    converted, failed (its own message) or deferred; ``task_results`` in the order of ``disks``."""
    if len(disks) != len(task_results):
        raise ValueError(f"{len(disks)} disks but {len(task_results)} results")
    records = []
    for disk, result in zip(disks, task_results):
        outcome = own_outcome(result)
        if outcome is None:
            records.append(converted_record(disk, result, host, downtime_s=downtime_s, running=running))
        else:
            status, why = outcome
            records.append(not_converted(disk, host, status, why))
    return records


def own_outcome(result: dict[str, t.Any]) -> tuple[str, str] | None:
    """(status, why) of a disk whose own conversion did not happen, else None."""
    if result.get("failed"):
        return "failed", result.get("msg") or "the conversion failed"
    if result.get("deferred"):
        return "deferred", result.get("reason") or "deferred"
    return None


def held_back(disk: dict[str, t.Any], siblings: list[tuple[str, str, str]]) -> tuple[str, str]:
    """A disk converted (or not) whose domain did not move because of its other disks: its own words."""
    targets = ", ".join(target for target, _status, _why in siblings)
    status = "failed" if any(status == "failed" for _target, status, _why in siblings) else "deferred"
    verb = "failed" if status == "failed" else "was deferred"
    return status, f"not switched: disk {targets} of {disk['domain']} {verb}, and a domain moves whole"


def offline_outcome(disks: list[dict[str, t.Any]], convert_results: list[dict[str, t.Any]], host: str,
                    update_result: dict[str, t.Any] | None = None,
                    downtime_s: float | None = 0, running: bool = False) -> dict[str, t.Any]:
    """Domains converted offline together: which to point at their new images, and what became of each disk.

    ``convert_results`` are qemu_image_convert's results, in the order of ``disks``. A domain is pointed at its
    new images only when every one of its disks converted. ``update_result`` is the libvirt_disk_update
    result, once it ran: a domain it did not update failed with its message; so did one it found no longer
    defined (undefined or renamed during the run), whose new images stay, verified and unused. ``running``:
    the domains were shut down for the conversion and started again, so the moved ones run on their new images.
    """
    if len(disks) != len(convert_results):
        raise ValueError(f"{len(disks)} disks but {len(convert_results)} conversion results")
    own = [own_outcome(result) for result in convert_results]
    troubled: dict[str, list[tuple[str, str, str]]] = {}
    for disk, outcome in zip(disks, own):
        if outcome is not None:
            troubled.setdefault(disk["domain"], []).append((disk["target"], *outcome))
    domain_errors = update_errors(disks, troubled, update_result)
    results = []
    for disk, result, outcome in zip(disks, convert_results, own):
        name = disk["domain"]
        if outcome is not None:
            status, why = outcome
        elif name in troubled:
            status, why = held_back(disk, troubled[name])
        elif name in domain_errors:
            status, why = "failed", domain_errors[name]
        else:
            results.append(converted_record(disk, result, host, downtime_s=downtime_s, running=running))
            continue
        results.append(not_converted(disk, host, status, why))
    moved = [disk for disk in disks if disk["domain"] not in troubled and disk["domain"] not in domain_errors]
    updates = [{"name": disk["domain"], "target": disk["target"], "source": disk["dest"],
                "driver_type": disk["target_format"]} for disk in moved]
    return {"updates": updates, "results": results}


def update_errors(disks: list[dict[str, t.Any]], troubled: dict[str, t.Any],
                  update_result: dict[str, t.Any] | None) -> dict[str, str]:
    """Per domain that should have moved, why its definition did not change."""
    errors: dict[str, str] = {}
    if not update_result:
        return errors
    if update_result.get("failed"):
        updated = set(update_result.get("updated") or [])
        for disk in disks:
            if disk["domain"] not in troubled and disk["domain"] not in updated:
                errors[disk["domain"]] = update_result.get("msg") or "the definition update failed"
    for update in update_result.get("disks") or []:
        if update.get("missing") and update["name"] not in errors:
            kept = ", ".join(disk["dest"] for disk in disks if disk["domain"] == update["name"])
            errors[update["name"]] = (f"domain {update['name']} was undefined or renamed during the run; its new"
                                      f" image(s) {kept} stay, verified and unused")
    return errors
