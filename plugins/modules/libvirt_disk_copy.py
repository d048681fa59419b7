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
  - A guest that writes faster than the copy runs (a busy database, or any guest when O(bandwidth) caps the
    copy) keeps a background copy from ever catching up. By default (O(copy_mode=auto)) the copy therefore runs
    in write-blocking mode where libvirt and QEMU support it, which converges within one pass at O(bandwidth)
    whatever the guest writes; see O(copy_mode) for what the guest pays.
  - On a failure or the O(timeout) before the pivot, the job is aborted (a write-blocking one with the guest paused
    for that moment, see O(copy_mode)), the guest stays on its original disk and O(dest) is removed. The failure
    names the copy mode tried and how far it got (C(attempts) in its details, as in RV(attempts)). After a pivot
    the original is stale - never point the guest back at it.
  - The copy runs inside QEMU; when libvirtd restarts during it, the module reconnects (for up to a minute)
    and follows the job on.
  - An existing O(dest) is refused (libvirt would overwrite it silently), except what an interrupted run of
    this module left, which it recognises by a marker file beside it.
  - A block copy into O(dest) that such a run left running (the process following it was killed, or libvirtd
    stayed away longer than the module waited) is aborted - the guest stays on its original disk - and the copy
    starts again. Any other block job on the disk is refused.
  - A disk whose C(<source>) has C(<slices>), or that has C(<encryption>), is refused, as is any device but a disk.
  - With O(deadline), a copy whose estimated end (the source's data at O(expected_throughput), never above
    O(bandwidth)) falls after it is not started (RV(deferred)).
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
  - kvm.images.progress
  - kvm.images.progress.SCHEDULE
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
  label:
    description: How progress lines name this disk; the domain and O(target) by default.
    type: str
    version_added: 0.2.0
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
    description:
      - Limit the copy to this many MiB/s.
      - In write-blocking mode (O(copy_mode)) this caps the background pass only; the guest's own writes go to
        the new image as fast as the guest makes them.
    type: int
  copy_mode:
    description:
      - How the copy keeps up with the guest's writes.
      - V(background) copies the blocks the guest dirties behind it, at no cost to the guest's writes. A guest
        that dirties blocks faster than the copy moves them keeps it from ever being ready, until O(timeout)
        aborts it. A test guest rewriting 32 MiB of its 256 MiB disk kept such a copy, capped at 8 MiB/s, from
        ready for all of its 60 s.
      - V(write_blocking) (libvirt's C(VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES), QEMU's write-blocking mirror)
        also writes each guest write to the new image before the write completes, so only the background pass
        is left. The copy is ready within the time that pass needs at O(bandwidth), whatever the guest writes
        (the same guest was pivoted after 30 s, one pass at the cap being 32 s). The guest pays while the copy
        runs, as each of its writes waits for both images. Its 1 MiB writes took 1.18 times as long as during a
        background copy (median of 6 rounds, 1.10 to 1.30; 1.27 times as long as with no copy, a background copy
        costing nothing measurable); a guest writing flat out, about 900 MiB/s into the host's page cache, lost
        40 % of its write rate. A guest that does not write pays nothing. Needs libvirt 8.0 and QEMU 4.2 or
        later.
      - A write-blocking copy that has to be aborted (O(timeout), a failure) or ended without a pivot
        (O(pivot=false)) is ended with the guest paused for as long as that takes (0.07 to 0.27 s in tests).
        Aborting one while guest writes were in flight crashed QEMU 7.2, and the guest with it, in 2 of 20 tries
        under a busy test guest; a paused guest has no write in flight, and none of 30 such aborts crashed.
      - V(auto) uses V(write_blocking) where the daemon and its QEMU support it (and V(background) if the daemon
        refuses write-blocking at the start), V(background) elsewhere. Starting in the background and restarting
        in write-blocking mode once the copy stopped gaining on the guest was measured too. On busy test guests
        it took 2.4 and 6.5 times as long as write-blocking from the start, and copied the disk twice.
      - Choose V(background) for a guest whose write latency matters more than the copy converging, and which
        the copy can outrun.
      - Neither libvirt's job information nor the live XML shows the mode, so a copy an interrupted run left is
        taken over (aborted as a write-blocking one is) or waited for alike. A write-blocking copy left behind
        slows the guest's writes until a later run ends it.
    type: str
    choices: [auto, background, write_blocking]
    default: auto
  timeout:
    description:
      - Seconds the copy may take to become ready before it is aborted; one budget for every attempt
        (O(copy_mode)).
    type: int
    default: 3600
  pivot:
    description:
      - Switch the guest to the copy once it is ready.
      - When V(false), the job is ended at READY without a pivot, leaving a point-in-time copy in O(dest) and the
        guest on its original disk (a write-blocking job with the guest paused for that moment, see O(copy_mode)).
    type: bool
    default: true
  verify:
    description: After the pivot, check the new image (C(qemu-img check) of a qcow2, and its virtual size).
    type: bool
    default: true
  force:
    description:
      - Replace an existing O(dest) that is not the destination of an unfinished copy of this module (the stale
        image a rollback kept, say). Without it such a file is refused.
      - A file that is not a regular file, or that QEMU holds (a guest runs on it), is refused even with it.
    type: bool
    default: false
    version_added: 0.2.0
