#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_disk_copy
short_description: Convert the disk of a running guest live, by block copy and pivot
version_added: 0.1.0
description:
  - Creates O(dest) in O(format), mirrors the running guest's disk O(target) into it with a libvirt block copy,
    waits until the mirror is ready (every block copied and the job READY), then pivots the guest onto it.
    The guest keeps running; only the pivot pauses it briefly (RV(max_pause_s)).
  - Afterwards both the live and the persistent definitions point at O(dest) with the new driver type; the
    persistent one is fixed where libvirt did not rewrite it.
  - On a failure or the O(timeout) before the pivot, the job is aborted, the guest stays on its original disk
    and O(dest) is removed. After a pivot the original is stale - never point the guest back at it.
  - The copy runs inside QEMU; when libvirtd restarts during it, the module reconnects (for up to a minute)
    and follows the job on.
  - An existing O(dest) is refused (libvirt would overwrite it silently), except what an interrupted run of
    this module left, which it recognises by a marker file beside it.
  - A block copy into O(dest) that such a run left running (the process following it was killed, or libvirtd
    stayed away longer than the module waited) is aborted - the guest stays on its original disk - and the copy
    starts again. Any other block job on the disk is refused.
  - The process that follows a copy holds a lock on that marker. A killed C(ansible-playbook) leaves its modules
    running (its workers have sessions of their own), so a later run first waits, up to O(timeout), for such a
    module to finish or fail on its own (RV(waited_s)), then decides afresh - never pulls a job from under it.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.libvirt
  - kvm.images.libvirt.journal
  - kvm.images.qemu_img
  - kvm.images.qemu_img.QCOW2_OPTIONS
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Source and format of the disk before and after.
  idempotent:
    support: full
options:
  name:
    description: The running domain.
    type: str
    required: true
  target:
    description: The disk's target device, for example V(vda).
    type: str
    required: true
  dest:
    description: The new image (absolute path); it must not exist.
    type: path
    required: true
  format:
    description: The new image's format.
    type: str
    choices: [raw, qcow2]
    default: qcow2
  bandwidth:
    description: Limit the copy to this many MiB/s.
    type: int
  timeout:
    description: Seconds the copy may take to become ready before it is aborted.
    type: int
    default: 3600
  pivot:
    description:
      - Switch the guest to the copy once it is ready.
      - When V(false), the job is ended at READY without a pivot, leaving a point-in-time copy in O(dest) and the
        guest on its original disk.
    type: bool
    default: true
  verify:
    description: After the pivot, check the new image (C(qemu-img check) of a qcow2, and its virtual size).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Move web01's running vda to qcow2 without stopping it
  kvm.images.libvirt_disk_copy:
    name: web01
    target: vda
    dest: /var/lib/libvirt/images/web01.qcow2
    format: qcow2
    bandwidth: 200
"""

RETURN = r"""
dest:
  description: The new image.
  returned: success
  type: str
format:
  description: Its format.
  returned: success
  type: str
bytes_copied:
  description: Bytes the mirror copied.
  returned: success
  type: int
duration_s:
  description: Seconds from the start of the copy to the end of the pivot.
  returned: success
  type: float
max_pause_s:
  description: The longest the guest was paused, measured around the pivot.
  returned: success
  type: float
waited_s:
  description: Seconds spent waiting for the module of an interrupted run to finish its copy into RV(dest).
  returned: success
  type: float
pivoted:
  description: Whether the guest now runs on RV(dest).
  returned: success
  type: bool
verified:
  description: Whether the new image was checked after the pivot.
  returned: success
  type: bool
dest_actual_size:
  description: Bytes the new image takes on disk.
  returned: changed and not check mode
  type: int
reason:
  description: What changes.
  returned: changed
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.block_copy import LiveConversion, verify_dest
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_libvirt_module
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import QemuImg


def run(module: AnsibleModule) -> dict:
    params = module.params
    if not params["dest"].startswith("/"):
        raise KvmImagesError(f"dest must be an absolute path, not {params['dest']}")
    qemu = QemuImg(module)
    options = {"compat": params["compat"], "cluster_size": params["cluster_size"],
               "preallocation": params["preallocation"], "lazy_refcounts": params["lazy_refcounts"]}
    with LibvirtConnection(params["uri"]) as connection:
        dom = connection.domain(params["name"])

        def reconnect():
            connection.reopen()
            return connection.domain(params["name"])

        live = LiveConversion(dom, qemu, target=params["target"], dest=params["dest"], fmt=params["format"],
                              options=options, bandwidth_mib=params["bandwidth"], timeout=params["timeout"],
                              reconnect=reconnect, journal=params["journal"])
        waited = 0.0 if module.check_mode else live.wait_for_earlier_process(params["timeout"])
        reason, disk = live.decide()
        result = {"changed": reason is not None, "dest": params["dest"], "format": params["format"],
                  "bytes_copied": 0, "duration_s": 0.0, "max_pause_s": 0.0, "pivoted": False, "verified": False,
                  "waited_s": waited}
        if reason is None:
            return result
        result["reason"] = reason
        if module._diff:
            result["diff"] = {"before": f"{params['target']}: {disk['source']} ({disk['driver_type']})\n",
                              "after": f"{params['target']}: {params['dest']} ({params['format']})\n"}
        if module.check_mode:
            return result
        started = time.monotonic()
        result.update(live.run(disk, params["pivot"]))
        result["duration_s"] = round(time.monotonic() - started, 3)
        if params["verify"] and os.path.exists(params["dest"]):
            capacity = live.dom.blockInfo(params["target"])[0]
            verify_dest(qemu, params["dest"], params["format"], capacity)
            result["verified"] = True
        result["dest_actual_size"] = os.stat(params["dest"]).st_blocks * 512
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            target=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            format=dict(type="str", default="qcow2", choices=["raw", "qcow2"]),
            compat=dict(type="str", default="1.1", choices=["0.10", "1.1"]),
            cluster_size=dict(type="int", default=65536),
            preallocation=dict(type="str", default="off", choices=["off", "metadata", "falloc", "full"]),
            lazy_refcounts=dict(type="bool", default=False),
            bandwidth=dict(type="int"),
            timeout=dict(type="int", default=3600),
            pivot=dict(type="bool", default=True),
            verify=dict(type="bool", default=True),
            journal=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, run)


if __name__ == "__main__":
    main()
