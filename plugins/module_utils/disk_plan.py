# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet planning for the disk_format role: pure functions (private to kvm.images)."""

from __future__ import annotations

import fnmatch
import os
import typing as t

FORMATS = ("raw", "qcow2")
METHODS = ("auto", "live", "offline")
EXTENSIONS = {"raw": ".raw", "qcow2": ".qcow2"}
# Extensions that name a format; anything else is kept and the new one appended.
KNOWN_EXTENSIONS = (".raw", ".img", ".qcow2", ".qcow", ".bin")


def destination_path(source: str, target_format: str) -> str:
    """Where the converted image goes: beside the source, extension replaced."""
    stem, ext = os.path.splitext(source)
    if ext.lower() not in KNOWN_EXTENSIONS:
        stem = source
    dest = stem + EXTENSIONS[target_format]
    if dest == source:
        # e.g. a raw file named *.qcow2 by mistake: never write over the source.
        dest = stem + "-" + target_format + EXTENSIONS[target_format]
    return dest


def excluded_by(name: str, patterns: t.Iterable[str]) -> str | None:
    """The first shell-style pattern ``name`` matches, if any."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def desired_format(name: str, default: str, overrides: dict[str, t.Any]) -> str:
    override = overrides.get(name) or {}
    return override.get("target", default)


def choose_method(state: str, method: str) -> tuple[str | None, str | None]:
    """(method, None) or (None, reason to skip) for a domain in ``state``."""
    if state == "running":
        return ("offline" if method == "offline" else "live"), None
    if state == "shut off":
        # Nothing runs, so there is no downtime to avoid: offline whatever was asked.
        return "offline", None
    return None, f"domain is {state}; shut it down or resume it first"


def plan_disks(domains: list[dict[str, t.Any]], default_target: str,
               overrides: dict[str, t.Any] | None = None,
               exclude: t.Iterable[str] = (), method: str = "auto",
               include: t.Iterable[str] = ("*",)) -> list[dict[str, t.Any]]:
    """One record per disk: ``action`` convert, ok (already there) or skip, with a reason."""
    if default_target not in FORMATS:
        raise ValueError(f"target format must be one of {', '.join(FORMATS)}, not {default_target!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    overrides = overrides or {}
    exclude = list(exclude)
    include = list(include)
    records = []
    for domain in domains:
        name = domain["name"]
        target = desired_format(name, default_target, overrides)
        if target not in FORMATS:
            raise ValueError(f"disk_format_domains[{name!r}].target must be one of {', '.join(FORMATS)}, not {target!r}")
        pattern = excluded_by(name, exclude)
        included = excluded_by(name, include) is not None
        chosen_method, method_problem = choose_method(domain.get("state", ""), method)
        for disk in domain.get("disks", []):
            record = {
                "domain": name,
                "target": disk.get("target"),
                "source": disk.get("source"),
                "source_format": disk.get("driver_type"),
                "target_format": target,
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
            elif disk.get("driver_type") == target:
                record["action"] = "ok"
                record["reason"] = f"already {target}"
            elif method_problem:
                record["reason"] = method_problem
            else:
                record.update(action="convert", method=chosen_method,
                              dest=destination_path(disk["source"], target),
                              reason=f"{disk.get('driver_type')} -> {target} ({chosen_method})")
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
    record["summary"] = f"{record['domain']} {record['target']} {record['source']}: {record['action']} ({record['reason']})"
    return record


def space_by_filesystem(records: list[dict[str, t.Any]], filesystems: list[dict[str, t.Any]],
                        margin_ratio: float = 0.05, margin_bytes: int = 64 << 20) -> list[dict[str, t.Any]]:
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
        entry["required_with_margin"] = int(entry["required"] * (1 + margin_ratio)) + margin_bytes
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


def latest_switches(entries: list[dict[str, t.Any]],
                    disks_now: dict[tuple[str, str], tuple[dict[str, t.Any], dict[str, t.Any]]]) -> list[dict[str, t.Any]]:
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
        if excluded_by(done["domain"], include) is None or excluded_by(done["domain"], exclude) is not None:
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


def report_records(results: list[dict[str, t.Any]], plan: list[dict[str, t.Any]], host: str) -> list[dict[str, t.Any]]:
    """What was done, then every other planned disk as planned (skipped, already there, or not reached)."""
    done = {(r["domain"], r["target"]) for r in results}
    rest = [dict(record, host=host) for record in plan if (record["domain"], record["target"]) not in done]
    return list(results) + rest


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
