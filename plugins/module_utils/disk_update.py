# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edit disks of a domain's persistent definition, safely (private to kvm.images)."""

from __future__ import annotations

import os
import typing as t
from dataclasses import dataclass

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    inspect_path,
    path_problems,
    safety_problems,
)
from ansible_collections.kvm.images.plugins.module_utils.journal import record_before, switch_entry
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import NO_DOMAIN, inactive_xml, libvirt_call


def check_new_source(path: str, driver_type: str | None, current_type: str | None,
                     allowed_backing_dirs: list[str] | None) -> None:
    """Never tell QEMU a format the file does not have."""
    fmt = driver_type or current_type
    problems = path_problems(path)
    if not problems:
        problems = safety_problems(inspect_path(path), fmt, allowed_backing_dirs=allowed_backing_dirs, path=path)
    if problems:
        raise KvmImagesError(f"refusing to point the disk at {path} as {fmt}: {'; '.join(problems)};"
                             " the definition was not changed", source=path, problems=problems)


def switch_refusal(disk: dict[str, t.Any], switches_image: bool) -> str | None:
    """Why this module must not change ``disk`` (its facts), or None.

    Only disks are changed here; a disk whose source is sliced or encrypted keeps its image, since the
    same <slices> or <encryption> on a converted file would make the guest read other bytes.
    """
    if disk["device"] != "disk":
        return f"disk {disk['target']} is a {disk['device']}; only disks are changed"
    if switches_image and disk.get("slices"):
        return f"disk {disk['target']} has <slices> in its <source>: {domain_xml.SLICES_KEEP_THEIR_IMAGE}"
    if switches_image and disk.get("encryption"):
        where = "its <source>" if disk["encryption"] == "source" else "the disk"
        return f"disk {disk['target']} has <encryption> in {where}: {domain_xml.ENCRYPTION_KEEPS_ITS_IMAGE}"
    return None


@dataclass
class DiskChange:
    """One disk, chosen by target or current source, and what to set on it (None: leave as it is)."""

    target: str | None
    match_source: str | None
    source: str | None = None
    driver_type: str | None = None
    driver_options: dict[str, str | None] | None = None


@dataclass
class Edit:
    read_xml: str         # as libvirt gave it, to detect a concurrent change
    before: str           # before and after through the same serializer, for the diff
    after: str
    disks: list[dict[str, t.Any]]   # each chosen disk as it was, in the order of the changes

    @property
    def disk(self) -> dict[str, t.Any]:
        return self.disks[0]

    @property
    def changed(self) -> bool:
        return self.before != self.after


class DiskUpdate:
    """Decide on a copy of the definition, then (outside check mode) define it and read it back."""

    def __init__(self, dom: t.Any) -> None:
        self.dom = dom
        self.name = dom.name()

    def plan_changes(self, changes: list[DiskChange]) -> Edit:
        """Every change on one copy of the definition, so that one define makes them all."""
        read_xml = inactive_xml(self.dom)
        root = domain_xml.parse(read_xml)
        before = domain_xml.serialize(root)
        chosen = []
        facts = []
        for change in changes:
            disk = domain_xml.find_disk(root, target=change.target, source=change.match_source)
            if any(disk is other for other in chosen):
                raise KvmImagesError(f"domain {self.name}: disk {domain_xml.disk_facts(disk)['target']} is named"
                                     " twice; nothing was changed", domain=self.name)
            chosen.append(disk)
            facts.append(domain_xml.disk_facts(disk))
        for disk, change in zip(chosen, changes):
            domain_xml.set_disk(disk, source=change.source, driver_type=change.driver_type,
                                driver_options=change.driver_options or {})
        return Edit(read_xml, before, domain_xml.serialize(root), facts)

    def apply(self, read_xml: str, new_xml: str, expected: list[dict[str, t.Any]]) -> None:
        # Someone else may have edited the domain since we read it.
        if domain_xml.canonical(inactive_xml(self.dom)) != domain_xml.canonical(read_xml):
            raise KvmImagesError(f"the definition of {self.name} changed while it was being edited;"
                                 " nothing was written, run again", domain=self.name)
        conn = self.dom.connect()
        libvirt_call(f"cannot define {self.name}", conn.defineXML, new_xml)
        root = domain_xml.parse(inactive_xml(self.dom))
        for wanted in expected:
            disk = domain_xml.disk_facts(domain_xml.find_disk(root, target=wanted["target"]))
            wrong = {key: (disk.get(key), value) for key, value in wanted.items()
                     if value is not None and key != "target" and disk.get(key) != value}
            if wrong:
                raise KvmImagesError(f"after defining {self.name}, disk {wanted['target']} reads back as"
                                     f" {wrong}", domain=self.name, read_back=disk)


