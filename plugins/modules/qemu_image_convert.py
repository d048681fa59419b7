#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qemu_image_convert
short_description: Convert one disk image into a new file, offline, verified and atomically
version_added: 0.1.0
description:
  - Converts O(src) into O(dest) in O(format) with C(qemu-img convert), always telling qemu-img both formats.
  - The source is checked first (its header must match O(src_format) and hold nothing hostile), must not be in
    use by a running guest, and is never modified. A source with metadata (qcow2 and the like) must pass
    C(qemu-img check) - leaks are fine, a corrupt one is refused, since qemu-img would copy it without a word.
  - The new image is written to a temp file beside O(dest), synced, verified (C(qemu-img compare), equal
    virtual sizes, C(qemu-img check) and the header of a qcow2), given the source's owner, mode and SELinux
    label, renamed into place and the directory synced. O(dest) is either absent, old or complete, never
    partial. Temp files left by an interrupted run (a killed process runs no cleanup) are removed by the next.
  - Should O(dest) change while the conversion runs - a module of an interrupted run lives on after a killed
    C(ansible-playbook), and may rename its own copy into place - the new copy is discarded and O(dest) left as
    it is, since a guest may already run on it.
  - Free space is checked with C(qemu-img measure) before anything is written.
  - Idempotent without reading the images in full - an existing O(dest) of the target format and virtual size,
    not older than the source, is the result of an earlier run (it only ever appears through a verified rename).
    The destination of an interrupted M(kvm.images.libvirt_disk_copy), recognised by its marker file, is never
    taken for one, nor replaced unless O(force) - it may be half-written, or the image a guest switched to
    just before that run was killed; while QEMU holds it, it is refused even with O(force).
  - For long conversions use C(async) with C(poll); when an C(async) timeout kills the task, the next run
    removes its temp file.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.qemu_img
  - kvm.images.qemu_img.QCOW2_OPTIONS
attributes:
  check_mode:
    support: full
    details:
      - Reads and checks the source, measures the new image and checks the space, writes nothing.
  diff_mode:
    support: full
    details:
      - Format and virtual size of O(dest) before and after.
  idempotent:
    support: full
options:
  src:
    description: The image to convert (absolute path).
    type: path
    required: true
  src_format:
    description:
      - The source's declared format, as its domain definition says. The header must agree.
      - When omitted, the format the header shows (a raw image's guest can forge a header, so declare it).
    type: str
    choices: [raw, qcow2, qcow, vmdk, vdi, vhdx, vpc, qed]
  dest:
    description: The new image (absolute path). Defaults to O(src) with its extension replaced by the format's.
    type: path
  format:
    description: The format of the new image.
    type: str
    choices: [raw, qcow2]
    required: true
  compression:
    description: Compress the new qcow2 image (C(-c)).
    type: bool
    default: false
  compression_type:
    description: qcow2 compression type.
    type: str
    choices: [zlib, zstd]
  sparse:
    description: Minimum run of zero bytes left unallocated in the new image (C(-S)), for example V(4k).
    type: str
  parallel:
    description: Number of parallel coroutines (C(-m)).
    type: int
  out_of_order:
    description: Allow out-of-order writes to the new image (C(-W)); faster, and safe here since it is a temp file.
    type: bool
    default: false
  src_cache:
    description: Cache mode for reading the source (C(-T)).
    type: str
    choices: [none, writeback, writethrough, directsync, unsafe]
  dest_cache:
    description: Cache mode for writing the new image (C(-t)). The module syncs the file itself before using it.
    type: str
    choices: [none, writeback, writethrough, directsync, unsafe]
  verify:
    description: Verify the new image against the source before renaming it into place.
    type: bool
    default: true
  space_check:
    description: Refuse when the destination's file system lacks what C(qemu-img measure) says plus a margin.
    type: bool
    default: true
  backing:
    description: V(flatten) the source's backing chain into the new image, or V(keep) it as the new image's backing file.
    type: str
    choices: [flatten, keep]
    default: flatten
  allowed_backing_dirs:
    description: Directories the source's backing file may lie in (the source's own directory when omitted).
    type: list
    elements: path
  force:
    description: Replace an existing O(dest) that is not an up-to-date conversion of O(src) (and reconvert one that is).
    type: bool
    default: false
  owner:
    description: Owner of the new image; the source's by default.
    type: str
  group:
    description: Group of the new image; the source's by default.
    type: str
  mode:
    description: Mode of the new image; the source's by default.
    type: raw
"""

EXAMPLES = r"""
- name: Convert a shut-off guest's raw disk to qcow2
  kvm.images.qemu_image_convert:
    src: /var/lib/libvirt/images/web01.img
    src_format: raw
    format: qcow2
  register: converted

- name: A long conversion, in the background
  kvm.images.qemu_image_convert:
    src: /var/lib/libvirt/images/big.raw
    src_format: raw
    format: qcow2
    out_of_order: true
  async: 7200
  poll: 10
"""

RETURN = r"""
src:
  description: The source.
  returned: success
  type: str
