# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What became of each disk a run converted, as records for the report (private to kvm.images)."""

from __future__ import annotations

import typing as t


def outcome_records(disks: list[dict[str, t.Any]], task_results: list[dict[str, t.Any]], host: str,
                    downtime_s: float | None = None, running: bool = False) -> list[dict[str, t.Any]]:
    """One result record per converted disk: its plan record plus what the task measured.

    ``task_results`` are the looped results of the converting module, in the
    order of ``disks``. A live copy reports its own pause (``max_pause_s``); an
    offline conversion is given the domain's downtime.
    """
    if len(disks) != len(task_results):
        raise ValueError(f"{len(disks)} disks but {len(task_results)} results")
    records = []
    for disk, result in zip(disks, task_results):
        record = dict(disk)
        record.update(
            host=host,
            status="converted",
            dest_size=result.get("dest_actual_size"),
            source_size=result.get("src_actual_size", disk.get("source_size")),
            duration_s=result.get("duration_s"),
            downtime_s=result.get("max_pause_s", downtime_s),
            verified=bool(result.get("verified")),
            running=running,
        )
        records.append(record)
    return records


def offline_outcome(disks: list[dict[str, t.Any]], convert_results: list[dict[str, t.Any]], host: str,
                    update_result: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Shut-off domains converted together: which to point at their new images, and what became of each disk.

    ``convert_results`` are the looped ``qemu_image_convert`` results, in the order
    of ``disks``. A domain is pointed at its new images only when every one of its
    disks converted. ``update_result`` is the ``libvirt_disk_update`` result, once
    it ran: a domain it did not update is failed, with its message; so is one it found no longer
    defined (undefined or renamed during the run), whose new images stay, verified and unused.
    """
    if len(disks) != len(convert_results):
        raise ValueError(f"{len(disks)} disks but {len(convert_results)} conversion results")
    errors: dict[str, str] = {}
    for disk, result in zip(disks, convert_results):
        if result.get("failed") and disk["domain"] not in errors:
            errors[disk["domain"]] = result.get("msg") or "the conversion failed"
    if update_result and update_result.get("failed"):
        updated = set(update_result.get("updated") or [])
        for disk in disks:
            if disk["domain"] not in errors and disk["domain"] not in updated:
                errors[disk["domain"]] = update_result.get("msg") or "the definition update failed"
    for update in (update_result or {}).get("disks") or []:
        if update.get("missing") and update["name"] not in errors:
            kept = ", ".join(disk["dest"] for disk in disks if disk["domain"] == update["name"])
            errors[update["name"]] = (f"domain {update['name']} was undefined or renamed during the run; its new"
                                      f" image(s) {kept} stay, verified and unused")
    moved = [index for index, disk in enumerate(disks) if disk["domain"] not in errors]
    results = outcome_records([disks[index] for index in moved], [convert_results[index] for index in moved],
                              host, 0, False)
    results += [dict(disk, host=host, status="failed", error=errors[disk["domain"]])
                for disk in disks if disk["domain"] in errors]
    updates = [{"name": disks[index]["domain"], "target": disks[index]["target"], "source": disks[index]["dest"],
                "driver_type": disks[index]["target_format"]} for index in moved]
    return {"updates": updates, "results": results}