"""

EXAMPLES = r"""
- name: Move web01's running vda to qcow2 without stopping it
  kvm.images.libvirt_disk_copy:
    name: web01
    target: vda
    dest: /var/lib/libvirt/images/web01.qcow2
    format: qcow2
    bandwidth: 200

- name: Leave a latency-sensitive guest's writes alone (the copy may then not catch up with it)
  kvm.images.libvirt_disk_copy:
    name: db01
    target: vdb
    dest: /var/lib/libvirt/images/db01-data.qcow2
    copy_mode: background
    timeout: 1800
"""

RETURN = r"""
throughput_mib_s:
  description: The bytes the mirror copied per second of RV(duration_s).
  returned: when copied
  type: float
  version_added: 0.2.0
deferred:
  description: The copy was not started because it would have ended after O(deadline).
  returned: when deferred
  type: bool
  version_added: 0.2.0
dest:
  description: The new image.
  returned: success
  type: str
format:
  description: Its format.
  returned: success
  type: str
bytes_copied:
  description: Bytes the mirror copied; in write-blocking mode the guest writes it mirrored count too.
  returned: success
  type: int
copy_mode:
  description:
    - The copy mode the copy ran in (V(background) or V(write_blocking)); in check mode, the mode it would start
      in. V(null) when no copy was needed.
  returned: success
  type: str
  sample: write_blocking
attempts:
  description:
    - Each copy started, in order. A failure carries the same list in its details.
    - An attempt that the daemon refused to start has C(error) instead of progress.
  returned: success
  type: list
  elements: dict
  contains:
    mode:
      description: V(background) or V(write_blocking).
      type: str
    percent:
      description:
        - How far the job got, as C(virsh blockjob) shows it (bytes copied of bytes copied plus still dirty); 100
          once ready.
      type: int
    bytes:
      description: Bytes copied.
      type: int
    remaining:
      description:
        - Bytes left to copy, the most seen in the attempt's last 10 seconds (behind a busy guest it swings
          between nothing and what the guest dirtied again); 0 once ready.
      type: int
    seconds:
      description: How long the attempt ran.
      type: float
    error:
      description: Why the daemon refused to start it.
      type: str
  sample:
    - {mode: write_blocking, percent: 100, bytes: 612368384, remaining: 0, seconds: 27.9}
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
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import (
    JOURNAL,
    LIBVIRT,
    NEW_IMAGE_FORMAT,
    PROGRESS,
    QCOW2_OPTIONS,
    QEMU_IMG,
    SCHEDULE,
    module_spec,
    qcow2_options,
)
from ansible_collections.kvm.images.plugins.module_utils.block_copy import AUTO, COPY_MODES, LiveConversion, verify_dest
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LIBVIRT_LIBRARIES, LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress, allocated_bytes
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import qemu_img_for
from ansible_collections.kvm.images.plugins.module_utils.schedule import MIB, Schedule