dest:
  description: The new image.
  returned: success
  type: str
format:
  description: The new image's format.
  returned: success
  type: str
src_format:
  description: The format the source was read as.
  returned: success
  type: str
virtual_size:
  description: Size the guest sees, in bytes.
  returned: success
  type: int
src_actual_size:
  description: Bytes the source takes on disk.
  returned: success
  type: int
dest_actual_size:
  description: Bytes the new image takes on disk (in check mode, what C(qemu-img measure) expects).
  returned: success
  type: int
bytes_saved:
  description: RV(src_actual_size) minus RV(dest_actual_size).
  returned: success
  type: int
duration_s:
  description: Seconds spent converting, syncing and verifying.
  returned: success
  type: float
verified:
  description: Whether the new image was verified against the source.
  returned: success
  type: bool
cmd:
  description: The qemu-img argv that wrote the new image.
  returned: changed and not check mode
  type: list
  elements: str
reason:
  description: Why something changed.
  returned: changed
  type: str
removed_leftovers:
  description: Temp files of an interrupted earlier run that were removed.
  returned: success
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import (
    NEW_IMAGE_FORMAT,
    QCOW2_OPTIONS,
    QEMU_IMG,
    module_spec,
    qcow2_options,
)
from ansible_collections.kvm.images.plugins.module_utils.formats import SOURCE_FORMATS
from ansible_collections.kvm.images.plugins.module_utils.image_convert import Converter, Request, decide
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import qemu_img_for

CACHE_MODES = ["none", "writeback", "writethrough", "directsync", "unsafe"]


def run(module: AnsibleModule) -> dict:
    params = module.params
    request = Request(
        src=params["src"], src_format=params["src_format"], dest=params["dest"], format=params["format"],
        create_options=dict(qcow2_options(params), compression_type=params["compression_type"]),
        compress=params["compression"], sparse=params["sparse"], parallel=params["parallel"],
        out_of_order=params["out_of_order"], src_cache=params["src_cache"], dest_cache=params["dest_cache"],
        verify=params["verify"], space_check=params["space_check"], keep_backing=params["backing"] == "keep",
        force=params["force"], allowed_backing_dirs=params["allowed_backing_dirs"],
    )
    decision = decide(request)
    qemu = qemu_img_for(module)
    converter = Converter(module, qemu)
    src_actual = os.stat(decision.src).st_blocks * 512
    result = {
        "changed": decision.reason is not None, "src": decision.src, "dest": decision.dest,
        "format": request.format, "src_format": decision.src_format, "virtual_size": decision.header.virtual_size,
        "src_actual_size": src_actual, "verified": False, "duration_s": 0.0,
        "removed_leftovers": decision.leftovers,
    }
    if decision.reason:
        result["reason"] = decision.reason
    expected = None
    if decision.convert:
        converter.check_source(decision)
        expected = converter.measure(decision, request)["required"]
        if request.space_check:
            converter.check_space(decision, expected)
        if module._diff:
            before = (f"{decision.dest}: present (replaced)\n" if decision.dest_exists
                      else f"{decision.dest}: absent\n")
            result["diff"] = {"before": before, "after": f"{decision.dest}: {request.format},"
                              f" {decision.header.virtual_size} bytes virtual\n"}
    if module.check_mode:
        result["dest_actual_size"] = expected if expected is not None else os.stat(decision.dest).st_blocks * 512
        result["bytes_saved"] = src_actual - result["dest_actual_size"]
        return result
    done = converter.run(decision, request, params["owner"], params["group"], params["mode"])
    result.update(verified=done["verified"], duration_s=done["duration_s"])
    if done["argv"]:
        result["cmd"] = done["argv"]
    result["dest_actual_size"] = os.stat(decision.dest).st_blocks * 512
    result["bytes_saved"] = src_actual - result["dest_actual_size"]
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            QEMU_IMG, QCOW2_OPTIONS,
            src=dict(type="path", required=True),
            src_format=dict(type="str", choices=list(SOURCE_FORMATS)),
            dest=dict(type="path"),
            format=dict(NEW_IMAGE_FORMAT, required=True),
            compression=dict(type="bool", default=False),
            compression_type=dict(type="str", choices=["zlib", "zstd"]),
            sparse=dict(type="str"),
            parallel=dict(type="int"),
            out_of_order=dict(type="bool", default=False),
            src_cache=dict(type="str", choices=CACHE_MODES),
            dest_cache=dict(type="str", choices=CACHE_MODES),
            verify=dict(type="bool", default=True),
            space_check=dict(type="bool", default=True),
            backing=dict(type="str", default="flatten", choices=["flatten", "keep"]),
            allowed_backing_dirs=dict(type="list", elements="path"),
            force=dict(type="bool", default=False),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, on_interrupt="the temp file was removed, nothing was renamed",
               on_os_error=lambda exc: f"conversion of {module.params['src']} failed: {exc}; nothing was renamed")


if __name__ == "__main__":
    main()
