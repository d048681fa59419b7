# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet plan of the disk_format role: what to do with each disk, and why (private to kvm.images)."""

from __future__ import annotations

import fnmatch
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.destination import destination_path
from ansible_collections.kvm.images.plugins.module_utils.formats import TARGET_FORMATS

METHODS = ("auto", "live", "offline")


def first_match(name: str, patterns: t.Iterable[str]) -> str | None:
    """The first shell-style pattern ``name`` matches, if any."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def desired_format(name: str, default: str, overrides: dict[str, t.Any]) -> str:
    """The format a domain's disks should have: its override's ``format``, else the default."""
    override = overrides.get(name) or {}
    if "target" in override:
        # A disk's target is its device (vda); the key was renamed so that a format is called a format.
        raise ValueError(f"disk_format_domains[{name!r}] sets target; the format is set with format"
                         f" (format: {override['target']})")
    wanted = override.get("format", default)
    if wanted not in TARGET_FORMATS:
        raise ValueError(f"disk_format_domains[{name!r}].format must be one of {', '.join(TARGET_FORMATS)},"
                         f" not {wanted!r}")
    return wanted


def choose_method(state: str, method: str) -> tuple[str | None, str | None]:
    """(method, None) or (None, reason to skip) for a domain in ``state``."""
    if state == "running":
        return ("offline" if method == "offline" else "live"), None
    if state == "shut off":
        # Nothing runs, so there is no downtime to avoid: offline whatever was asked.
        return "offline", None
    return None, f"domain is {state}; shut it down or resume it first"


def plan_disks(domains: list[dict[str, t.Any]], default_format: str,
               overrides: dict[str, t.Any] | None = None,
               exclude: t.Iterable[str] = (), method: str = "auto",
               include: t.Iterable[str] = ("*",)) -> list[dict[str, t.Any]]:
    """One record per disk: ``action`` convert, ok (already there) or skip, with a reason.

    ``default_format`` is the format every disk should have unless its domain's entry in ``overrides``
    says another; ``include`` and ``exclude`` are shell-style patterns of domain names.
    """
    if default_format not in TARGET_FORMATS:
        raise ValueError(f"the format must be one of {', '.join(TARGET_FORMATS)}, not {default_format!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    overrides = overrides or {}
    exclude = list(exclude)
    include = list(include)
    records = []
    for domain in domains:
        name = domain["name"]
        wanted_format = desired_format(name, default_format, overrides)
        pattern = first_match(name, exclude)
        included = first_match(name, include) is not None
        chosen_method, method_problem = choose_method(domain.get("state", ""), method)
        for disk in domain.get("disks", []):
            record = {
                "domain": name,
                "target": disk.get("target"),
                "source": disk.get("source"),
                "source_format": disk.get("driver_type"),
                "target_format": wanted_format,
                "domain_state": domain.get("state"),
                "filesystem": disk.get("filesystem"),
                "method": None,
                "dest": None,
                "action": "skip",
                "reason": None,
            }
            if not included:
                record["reason"] = "domain matches no pattern of the include list"
            elif pattern is not None:
                record["reason"] = f"domain excluded by pattern {pattern!r}"
            elif not disk.get("convertible"):
                record["reason"] = disk.get("skip_reason") or "not convertible"
            elif disk.get("driver_type") == wanted_format:
                record["action"] = "ok"
                record["reason"] = f"already {wanted_format}"
            elif method_problem:
                record["reason"] = method_problem
            else:
                record.update(action="convert", method=chosen_method,
                              dest=destination_path(disk["source"], wanted_format),
                              reason=f"{disk.get('driver_type')} -> {wanted_format} ({chosen_method})")
            records.append(with_summary(record))
    return records


def mark_stale_images(records: list[dict[str, t.Any]], entries: list[dict[str, t.Any]],
                      domains: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """A conversion whose destination is the image its disk last moved away from (a rollback kept it,
    with keep_source) replaces it: that copy is stale, and qemu_image_convert would refuse it as foreign.

    Only when no domain uses that file now. ``entries`` are the journal's switches, oldest first.
    """
    last = {(entry["domain"], entry["target"]): entry for entry in entries}
    in_use = {disk.get("source") for domain in domains for disk in domain.get("disks", [])}
    for record in records:
        entry = last.get((record["domain"], record["target"]))
        if (record["action"] == "convert" and entry is not None and record["dest"] not in in_use
                and (entry.get("source"), entry.get("dest")) == (record["dest"], record["source"])):
            record["replaces_stale_original"] = True
            record["reason"] += f"; replaces {record['dest']}, the stale image the disk left in an earlier run"
            with_summary(record)
    return records


def with_summary(record: dict[str, t.Any]) -> dict[str, t.Any]:
    """One line a person reads in the plan output."""
    record["summary"] = (f"{record['domain']} {record['target']} {record['source']}: {record['action']}"
                         f" ({record['reason']})")
    return record


def offline_groups(records: list[dict[str, t.Any]], domains_per_group: int) -> list[list[dict[str, t.Any]]]:
    """The disks to convert of running domains taken offline, in groups of whole domains: each group is shut
    down, converted and started together."""
    by_domain: dict[str, list[dict[str, t.Any]]] = {}
    for record in records:
        if record.get("action") == "convert" and record.get("domain_state") == "running" \
                and record.get("method") == "offline":
            by_domain.setdefault(record["domain"], []).append(record)
    names = list(by_domain)
    size = max(1, int(domains_per_group))
    return [[disk for name in names[start:start + size] for disk in by_domain[name]]
            for start in range(0, len(names), size)]


def conversion_images(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """qemu_image_convert's ``images`` for these records; a stale image at a destination is replaced."""
    return [{"src": record["source"], "src_format": record["source_format"], "dest": record["dest"],
             "format": record["target_format"], "label": f"{record['domain']} {record['target']}",
             "force": bool(record.get("replaces_stale_original"))} for record in records]
