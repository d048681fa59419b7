# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain XML with lxml: find a disk, change it, render a diff (private to kvm.images)."""

from __future__ import annotations

import traceback
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError

try:
    from lxml import etree
except ImportError:
    HAS_LXML = False
    LXML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_LXML = True
    LXML_IMPORT_ERROR = None

DRIVER_OPTIONS = ("cache", "io", "discard", "detect_zeroes")
# Why a disk with <slices> or <encryption> keeps its image (the same element on a converted file would make
# the guest read other bytes).
SLICES_KEEP_THEIR_IMAGE = "a byte range of the original is not the same range of a converted image"
ENCRYPTION_KEEPS_ITS_IMAGE = "the image is read through that layer, which a converted file would not carry"


def parse(xml: str) -> t.Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    try:
        return etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise KvmImagesError(f"cannot parse the domain XML: {exc}") from exc


def serialize(root: t.Any) -> str:
    return etree.tostring(root, encoding="unicode")


def canonical(xml: str) -> bytes:
    """C14N form, for comparing two definitions whatever their whitespace or attribute order."""
    return etree.tostring(parse(xml), method="c14n")


def _attr(element: t.Any, path: str, name: str) -> str | None:
    found = element.find(path)
    return found.get(name) if found is not None else None


def source_of(disk: t.Any) -> str | None:
    """The disk's source as a path (file, block) or a description (network, volume)."""
    source = disk.find("source")
    if source is None:
        return None
    kind = disk.get("type", "file")
    if kind == "file":
        return source.get("file")
    if kind == "block":
        return source.get("dev")
    if kind == "network":
        return f"{source.get('protocol', '?')}:{source.get('name', '')}"
    if kind == "volume":
        return f"{source.get('pool', '?')}/{source.get('volume', '')}"
    return source.get("file") or source.get("dev") or source.get("name")


def backing_chain(disk: t.Any) -> list[dict[str, t.Any]]:
    chain = []
    store = disk.find("backingStore")
    while store is not None and len(store):
        chain.append({"type": store.get("type"), "format": _attr(store, "format", "type"),
                      "source": source_of(store)})
        store = store.find("backingStore")
    return chain


def encryption_of(disk: t.Any) -> str | None:
    """Where the disk's <encryption> stands (``source`` for a format layer, ``disk`` for the older place), if any."""
    if disk.find("source/encryption") is not None:
        return "source"
    if disk.find("encryption") is not None:
        return "disk"
    return None


def disk_facts(disk: t.Any) -> dict[str, t.Any]:
    driver = disk.find("driver")
    return {
        "target": _attr(disk, "target", "dev"),
        "bus": _attr(disk, "target", "bus"),
        "device": disk.get("device", "disk"),
        "type": disk.get("type", "file"),
        "source": source_of(disk),
        "driver_name": driver.get("name") if driver is not None else None,
        "driver_type": driver.get("type") if driver is not None else None,
        "driver": {option: driver.get(option) if driver is not None else None for option in DRIVER_OPTIONS},
        "readonly": disk.find("readonly") is not None,
        "shareable": disk.find("shareable") is not None,
        "backing_chain": backing_chain(disk),
        # A slice is a byte range of the file; an encryption layer reads the file through a secret: neither
        # means the same on a converted image.
        "slices": disk.find("source/slices") is not None,
        "encryption": encryption_of(disk),
    }


def list_disks(root: t.Any) -> list[dict[str, t.Any]]:
    return [disk_facts(disk) for disk in root.xpath("devices/disk")]


def find_disk(root: t.Any, *, target: str | None = None, source: str | None = None) -> t.Any:
    """The one disk with this target (vda) or this file source; a clear error otherwise."""
    name = root.findtext("name")
    if target is not None:
        found = root.xpath("devices/disk[target/@dev=$t]", t=target)
        what = f"target {target}"
    else:
        found = root.xpath("devices/disk[source/@file=$s or source/@dev=$s]", s=source)
        what = f"source {source}"
    if not found:
        raise KvmImagesError(f"domain {name} has no disk with {what}; nothing was changed", domain=name)
    if len(found) > 1:
        raise KvmImagesError(f"domain {name} has {len(found)} disks with {what}; choose one by target,"
                             " nothing was changed", domain=name)
    return found[0]


def set_disk(disk: t.Any, *, source: str | None = None, driver_type: str | None = None,
             driver_options: dict[str, str | None] | None = None) -> bool:
    """Change the disk in place; True when anything changed."""
    changed = False
    if source is not None:
        if disk.get("type", "file") != "file":
            raise KvmImagesError(f"disk {_attr(disk, 'target', 'dev')} is a {disk.get('type')} disk;"
                                 " only file disks get a new source file")
        element = disk.find("source")
        if element is None:
            element = etree.SubElement(disk, "source")
        if element.get("file") != source:
            element.set("file", source)
            changed = True
            # The old chain describes the old image; the new one is flattened.
            for store in disk.findall("backingStore"):
                disk.remove(store)
    wanted = dict(driver_options or {})
    if driver_type is not None:
        wanted["type"] = driver_type
    wanted = {key: value for key, value in wanted.items() if value is not None}
    if wanted:
        driver = disk.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            disk.insert(0, driver)
        for key, value in wanted.items():
            if driver.get(key) != value:
                driver.set(key, value)
                changed = True
    return changed
