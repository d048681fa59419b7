# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every domain of a hypervisor with its disks, and which disks can be converted (private to kvm.images)."""

from __future__ import annotations

import os
import platform
import typing as t

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.formats import TARGET_FORMATS
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import (
    NO_DOMAIN,
    daemon_versions,
    inactive_xml,
    libvirt_call,
    live_xml,
    state_name,
    version_text,
)


def disk_skip_reason(disk: dict[str, t.Any], domain: dict[str, t.Any]) -> str | None:
    """Why this disk is not converted, or None when it can be."""
    if disk["device"] != "disk":
        return f"{disk['device']} (only disks are converted)"
    if disk["type"] != "file":
        return f"{disk['type']} disk (only file disks are converted)"
    if not disk["source"]:
        return "no source (empty drive)"
    if disk["shareable"]:
        return "shareable disk"
    if disk["readonly"]:
        return "read-only disk"
    if disk["driver_type"] not in TARGET_FORMATS:
        return f"format {disk['driver_type']} (only raw and qcow2 are converted)"
    if disk["backing_chain"]:
        return "has a backing chain in its definition"
    if disk["slices"]:
        return "its source has <slices> (a byte range of the file)"
    if disk["encryption"]:
        return "encrypted (<encryption>)"
    if not domain["persistent"]:
        return "transient domain (no persistent definition to update)"
    if domain["snapshots"]:
        return f"domain has {domain['snapshots']} snapshot(s), which a conversion would not carry over"
    if domain["has_managed_save"]:
        return "domain has a managed save image; start it or remove the save first"
    if disk.get("live_source") not in (None, disk["source"]):
        return f"the running domain uses {disk['live_source']}, its definition {disk['source']}"
    return None


def mark_shared_sources(domains: list[dict[str, t.Any]]) -> None:
    """A file used by two domains is left alone in both."""
    users: dict[str, list[str]] = {}
    for domain in domains:
        for disk in domain["disks"]:
            if disk["type"] == "file" and disk["source"]:
                users.setdefault(disk["source"], []).append(domain["name"])
    for domain in domains:
        for disk in domain["disks"]:
            others = sorted(set(users.get(disk["source"], [])) - {domain["name"]})
            if others and disk["convertible"]:
                disk["convertible"] = False
                disk["skip_reason"] = f"source also used by domain(s) {', '.join(others)}"


def describe_domain(dom: t.Any) -> dict[str, t.Any]:
    name = dom.name()
    active = bool(libvirt_call(f"cannot read the state of {name}", dom.isActive))
    persistent = bool(libvirt_call(f"cannot read the state of {name}", dom.isPersistent))
    root = domain_xml.parse(inactive_xml(dom) if persistent else live_xml(dom))
    live_sources: dict[str, str | None] = {}
    if active and persistent:
        live_root = domain_xml.parse(live_xml(dom))
        live_sources = {disk["target"]: disk["source"] for disk in domain_xml.list_disks(live_root)}
    domain = {
        "name": name,
        "uuid": dom.UUIDString(),
        "id": dom.ID() if active else None,
        "state": state_name(dom),
        "persistent": persistent,
        "autostart": bool(libvirt_call(f"cannot read autostart of {name}", dom.autostart)) if persistent else False,
        "has_managed_save": (bool(libvirt_call(f"cannot read {name}", dom.hasManagedSaveImage, 0)) if persistent
                             else False),
        "snapshots": libvirt_call(f"cannot count the snapshots of {name}", dom.snapshotNum, 0),
        "disks": [],
    }
    for disk in domain_xml.list_disks(root):
        disk["live_source"] = live_sources.get(disk["target"]) if live_sources else None
        reason = disk_skip_reason(disk, domain)
        disk["convertible"] = reason is None
        disk["skip_reason"] = reason
        domain["disks"].append(disk)
    return domain


def filesystem_of(directory: str) -> dict[str, t.Any] | None:
    """The file system holding ``directory``: an id (its device) and its free space."""
    try:
        info, space = os.stat(directory), os.statvfs(directory)
    except OSError:
        return None
    return {"id": f"{os.major(info.st_dev)}:{os.minor(info.st_dev)}",
            "free": space.f_bavail * space.f_frsize, "size": space.f_blocks * space.f_frsize}


def add_filesystems(domains: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """Tag each file disk with its file system, and list those file systems once each."""
    found: dict[str, dict[str, t.Any]] = {}
    for domain in domains:
        for disk in domain["disks"]:
            disk["filesystem"] = None
            if disk["type"] != "file" or not (disk["source"] or "").startswith("/"):
                continue
            directory = os.path.dirname(disk["source"])
            filesystem = filesystem_of(directory)
            if filesystem is None:
                continue
            disk["filesystem"] = filesystem["id"]
            entry = found.setdefault(filesystem["id"], dict(filesystem, directories=[]))
            if directory not in entry["directories"]:
                entry["directories"].append(directory)
    return sorted(found.values(), key=lambda entry: entry["id"])


def hypervisor_versions(connection: t.Any) -> dict[str, str]:
    """The libvirt daemon's and its QEMU's versions, and the Python that runs the modules."""
    conn = connection.conn
    libvirt_version, qemu_version = daemon_versions(conn)
    return {
        "libvirt_version": version_text(libvirt_version),
        "qemu_version": version_text(qemu_version),
        "python_version": platform.python_version(),
        "hostname": libvirt_call("cannot read the host name", conn.getHostname),
    }


def describe_hypervisor(connection: t.Any, names: list[str] | None = None) -> list[dict[str, t.Any]]:
    """All domains, or the named ones (each must exist), sorted by name.

    Every domain is read even when a few are named: a file shared with an
    unnamed domain must still be found.
    """
    for name in names or []:
        connection.domain(name)
    domains = []
    for dom in connection.domains():
        try:
            domains.append(describe_domain(dom))
        except KvmImagesError as exc:
            # Undefined (or renamed) between the listing and the reading: it is not there to convert.
            if exc.details.get("libvirt_code") != NO_DOMAIN:
                raise
    vanished = sorted(set(names or []) - {domain["name"] for domain in domains})
    if vanished:
        raise KvmImagesError(f"domain {vanished[0]} was undefined while the hypervisor was read", domain=vanished[0])
    mark_shared_sources(domains)
    if names:
        domains = [domain for domain in domains if domain["name"] in set(names)]
    return sorted(domains, key=lambda domain: domain["name"])