def run(module: AnsibleModule) -> dict:
    params = module.params
    if not params["dest"].startswith("/"):
        raise KvmImagesError(f"dest must be an absolute path, not {params['dest']}")
    qemu = qemu_img_for(module)
    progress = Progress(params["progress_file"])
    try:
        with LibvirtConnection(params["uri"]) as connection:
            return copy_live(module, connection, qemu, progress)
    finally:
        progress.close()


def copy_live(module: AnsibleModule, connection: LibvirtConnection, qemu: t.Any, progress: Progress) -> dict:
    params = module.params
    dom = connection.domain(params["name"])

    def reconnect():
        connection.reopen()
        return connection.domain(params["name"])

    live = LiveConversion(dom, qemu, target=params["target"], dest=params["dest"], fmt=params["format"],
                          options=qcow2_options(params), bandwidth_mib=params["bandwidth"], timeout=params["timeout"],
                          reconnect=reconnect, journal=params["journal"], copy_mode=params["copy_mode"],
                          progress=progress, label=params["label"], force=params["force"])
    waited = 0.0 if module.check_mode else live.wait_for_earlier_process(params["timeout"])
    reason, disk = live.decide()
    result = {"changed": reason is not None, "dest": params["dest"], "format": params["format"],
              "bytes_copied": 0, "duration_s": 0.0, "max_pause_s": 0.0, "pivoted": False, "verified": False,
              "waited_s": waited, "copy_mode": None, "attempts": []}
    if reason is None:
        return result
    late = Schedule(params["deadline"], params["expected_throughput"], params["bandwidth"]).deferral(
        source_data(disk["source"]), None, time.time())
    if late:
        return dict(result, changed=False, deferred=True, reason=late)
    result["reason"] = reason
    result["copy_mode"] = live.modes[0] if live.modes else None
    if module._diff:
        result["diff"] = {"before": f"{params['target']}: {disk['source']} ({disk['driver_type']})\n",
                          "after": f"{params['target']}: {params['dest']} ({params['format']})\n"}
    if module.check_mode:
        return result
    started = time.monotonic()
    result.update(live.run(disk, params["pivot"]))
    result["duration_s"] = round(time.monotonic() - started, 3)
    if result["duration_s"] > 0 and result["bytes_copied"]:
        result["throughput_mib_s"] = round(result["bytes_copied"] / result["duration_s"] / MIB, 1)
    if params["verify"] and os.path.exists(params["dest"]):
        capacity = live.dom.blockInfo(params["target"])[0]
        verify_dest(qemu, params["dest"], params["format"], capacity)
        result["verified"] = True
    result["dest_actual_size"] = allocated_bytes(params["dest"])
    return result


def source_data(path: str | None) -> int:
    """Bytes the copy has to move: what the source takes on disk (its holes cost nothing)."""
    try:
        return allocated_bytes(path) if path else 0
    except OSError:
        return 0


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            LIBVIRT, JOURNAL, QEMU_IMG, QCOW2_OPTIONS, PROGRESS, SCHEDULE,
            name=dict(type="str", required=True),
            target=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            format=dict(NEW_IMAGE_FORMAT, default="qcow2"),
            bandwidth=dict(type="int"),
            copy_mode=dict(type="str", default=AUTO, choices=list(COPY_MODES)),
            timeout=dict(type="int", default=3600),
            pivot=dict(type="bool", default=True),
            verify=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            label=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, libraries=LIBVIRT_LIBRARIES,
               on_interrupt="the block copy was aborted; the guest stays on its original disk")


if __name__ == "__main__":
    main()
