#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_disk_info
short_description: Every domain of a hypervisor with its disks, in one call
version_added: 0.1.0
description:
  - Lists every domain (running or not) with its state and disks, read from the persistent definition
    (the live one for transient domains), and says for each disk whether it can be converted, or why not.
  - A disk is convertible when it is a C(device='disk') of C(type='file') in raw or qcow2, neither shareable
    nor read-only, without a backing chain in its definition, used by no other domain, and its domain is
    persistent, has no snapshots and no managed save image, and runs from the source its definition names.
  - The cost of a call grows with the number of domains, not with the number of disks beyond parsing XML.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.attributes.INFO_MODULE
  - kvm.images.libvirt
  - kvm.images.qemu_img
options:
  name:
    description: Only these domains (each must exist). All domains when omitted.
    type: list
    elements: str
  journal:
    description:
      - The journal the collection's other modules keep (their O(kvm.images.libvirt_disk_copy#module:journal)
        option). When given, RV(journal) returns what a run needs of it, read in the same call.
    type: path
  image_info:
    description:
      - Add RV(domains[].disks[].image), the facts of M(kvm.images.qemu_image_info), to each file disk.
        Images in use are read with C(-U) for metadata only.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Every domain and disk of this hypervisor
  kvm.images.libvirt_disk_info:
  register: hv

- name: Disks that could move to qcow2
  ansible.builtin.debug:
    msg: "{{ hv.domains | map(attribute='disks') | flatten | selectattr('convertible') | map(attribute='source') }}"
"""

RETURN = r"""
domains:
  description: The domains, sorted by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
    uuid:
      description: Domain UUID.
      type: str
    id:
      description: The running domain's id (null when it is not running).
      type: int
    state:
      description: libvirt's state name (V(running), V(paused), V(shut off), ...).
      type: str
    persistent:
      description: Whether the domain has a persistent definition.
      type: bool
    autostart:
      description: Whether the domain starts with the host.
      type: bool
    has_managed_save:
      description: Whether the domain has a managed save image.
      type: bool
    snapshots:
      description: Number of libvirt snapshots of the domain.
      type: int
    disks:
      description: The domain's disks.
      type: list
      elements: dict
      contains:
        target:
          description: Target device, for example V(vda).
          type: str
        bus:
          description: Bus (V(virtio), V(sata), V(scsi), V(ide), ...).
          type: str
        device:
          description: V(disk), V(cdrom), V(floppy) or V(lun).
          type: str
        type:
          description: V(file), V(block), V(network), V(volume), ...
          type: str
        source:
          description: The file or device the definition names.
          type: str
        live_source:
          description: The source the running domain uses, when it runs.
          type: str
        driver_type:
          description: The format the definition declares.
          type: str
        driver:
          description: Driver options C(cache), C(io), C(discard), C(detect_zeroes).
          type: dict
        readonly:
          description: Whether the disk is read-only.
          type: bool
        shareable:
          description: Whether the disk is shareable.
          type: bool
        backing_chain:
          description: The backing chain the definition describes.
          type: list
          elements: dict
        convertible:
          description: Whether the disk can be converted.
          type: bool
        skip_reason:
          description: Why not, when it cannot.
          type: str
        filesystem:
          description: Id (C(major:minor) of its device) of the file system holding a file disk, see RV(filesystems).
          type: str
        image:
          description: M(kvm.images.qemu_image_info) facts of the source.
          type: dict
          returned: when O(image_info) and the disk is a file
journal:
  description: What the journal given in O(journal) says; empty lists when it does not exist yet.
  returned: when O(journal) is given
  type: dict
  contains:
    switches:
      description: Every disk switch, oldest first (C(domain), C(target), C(source), C(source_format), C(dest),
        C(target_format), C(time)); a last line cut short by a kill is left out.
      type: list
      elements: dict
    pending_restarts:
      description: The domains an interrupted run shut down and did not start again, that are still defined, shut
        off or running.
      type: list
      elements: str
hypervisor:
  description: The versions of the hypervisor's software.
  returned: success
  type: dict
  contains:
    libvirt_version:
      description: The libvirt daemon's version.
      type: str
      sample: 9.0.0
    qemu_version:
      description: The version of the QEMU that libvirt drives.
      type: str
      sample: 7.2.22
    python_version:
      description: The version of the Python that runs the modules.
      type: str
      sample: 3.11.2
    hostname:
      description: The hypervisor's host name, as libvirt gives it.
      type: str
filesystems:
  description:
    - The file systems holding file disks, once each, with their free space, so that the space needed by
      conversions beside their sources can be added up per file system.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: C(major:minor) of the file system's device.
      type: str
    free:
      description: Bytes available to unprivileged users.
      type: int
    size:
      description: Size in bytes.
      type: int
    directories:
      description: The directories of disks on it.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import JOURNAL, LIBVIRT, QEMU_IMG, module_spec
from ansible_collections.kvm.images.plugins.module_utils.disk_inventory import (
    add_filesystems,
    describe_hypervisor,
    hypervisor_versions,
)
from ansible_collections.kvm.images.plugins.module_utils.image_facts import gather
from ansible_collections.kvm.images.plugins.module_utils.journal import journal_facts, read_journal
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LIBVIRT_LIBRARIES, LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import qemu_img_for


def add_image_info(module: AnsibleModule, domains: list[dict]) -> None:
    qemu = qemu_img_for(module)
    for domain in domains:
        for disk in domain["disks"]:
            if disk["type"] == "file" and disk["source"] and disk["source"].startswith("/"):
                disk["image"] = gather(qemu, disk["source"], disk["driver_type"], force_share=True)


def run(module: AnsibleModule) -> dict:
    with LibvirtConnection(module.params["uri"]) as connection:
        domains = describe_hypervisor(connection, module.params["name"])
        versions = hypervisor_versions(connection)
    filesystems = add_filesystems(domains)
    if module.params["image_info"]:
        add_image_info(module, domains)
    result = {"changed": False, "domains": domains, "filesystems": filesystems, "hypervisor": versions}
    if module.params["journal"]:
        result["journal"] = journal_facts(read_journal(module.params["journal"]), domains)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            LIBVIRT, QEMU_IMG, JOURNAL,
            name=dict(type="list", elements="str"),
            image_info=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, libraries=LIBVIRT_LIBRARIES)


if __name__ == "__main__":
    main()
