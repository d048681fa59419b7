# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The way back: converting the disks an earlier run switched into their original formats (private to kvm.images)."""

from __future__ import annotations

import typing as t

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import choose_method, first_match, with_summary


def latest_switches(entries: list[dict[str, t.Any]],
                    disks_now: dict[tuple[str, str], tuple[dict[str, t.Any], dict[str, t.Any]]],
                    ) -> list[dict[str, t.Any]]:
    """Per disk, the last switch to what it uses now; else its last switch (to say why it is left alone).

    A journal line is written before its switch, so the last line of a disk may be
    a switch that then failed; an earlier one may still describe the image it runs on.
    """
    by_disk: dict[tuple[str, str], list[dict[str, t.Any]]] = {}
    for entry in entries:
        by_disk.setdefault((entry["domain"], entry["target"]), []).append(entry)
    chosen = []
    for key, switches in by_disk.items():
        found = disks_now.get(key)
        now = (found[1].get("source"), found[1].get("driver_type")) if found else None
        matching = [entry for entry in switches if (entry.get("dest"), entry.get("target_format")) == now]
        chosen.append((matching or switches)[-1])
    return chosen


def rollback_plan(entries: list[dict[str, t.Any]], domains: list[dict[str, t.Any]],
                  method: str = "auto", include: t.Iterable[str] = ("*",),
                  exclude: t.Iterable[str] = ()) -> list[dict[str, t.Any]]:
    """Plan the way back for disks an earlier run switched (``entries``: its journal, oldest first).

    The kept original is stale as soon as the guest has written to the new image,
    so the way back is a fresh conversion of the image the domain uses now into
    the original format, at the original path. A disk that no longer uses the
    image the earlier run made is left alone.
    """
    disks_now = {(d["name"], disk.get("target")): (d, disk) for d in domains for disk in d.get("disks", [])}
    plan = []
    for done in latest_switches(entries, disks_now):
        record = {
            "domain": done["domain"], "target": done["target"], "source": done.get("dest"),
            "source_format": done.get("target_format"), "target_format": done.get("source_format"),
            "domain_state": None, "filesystem": None, "method": None, "dest": done.get("source"), "action": "skip",
            "reason": None, "replaces_stale_original": False,
        }
        found = disks_now.get((done["domain"], done["target"]))
        if first_match(done["domain"], include) is None or first_match(done["domain"], exclude) is not None:
            record["reason"] = "domain not selected by the include and exclude patterns"
        elif found is None:
            record["reason"] = "domain or disk no longer defined"
        else:
            domain, disk = found
            record["domain_state"] = domain.get("state")
            record["filesystem"] = disk.get("filesystem")
            chosen_method, method_problem = choose_method(domain.get("state", ""), method)
            if (disk.get("source"), disk.get("driver_type")) != (done.get("dest"), done.get("target_format")):
                record["reason"] = (f"disk now uses {disk.get('source')} ({disk.get('driver_type')}), not the image"
                                    f" the earlier run made; left alone")
            elif method_problem:
                record["reason"] = method_problem
            else:
                record.update(action="convert", method=chosen_method, replaces_stale_original=True,
                              reason=f"rollback {done.get('target_format')} -> {done.get('source_format')}"
                                     f" at the original path ({chosen_method})")
        plan.append(with_summary(record))
    return plan
