#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_disk_update
short_description: Edit disks of domains' persistent definitions
version_added: 0.1.0
description:
  - Changes the source file, the declared format (C(driver type)) and driver options of one disk, chosen by
    O(target) or by its current source, in the domain's persistent definition. Everything else in the
    definition stays as it was, secrets such as a VNC password included (the definition is read with them).
  - Before anything is written, the new source must exist and its header must match the declared format.
  - The definition is re-read just before it is defined, so an edit made meanwhile by someone else aborts
    the task, and read back afterwards to confirm the change.
  - A running domain keeps running on what it has; only its persistent definition changes, and
    RV(pending_restart) says so. Never a live edit.
  - With O(disks), several disks of one or more domains change in one run - each domain defined once with
    all of its changes. Every change is decided and its new source checked before any domain is defined, so
    a refusal writes nothing; should a define fail midway, the message names the domains already updated.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.libvirt
  - kvm.images.libvirt.journal
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - A unified diff of the domain XML.
  idempotent:
    support: full
options:
  name:
    description:
      - The domain.
      - Exactly one of O(name) and O(disks) is required; with O(name), one of O(target) and O(match_source).
    type: str
  target:
    description: The disk's target device, for example V(vda).
    type: str
  match_source:
    description: The disk's current source file, to choose the disk by it instead of O(target).
    type: path
  disks:
    description:
      - Several disks, each of a domain given by its own C(name), with what to set on it. The results are in
        RV(disks), in the same order. O(on_running) and O(allowed_backing_dirs) apply to all of them.
    type: list
    elements: dict
    version_added: 0.1.0
    suboptions:
      name:
        description: The domain.
        type: str
        required: true
      target:
        description: As O(target); one of it and O(disks[].match_source) is required.
        type: str
      match_source:
        description: As O(match_source).
        type: path
      source:
        description: As O(source).
        type: path
      driver_type:
        description: As O(driver_type).
        type: str
        choices: [raw, qcow2]
      cache:
        description: As O(cache).
        type: str
        choices: [default, none, writethrough, writeback, directsync, unsafe]
      io:
        description: As O(io).
        type: str
        choices: [threads, native, io_uring]
      discard:
        description: As O(discard).
        type: str
        choices: [ignore, unmap]
      detect_zeroes:
        description: As O(detect_zeroes).
        type: str
        choices: ["off", "on", unmap]
  source:
    description: The new source file (an absolute path on the hypervisor).
    type: path
  driver_type:
    description: The format to declare.
    type: str
    choices: [raw, qcow2]
  cache:
    description: Driver cache mode.
    type: str
    choices: [default, none, writethrough, writeback, directsync, unsafe]
  io:
    description: Driver I/O mode.
    type: str
    choices: [threads, native, io_uring]
  discard:
    description: Whether discard requests are passed on.
    type: str
    choices: [ignore, unmap]
  detect_zeroes:
    description: Zero detection.
    type: str
    choices: ["off", "on", unmap]
  on_running:
    description:
      - V(persist) changes the persistent definition of a running domain (it takes effect at its next start;
        RV(pending_restart=true)).
      - V(fail) refuses to change a running domain.
    type: str
    choices: [persist, fail]
    default: persist
  expect_new_images:
    description:
      - "In check mode, a new O(source) that does not exist yet is taken for the image an earlier task of the same
        run makes (M(kvm.images.qemu_image_convert) in check mode writes nothing): the change and its diff are
        predicted without reading the file, and the reason says so. Outside check mode it changes nothing - a
        new source is always read and checked first."
    type: bool
    default: false
    version_added: 0.2.0
  on_missing:
    description:
      - V(fail) fails when a domain is not defined, and changes nothing.
      - V(skip) leaves out the disks of a domain that is not defined - undefined or renamed since its change was
        planned - with C(missing=true) in their results, and changes the other domains all the same.
    type: str
    choices: [fail, skip]
    default: fail
  allowed_backing_dirs:
    description: Directories the new source's backing file may lie in (the source's own directory when omitted).
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: Point web01's vda at its new qcow2 image
  kvm.images.libvirt_disk_update:
    name: web01
    target: vda
    source: /var/lib/libvirt/images/web01.qcow2
    driver_type: qcow2
    discard: unmap

- name: Point two shut-off domains at their new images in one run
  kvm.images.libvirt_disk_update:
    disks:
      - {name: web02, target: vda, source: /var/lib/libvirt/images/web02.qcow2, driver_type: qcow2}
      - {name: db01, target: vda, source: /var/lib/libvirt/images/db01.qcow2, driver_type: qcow2}
      - {name: db01, target: vdb, source: /var/lib/libvirt/images/db01-data.qcow2, driver_type: qcow2}
"""

RETURN = r"""
changed:
  description: Whether the definition changed (or would, in check mode).
  returned: always
  type: bool
missing:
  description: The domain is not defined and O(on_missing=skip); nothing was changed.
  returned: success, with O(name)
  type: bool
