#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qemu_image_convert
short_description: Convert disk images into new files, offline, verified and atomically
version_added: 0.1.0
description:
  - Converts O(src) into O(dest) in O(format) with C(qemu-img convert), always telling qemu-img both formats; or,
    with O(images), several images in one run, up to O(parallel) of them at once.
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
  - Free space is checked with C(qemu-img measure) before anything is written; the new images of one file system
    are added up, since parallel conversions that fit one by one may not fit at once.
  - Idempotent without reading the images in full - an existing O(dest) of the target format and virtual size,
    not older than the source, is the result of an earlier run (it only ever appears through a verified rename).
    The destination of an interrupted M(kvm.images.libvirt_disk_copy), recognised by its marker file, is never
    taken for one, nor replaced unless O(force) - it may be half-written, or the image a guest switched to
    just before that run was killed; while QEMU holds it, it is refused even with O(force).
  - For long conversions set O(progress_interval) to follow them in the play's output. When an C(async) timeout or
    a kill ends the task, the next run removes its temp files.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.qemu_img
  - kvm.images.qemu_img.QCOW2_OPTIONS
  - kvm.images.progress
  - kvm.images.progress.SCHEDULE
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
    description:
      - The image to convert (absolute path).
      - Exactly one of O(src) and O(images) is required.
    type: path
  src_format:
    description:
      - The source's declared format, as its domain definition says. The header must agree.
      - When omitted, the format the header shows (a raw image's guest can forge a header, so declare it).
      - "V(vpc) is VHD. Other formats (qcow, QED, VMDK, LUKS, ...) are refused, by name: the inspector does not read
        every field of theirs that makes qemu open another file as qemu does."
    type: str
    choices: [raw, qcow2, vdi, vpc, vhdx]
  dest:
    description: The new image (absolute path). Defaults to O(src) with its extension replaced by the format's.
    type: path
  format:
    description:
      - The format of the new image. Required with O(src); with O(images), for each image that sets none.
    type: str
    choices: [raw, qcow2]
  images:
    description:
      - Several conversions in one run, each with its own source, destination and formats; every other option
        applies to all of them. Each is decided and checked before any is written. Results are in RV(images), in
        the same order; one that fails carries C(failed) and C(msg) and does not stop the others, nor fail the
        task.
    type: list
    elements: dict
    version_added: 0.2.0
    suboptions:
      src:
        description: As O(src).
        type: path
        required: true
      src_format:
        description: As O(src_format).
        type: str
        choices: [raw, qcow2, vdi, vpc, vhdx]
      dest:
        description: As O(dest).
        type: path
      format:
        description: As O(format).
        type: str
        choices: [raw, qcow2]
      label:
        description: How progress lines and results name this image (its domain and disk, say); O(src) by default.
        type: str
      force:
        description: As O(force), for this image (O(force) when unset).
        type: bool
  parallel:
    description:
      - How many images of O(images) are converted at once. Each conversion reads its source and writes its new
        image as fast as the disks let it, so more at once helps only where one conversion leaves the storage
        idle; see the user guide for what was measured.
    type: int
    default: 1
    version_added: 0.2.0
  bandwidth:
    description: Limit each conversion to this many MiB/s of reading and writing (C(qemu-img convert -r)).
    type: int
    version_added: 0.2.0
  expect_shutdown:
    description:
      - In check mode, a source a running guest holds is read for the prediction instead of refused, because an
        earlier task of the same run shuts that guest down (the M(kvm.images.libvirt_domain_state) before the
        conversion). Outside check mode it changes nothing - a source in use is always refused.
    type: bool
    default: false
    version_added: 0.2.0
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
  coroutines:
    description:
      - Number of parallel coroutines of one conversion (C(-m)).
      - Named O(parallel) before 0.2.0, which now sets how many images are converted at once.
    type: int
    version_added: 0.2.0
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
    description: V(flatten) the source's backing chain into the new image, or V(keep) it as the new image's
      backing file.
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

- name: Three disks, two at once, capped, with a progress line every 10 s, done by 06:00
  kvm.images.qemu_image_convert:
    format: qcow2
    parallel: 2
    bandwidth: 300
    progress_interval: 10
    deadline: "{{ ('2026-12-07 06:00:00' | to_datetime).timestamp() }}"
    expected_throughput: 250
    images:
      - {src: /var/lib/libvirt/images/db01.raw, src_format: raw, label: db01 vda}
      - {src: /var/lib/libvirt/images/db01-data.raw, src_format: raw, label: db01 vdb}
      - {src: /var/lib/libvirt/images/web02.img, src_format: raw, label: web02 vda}
  register: batch
"""

RETURN = r"""
src:
  description: The source.
  returned: success, with O(src)
  type: str
dest:
  description: The new image.
  returned: success, with O(src)
  type: str
format:
  description: The new image's format.
  returned: success, with O(src)
  type: str
src_format:
  description: The format the source was read as.
  returned: success, with O(src)
  type: str
virtual_size:
  description: Size the guest sees, in bytes.
  returned: success, with O(src)
  type: int
src_actual_size:
  description: Bytes the source takes on disk.
  returned: success, with O(src)
  type: int
dest_actual_size:
  description: Bytes the new image takes on disk (in check mode, what C(qemu-img measure) expects).
  returned: success, with O(src)
  type: int
bytes_saved:
  description: RV(src_actual_size) minus RV(dest_actual_size).
  returned: success, with O(src)
  type: int
duration_s:
  description: Seconds spent converting, syncing and verifying.
  returned: success, with O(src)
  type: float
throughput_mib_s:
  description: The data copied (what C(qemu-img measure) expected of the new image) per second of RV(duration_s).
  returned: when converted
  type: float
  version_added: 0.2.0
verified:
  description: Whether the new image was verified against the source.
  returned: success, with O(src)
  type: bool
cmd:
  description: The qemu-img argv that wrote the new image.
  returned: changed and not check mode
  type: list
  elements: str
reason:
  description: Why something changed - or, with RV(deferred), why it did not start.
  returned: changed or deferred
  type: str
deferred:
  description: The conversion was not started because it would have ended after O(deadline).
  returned: when deferred
  type: bool
  version_added: 0.2.0
removed_leftovers:
  description: Temp files of an interrupted earlier run that were removed.
  returned: success, with O(src)
  type: list
  elements: str
images:
  description:
    - One result per entry of O(images), in order, with the keys returned for O(src). One that failed has
      C(failed=true) and C(msg) instead.
  returned: with O(images)
  type: list
  elements: dict
  version_added: 0.2.0
  sample: [{"src": "/var/lib/libvirt/images/db01.raw", "dest": "/var/lib/libvirt/images/db01.qcow2",
            "changed": true, "verified": true, "duration_s": 61.2, "throughput_mib_s": 412.3}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import (
    NEW_IMAGE_FORMAT,
    PROGRESS,
    QCOW2_OPTIONS,
    QEMU_IMG,
    SCHEDULE,
    module_spec,
    qcow2_options,
)
from ansible_collections.kvm.images.plugins.module_utils.conversion_batch import convert_all
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.formats import ACCEPTED_FORMATS
from ansible_collections.kvm.images.plugins.module_utils.image_convert import Converter, Request
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import qemu_img_for
from ansible_collections.kvm.images.plugins.module_utils.schedule import Schedule

CACHE_MODES = ["none", "writeback", "writethrough", "directsync", "unsafe"]


IMAGE_KEYS = ("src", "src_format", "dest", "format", "label", "force")


def request_of(params: dict, image: dict) -> Request:
    """One conversion: the image's own keys, every other option from the module's."""
    fmt = image.get("format") or params["format"]
    if fmt is None:
        raise KvmImagesError(f"no format for {image['src']}: set format, for the module or the image")
    return Request(
        src=image["src"], src_format=image.get("src_format"), dest=image.get("dest"), format=fmt,
        create_options=dict(qcow2_options(params), compression_type=params["compression_type"]),
        compress=params["compression"], sparse=params["sparse"], coroutines=params["coroutines"],
        out_of_order=params["out_of_order"], src_cache=params["src_cache"], dest_cache=params["dest_cache"],
        verify=params["verify"], space_check=params["space_check"], keep_backing=params["backing"] == "keep",
        force=params["force"] if image.get("force") is None else image["force"],
        allowed_backing_dirs=params["allowed_backing_dirs"], bandwidth_mib=params["bandwidth"],
        expect_shutdown=params["expect_shutdown"], label=image.get("label"),
    )


def run(module: AnsibleModule) -> dict:
    params = module.params
    single = params["images"] is None
    images = [{key: params[key] for key in IMAGE_KEYS if key in params}] if single else params["images"]
    requests = [request_of(params, image) for image in images]
    progress = Progress(params["progress_file"])
    progress.run_sampler()
    try:
        results = convert_all(Converter(module, qemu_img_for(module)), requests, parallel=params["parallel"],
                              check_mode=module.check_mode, diff=module._diff,
                              schedule=Schedule(params["deadline"], params["expected_throughput"], params["bandwidth"]),
                              owner=params["owner"], group=params["group"], mode=params["mode"], progress=progress)
    finally:
        progress.close()
    if single:
        [result] = results
        if result.get("failed"):
            details = {key: value for key, value in result.items() if key not in ("failed", "msg", "changed")}
            raise KvmImagesError(result["msg"], **details)
        return result
    diffs = [result.pop("diff") for result in results if "diff" in result]
    outcome = {"changed": any(result.get("changed") for result in results), "images": results}
    if diffs:
        outcome["diff"] = diffs
    return outcome


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            QEMU_IMG, QCOW2_OPTIONS, PROGRESS, SCHEDULE,
            src=dict(type="path"),
            src_format=dict(type="str", choices=list(ACCEPTED_FORMATS)),
            dest=dict(type="path"),
            format=dict(NEW_IMAGE_FORMAT),
            images=dict(type="list", elements="dict", options=dict(
                src=dict(type="path", required=True),
                src_format=dict(type="str", choices=list(ACCEPTED_FORMATS)),
                dest=dict(type="path"),
                format=dict(NEW_IMAGE_FORMAT),
                label=dict(type="str"),
                force=dict(type="bool"),
            )),
            parallel=dict(type="int", default=1),
            bandwidth=dict(type="int"),
            expect_shutdown=dict(type="bool", default=False),
            compression=dict(type="bool", default=False),
            compression_type=dict(type="str", choices=["zlib", "zstd"]),
            sparse=dict(type="str"),
            coroutines=dict(type="int"),
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
        mutually_exclusive=[("src", "images")] + [("images", key) for key in ("src_format", "dest")],
        required_one_of=[("src", "images")],
        required_by={"src": "format"},
        supports_check_mode=True,
    )
    run_module(module, run, on_interrupt="the temp file was removed, nothing was renamed",
               on_os_error=lambda exc: f"conversion of {module.params['src']} failed: {exc}; nothing was renamed")


if __name__ == "__main__":
    main()