def describe_change(before: dict[str, t.Any], wanted: dict[str, t.Any]) -> str | None:
    """``vda: source A -> B, driver_type raw -> qcow2``, or None when the disk already has what is wanted."""
    parts = []
    for key in ("source", "driver_type"):
        if wanted.get(key) is not None and wanted[key] != before.get(key):
            parts.append(f"{key} {before.get(key)} -> {wanted[key]}")
    for key in domain_xml.DRIVER_OPTIONS:
        if wanted.get(key) is not None and wanted[key] != before["driver"].get(key):
            parts.append(f"{key} {before['driver'].get(key)} -> {wanted[key]}")
    return f"{before['target']}: " + ", ".join(parts) if parts else None


def change_of(wanted: dict[str, t.Any]) -> DiskChange:
    return DiskChange(wanted.get("target"), wanted.get("match_source"), wanted.get("source"),
                      wanted.get("driver_type"), {key: wanted.get(key) for key in domain_xml.DRIVER_OPTIONS})


def update_disks(connection: t.Any, disks: list[dict[str, t.Any]], *, on_running: str,
                 allowed_backing_dirs: list[str] | None,
                 apply: bool, journal: str | None = None,
                 on_missing: str = "fail",
                 expect_new_images: bool = False) -> tuple[list[dict[str, t.Any]], list[tuple[str, Edit]]]:
    """Several disks of one or more domains: every change decided and checked first, then each domain
    defined once. Returns a result per disk, in order, and (name, edit) of each domain that changes.

    A failure while deciding writes nothing; a failure while defining names the domains already done.
    Each domain's switches of source or format go to ``journal`` just before it is defined. With
    ``on_missing`` skip, the disks of a domain that is not defined (any more) are results with
    ``missing`` true, and the other domains change all the same. With ``expect_new_images`` and without
    ``apply`` (check mode), a new source that does not exist yet is taken for the image an earlier task of the
    same run makes: the change is predicted without reading it.
    """
    by_domain: dict[str, list[int]] = {}
    for index, wanted in enumerate(disks):
        by_domain.setdefault(wanted["name"], []).append(index)
    results: list[dict[str, t.Any]] = [{} for _disk in disks]
    planned = []
    for name, indexes in by_domain.items():
        try:
            dom = connection.domain(name)
        except KvmImagesError as exc:
            if on_missing != "skip" or exc.details.get("libvirt_code") != NO_DOMAIN:
                raise
            for index in indexes:
                results[index] = {"name": name, "target": disks[index].get("target"), "changed": False,
                                  "missing": True, "reason": f"domain {name} is not defined", "pending_restart": False,
                                  "disk": None}
            continue
        if not libvirt_call(f"cannot read the state of {name}", dom.isPersistent):
            raise KvmImagesError(f"domain {name} is transient: it has no persistent definition to edit;"
                                 " nothing was changed", domain=name)
        running = bool(libvirt_call(f"cannot read the state of {name}", dom.isActive))
        update = DiskUpdate(dom)
        edit = update.plan_changes([change_of(disks[index]) for index in indexes])
        if edit.changed and running and on_running == "fail":
            raise KvmImagesError(f"domain {name} is running and on_running is fail; nothing was changed",
                                 domain=name)
        for index, before in zip(indexes, edit.disks):
            wanted = disks[index]
            reason = describe_change(before, wanted)
            names_an_image = wanted.get("source") is not None or wanted.get("driver_type") is not None
            refused = reason and switch_refusal(before, names_an_image)
            if refused:
                raise KvmImagesError(f"domain {name}: {refused}; nothing was changed", domain=name,
                                     target=before["target"])
            new_source = wanted.get("source") or before["source"]
            made_later = expect_new_images and not apply and not os.path.lexists(new_source)
            if reason and names_an_image and not made_later:
                check_new_source(new_source, wanted.get("driver_type"), before["driver_type"], allowed_backing_dirs)
            if reason and made_later:
                reason += " (the new image is made by an earlier task of this run)"
            results[index] = {"name": name, "target": before["target"], "changed": reason is not None,
                              "missing": False, "reason": reason, "pending_restart": running and reason is not None,
                              "disk": before}
        if edit.changed:
            expected = [{"target": before["target"], "source": disks[index].get("source"),
                         "driver_type": disks[index].get("driver_type")}
                        for index, before in zip(indexes, edit.disks)]
            switches = [switch_entry(name, before["target"], before, disks[index].get("source"),
                                     disks[index].get("driver_type"))
                        for index, before in zip(indexes, edit.disks)]
            switches = [entry for entry in switches
                        if (entry["dest"], entry["target_format"]) != (entry["source"], entry["source_format"])]
            planned.append((name, update, edit, expected, switches))
    done: list[str] = []
    if apply:
        for name, update, edit, expected, switches in planned:
            try:
                record_before(journal, switches, name, "switch")
                update.apply(edit.read_xml, edit.after, expected)
            except KvmImagesError as exc:
                exc.details["updated"] = list(done)
                if len(planned) > 1:
                    exc.msg += f" (domains already updated: {', '.join(done) or 'none'})"
                    exc.args = (exc.msg,)
                raise
            done.append(name)
    return results, [(name, edit) for name, _update, edit, _expected, _switches in planned]