pending_restart:
  description: The domain runs on its old disk until it is shut down and started again.
  returned: success, with O(name)
  type: bool
reason:
  description: What changes.
  returned: changed, with O(name)
  type: str
  sample: "vda: source /i/web01.raw -> /i/web01.qcow2, driver_type raw -> qcow2"
disk:
  description: The disk as it was before the change.
  returned: success, with O(name)
  type: dict
previous_xml:
  description: The whole definition before the change, for a rollback.
  returned: changed, with O(name)
  type: str
disks:
  description:
    - One result per entry of O(disks), in order, with C(name), C(target), C(changed), C(reason) (null when
      unchanged), C(pending_restart), C(disk) (the disk as it was) and C(missing) (the domain is not defined and
      O(on_missing=skip)).
  returned: success, with O(disks)
  type: list
  elements: dict
  sample: [{"name": "web02", "target": "vda", "changed": true, "pending_restart": false,
            "reason": "vda: source /i/web02.raw -> /i/web02.qcow2, driver_type raw -> qcow2"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import JOURNAL, LIBVIRT, module_spec
from ansible_collections.kvm.images.plugins.module_utils.disk_update import Edit, update_disks
from ansible_collections.kvm.images.plugins.module_utils.domain_xml import DRIVER_OPTIONS
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.formats import TARGET_FORMATS
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LIBVIRT_LIBRARIES, LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module

CACHE_MODES = ["default", "none", "writethrough", "writeback", "directsync", "unsafe"]
IO_MODES = ["threads", "native", "io_uring"]
SINGLE_DISK_OPTIONS = ("name", "target", "match_source", "source", "driver_type") + DRIVER_OPTIONS


def disk_change_spec() -> dict:
    """The options that choose one disk and say what to set on it: top level, and in each of disks."""
    return dict(
        target=dict(type="str"),
        match_source=dict(type="path"),
        source=dict(type="path"),
        driver_type=dict(type="str", choices=list(TARGET_FORMATS)),
        cache=dict(type="str", choices=CACHE_MODES),
        io=dict(type="str", choices=IO_MODES),
        discard=dict(type="str", choices=["ignore", "unmap"]),
        detect_zeroes=dict(type="str", choices=["off", "on", "unmap"]),
    )


def run_many(module: AnsibleModule) -> dict:
    params = module.params
    with LibvirtConnection(params["uri"]) as connection:
        disks, edits = update_disks(connection, params["disks"], on_running=params["on_running"],
                                    allowed_backing_dirs=params["allowed_backing_dirs"], apply=not module.check_mode,
                                    journal=params["journal"], on_missing=params["on_missing"],
                                    expect_new_images=params["expect_new_images"])
    result = {"changed": bool(edits), "disks": disks}
    if module._diff:
        result["diff"] = [xml_diff(name, edit) for name, edit in edits]
    return result


def xml_diff(name: str, edit: Edit) -> dict:
    return {"before": edit.before, "after": edit.after, "before_header": f"{name} (before)",
            "after_header": f"{name} (after)"}


def run(module: AnsibleModule) -> dict:
    params = module.params
    if params["disks"] is not None:
        return run_many(module)
    if params["target"] is None and params["match_source"] is None:
        raise KvmImagesError("one of target and match_source is required with name; nothing was changed")
    wanted = {key: params[key] for key in SINGLE_DISK_OPTIONS}
    with LibvirtConnection(params["uri"]) as connection:
        [disk], edits = update_disks(connection, [wanted], on_running=params["on_running"],
                                     allowed_backing_dirs=params["allowed_backing_dirs"], apply=not module.check_mode,
                                     journal=params["journal"], on_missing=params["on_missing"],
                                     expect_new_images=params["expect_new_images"])
    result = {"changed": bool(edits), "disk": disk["disk"], "pending_restart": disk["pending_restart"],
              "missing": disk["missing"]}
    for name, edit in edits:
        result.update(reason=disk["reason"], previous_xml=edit.read_xml)
        if module._diff:
            result["diff"] = xml_diff(name, edit)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            LIBVIRT, JOURNAL,
            name=dict(type="str"),
            disks=dict(type="list", elements="dict",
                       options=dict(name=dict(type="str", required=True), **disk_change_spec()),
                       required_one_of=[("target", "match_source")], mutually_exclusive=[("target", "match_source")]),
            **disk_change_spec(),
            on_running=dict(type="str", default="persist", choices=["persist", "fail"]),
            allowed_backing_dirs=dict(type="list", elements="path"),
            on_missing=dict(type="str", default="fail", choices=["fail", "skip"]),
            expect_new_images=dict(type="bool", default=False),
        ),
        required_one_of=[("name", "disks")],
        mutually_exclusive=[("target", "match_source")] + [("disks", key) for key in SINGLE_DISK_OPTIONS],
        supports_check_mode=True,
    )
    run_module(module, run, libraries=LIBVIRT_LIBRARIES)


if __name__ == "__main__":
    main()
