# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's preflight: which sources pass their checks, and whether the new images fit (private to kvm.images)."""

from __future__ import annotations

import typing as t

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import with_summary
from ansible_collections.kvm.images.plugins.module_utils.space import (
    SPACE_MARGIN_BYTES,
    SPACE_MARGIN_RATIO,
    with_margin,
)


def space_by_filesystem(records: list[dict[str, t.Any]], filesystems: list[dict[str, t.Any]],
                        margin_ratio: float = SPACE_MARGIN_RATIO,
                        margin_bytes: int = SPACE_MARGIN_BYTES) -> list[dict[str, t.Any]]:
    """Sum what every planned conversion needs on each file system together.

    New images go beside their sources, so a record's ``filesystem`` (from
    libvirt_disk_info) is where its ``required`` bytes go. A file system is
    short when the sum plus a margin exceeds what it has free.
    """
    free = {entry["id"]: entry for entry in filesystems}
    totals: dict[str, dict[str, t.Any]] = {}
    for record in records:
        key = record.get("filesystem") or "unknown"
        known = free.get(key)
        entry = totals.setdefault(key, {
            "filesystem": key,
            "directories": known["directories"] if known else [],
            "available": known["free"] if known else None,
            "required": 0,
            "disks": [],
        })
        entry["required"] += int(record.get("required") or 0)
        entry["disks"].append(record["dest"])
    for entry in totals.values():
        entry["required_with_margin"] = with_margin(entry["required"], margin_ratio, margin_bytes)
        entry["enough"] = entry["available"] is not None and entry["available"] >= entry["required_with_margin"]
    return sorted(totals.values(), key=lambda entry: entry["filesystem"])


def preflight_requests(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The ``images`` option of one ``qemu_image_info`` call that checks every disk to convert.

    A running guest's image is read with -U for metadata; ``qemu-img check``
    needs it quiescent, so only shut-off guests' images are checked.
    """
    return [{"path": record["source"], "format": record["source_format"],
             "check": record["domain_state"] != "running", "force_share": record["domain_state"] == "running",
             "measure_format": record["target_format"]}
            for record in records if record["action"] == "convert"]


def apply_preflight(records: list[dict[str, t.Any]], results: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """Fold the ``qemu_image_info`` results into the plan.

    ``results`` is either the ``images`` of one call made with preflight_requests,
    in the order of the disks to convert, or the ``results`` of a task looped over
    those disks. A disk whose image could not be read, is unsafe, or fails
    ``qemu-img check`` is skipped with the reason; the others gain their sizes.
    """
    to_convert = [(record["domain"], record["target"]) for record in records if record["action"] == "convert"]
    if results and all("item" in result for result in results):
        by_disk = {(r["item"]["domain"], r["item"]["target"]): r for r in results}
    elif len(results) == len(to_convert):
        by_disk = dict(zip(to_convert, results))
    else:
        raise ValueError(f"{len(results)} image results for {len(to_convert)} disks to convert")
    unchecked = [f"{domain} {target}" for domain, target in to_convert if (domain, target) not in by_disk]
    if unchecked:
        # A disk to convert that was never checked must not go ahead as if it passed.
        raise ValueError(f"no image result for {', '.join(unchecked)}")
    merged = []
    for record in records:
        record = dict(record)
        result = by_disk.get((record["domain"], record["target"]))
        if record["action"] == "convert" and result is not None:
            record.update(preflight_verdict(result))
        merged.append(with_summary(record))
    return merged


def preflight_verdict(result: dict[str, t.Any]) -> dict[str, t.Any]:
    if result.get("failed"):
        return {"action": "skip", "reason": f"preflight failed: {result.get('msg', 'unknown error')}"}
    if result.get("exists") is False:
        return {"action": "skip", "reason": "the source image does not exist"}
    safety = result.get("safety") or {}
    if not safety.get("safe", False):
        problems = "; ".join(safety.get("problems") or ["not known to be safe"])
        return {"action": "skip", "reason": f"unsafe image: {problems}"}
    if result.get("is_iso"):
        return {"action": "skip", "reason": "an ISO 9660 image attached as a disk; left as it is"}
    if result.get("snapshots"):
        return {"action": "skip", "reason": f"the image holds {len(result['snapshots'])} internal snapshot(s),"
                                            " which a conversion would drop"}
    check = result.get("check") or {}
    # raw images have no metadata for qemu-img check to examine ("unsupported").
    if check.get("status") not in (None, "clean", "leaks", "unsupported"):
        return {"action": "skip", "reason": f"qemu-img check found the image {check['status']}"}
    measure = result.get("measure") or {}
    return {
        "virtual_size": result.get("virtual_size"),
        "source_size": result.get("actual_size"),
        "required": measure.get("required"),
    }
