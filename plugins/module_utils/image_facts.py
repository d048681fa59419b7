# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Facts about one image, from its header first and qemu-img only when that is safe (private to kvm.images)."""

from __future__ import annotations

import os
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    HeaderReport,
    path_problems,
    printable,
    readable_backing,
    vet_image,
)
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import ImageInUseError, QemuImg, held_by_qemu

FACT_KEYS = ("format", "detected_format", "format_mismatch", "is_iso", "virtual_size", "actual_size",
             "dirty_flag", "in_use", "cluster_size", "compat", "lazy_refcounts", "compression_type",
             "encrypted", "backing_file", "backing_format", "backing_chain", "data_file", "snapshots",
             "check", "measure")


def empty_facts(path: str) -> dict[str, t.Any]:
    facts: dict[str, t.Any] = dict.fromkeys(FACT_KEYS)
    facts.update(path=path, exists=False, safety={"safe": False, "problems": []})
    return facts


def shown(name: str | None) -> str | None:
    """A name from the header as facts show it: bytes that are not UTF-8 as \\xNN."""
    return None if name is None else printable(name)


def header_facts(report: HeaderReport, declared: str | None) -> dict[str, t.Any]:
    return {
        "format": declared or report.detected_format,
        "detected_format": report.detected_format,
        "format_mismatch": declared is not None and declared != report.detected_format,
        "is_iso": report.is_iso,
        "virtual_size": report.virtual_size,
        "cluster_size": report.cluster_size,
        "compat": report.compat,
        "lazy_refcounts": report.lazy_refcounts if report.qcow2_version == 3 else None,
        "compression_type": report.compression_type,
        "encrypted": report.encrypted,
        "backing_file": shown(report.backing_file),
        "backing_format": shown(report.backing_format),
        "data_file": shown(report.data_file),
        "dirty_flag": report.dirty if report.qcow2_version else None,
    }


def qemu_info_facts(info: dict[str, t.Any]) -> dict[str, t.Any]:
    """The fields of ``qemu-img info --output=json`` that the header cannot tell."""
    specific = (info.get("format-specific") or {}).get("data") or {}
    facts: dict[str, t.Any] = {
        "virtual_size": info.get("virtual-size"),
        "actual_size": info.get("actual-size"),
        "dirty_flag": info.get("dirty-flag"),
        "cluster_size": info.get("cluster-size"),
        "encrypted": bool(info.get("encrypted", False)),
        "snapshots": [
            {"id": snap.get("id"), "name": snap.get("name"), "vm_state_size": snap.get("vm-state-size")}
            for snap in info.get("snapshots") or []
        ],
    }
    if specific:
        facts.update(compat=specific.get("compat"), lazy_refcounts=specific.get("lazy-refcounts"),
                     compression_type=specific.get("compression-type"))
    return facts


def gather(qemu: QemuImg, path: str, declared: str | None, *, backing_chain: bool = False, check: bool = False,
           measure_format: str | None = None, force_share: bool = False,
           allowed_backing_dirs: list[str] | None = None) -> dict[str, t.Any]:
    facts = empty_facts(path)
    if not os.path.lexists(path):
        return facts
    facts["exists"] = True
    problems = path_problems(path)
    if problems:
        facts["safety"] = {"safe": False, "problems": problems}
        return facts
    vetting = vet_image(path, declared, allowed_backing_dirs)
    report, problems = vetting.report, vetting.problems
    facts.update(header_facts(report, declared))
    facts["actual_size"] = os.stat(path).st_blocks * 512
    facts["safety"] = {"safe": not problems, "problems": problems}
    facts["in_use"] = held_by_qemu(path)
    if problems:
        # Hostile or broken: qemu-img does not get to parse it.
        return facts
    if facts["in_use"] and not force_share:
        return facts
    fmt = facts["format"]
    share = force_share and facts["in_use"]
    backing = readable_backing(vetting, path, allowed_backing_dirs)
    try:
        facts.update(qemu_info_facts(qemu.info(path, fmt, force_share=share, backing=backing)))
        if backing_chain:
            chain = qemu.info(path, fmt, backing_chain=True, force_share=share, backing=backing)
            facts["backing_chain"] = [
                {"filename": item.get("filename"), "format": item.get("format"),
                 "virtual_size": item.get("virtual-size")} for item in chain
            ]
        if check:
            check_result = qemu.check(path, fmt, force_share=share, backing=backing)
            check_result.pop("raw", None)
            facts["check"] = check_result
        if measure_format:
            facts["measure"] = qemu.measure(path, fmt, measure_format, force_share=share, backing=backing)
    except ImageInUseError:
        # Took the lock between our probe and qemu-img's open.
        facts["in_use"] = True
    return facts


# The per-image options of a batched call; an image that leaves one unset takes the call's own.
PER_IMAGE_OPTIONS = ("format", "backing_chain", "check", "measure_format", "force_share")


def gather_each(qemu: QemuImg, images: list[dict[str, t.Any]], defaults: dict[str, t.Any],
                allowed_backing_dirs: list[str] | None = None) -> list[dict[str, t.Any]]:
    """Facts for several images in one process, in order; one that cannot be read fails alone.

    A failed image gets ``failed`` and ``msg`` (the keys a failed module result has) instead of
    failing the rest.
    """
    results = []
    for image in images:
        options = {key: defaults.get(key) if image.get(key) is None else image[key] for key in PER_IMAGE_OPTIONS}
        path = image["path"]
        try:
            results.append(gather(qemu, path, options["format"], backing_chain=bool(options["backing_chain"]),
                                  check=bool(options["check"]), measure_format=options["measure_format"],
                                  force_share=bool(options["force_share"]),
                                  allowed_backing_dirs=allowed_backing_dirs))
        except KvmImagesError as exc:
            results.append({"path": path, "failed": True, "msg": str(exc)})
        except OSError as exc:
            results.append({"path": path, "failed": True, "msg": f"cannot read {path}: {exc.strerror}"})
    return results
