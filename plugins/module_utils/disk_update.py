# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edit one disk of a domain's persistent definition, safely (private to kvm.images)."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    inspect_path,
    path_problems,
    safety_problems,
)
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import inactive_xml, libvirt_call


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


@dataclass
class Edit:
    read_xml: str         # as libvirt gave it, to detect a concurrent change
    before: str           # before and after through the same serializer, for the diff
    after: str
    disk: dict[str, t.Any]

    @property
    def changed(self) -> bool:
        return self.before != self.after


class DiskUpdate:
    """Decide on a copy of the definition, then (outside check mode) define it and read it back."""

    def __init__(self, dom: t.Any, *, target: str | None, match_source: str | None) -> None:
        self.dom = dom
        self.name = dom.name()
        self.target = target
        self.match_source = match_source

    def plan(self, source: str | None, driver_type: str | None, driver_options: dict[str, str | None]) -> Edit:
        read_xml = inactive_xml(self.dom)
        root = domain_xml.parse(read_xml)
        disk = domain_xml.find_disk(root, target=self.target, source=self.match_source)
        facts = domain_xml.disk_facts(disk)
        before = domain_xml.serialize(root)
        domain_xml.set_disk(disk, source=source, driver_type=driver_type, driver_options=driver_options)
        return Edit(read_xml, before, domain_xml.serialize(root), facts)

    def apply(self, read_xml: str, new_xml: str, expected: dict[str, t.Any]) -> None:
        # Someone else may have edited the domain since we read it.
        if domain_xml.canonical(inactive_xml(self.dom)) != domain_xml.canonical(read_xml):
            raise KvmImagesError(f"the definition of {self.name} changed while it was being edited;"
                                 " nothing was written, run again", domain=self.name)
        conn = self.dom.connect()
        libvirt_call(f"cannot define {self.name}", conn.defineXML, new_xml)
        root = domain_xml.parse(inactive_xml(self.dom))
        disk = domain_xml.disk_facts(domain_xml.find_disk(root, target=expected["target"]))
        wrong = {key: (disk.get(key), value) for key, value in expected.items()
                 if value is not None and key != "target" and disk.get(key) != value}
        if wrong:
            raise KvmImagesError(f"after defining {self.name}, disk {expected['target']} reads back as"
                                 f" {wrong}", domain=self.name, read_back=disk)
