#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: qemu_image_info
short_description: Facts about disk images, without trusting them
version_added: 0.1.0
description:
  - Reads the image's header itself first and says whether it is safe to hand to qemu-img with its declared
    format. Accepted are raw, qcow2 (its backing chain followed file by file, each inside
    O(allowed_backing_dirs)), VDI, VHD (V(vpc)) and VHDX - the formats whose every field that makes qemu open
    another file, and whose virtual size, the inspector reads as qemu does. Every other format qemu knows
    (qcow, QED, VMDK, LUKS, Parallels, Bochs, cloop, DMG) is detected, never taken for raw, and refused by name.
  - Only a safe image is then examined with C(qemu-img info), and optionally C(check) and C(measure),
    always with the format given explicitly, under resource limits and confined by the kernel to the image and
    its vetted backing files (O(confinement)).
  - An image in use by a running guest is reported with RV(in_use=true) rather than as a failure.
  - With O(images), many images are examined in one call (one module run for a whole hypervisor); each
    result is what O(path) would return for that image, and an image that cannot be read fails alone.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.attributes.INFO_MODULE
  - kvm.images.qemu_img
options:
  path:
    description:
      - Absolute path of the image.
      - Exactly one of O(path) and O(images) is required.
    type: path
  images:
    description:
      - Several images, each with its own options; an option an image leaves unset takes the value of the
        module's option of the same name. The results are in RV(images), in the same order.
      - Exactly one of O(path) and O(images) is required.
    type: list
    elements: dict
    suboptions:
      path:
        description: Absolute path of the image.
        type: path
        required: true
      format:
        description: As O(format), for this image.
        type: str
        choices: [raw, qcow2, vdi, vpc, vhdx, qcow, qed, vmdk, luks, parallels, bochs, cloop, dmg]
      backing_chain:
        description: As O(backing_chain), for this image.
        type: bool
      check:
        description: As O(check), for this image.
        type: bool
      measure_format:
        description: As O(measure_format), for this image.
        type: str
        choices: [raw, qcow2]
      force_share:
        description: As O(force_share), for this image.
        type: bool
    version_added: 0.1.0
  format:
    description:
      - The declared format, as the domain definition says it. It is passed to qemu-img with C(-f).
      - When omitted, the format found in the header is used, and still passed explicitly.
      - A format other than raw, qcow2, vdi, vpc and vhdx is reported with the reason it is refused.
    type: str
    choices: [raw, qcow2, vdi, vpc, vhdx, qcow, qed, vmdk, luks, parallels, bochs, cloop, dmg]
  backing_chain:
    description: Return the whole backing chain as qemu-img sees it (only for safe images).
    type: bool
    default: false
  check:
    description: Run C(qemu-img check) and return its verdict in RV(check).
    type: bool
    default: false
  measure_format:
    description: Return in RV(measure) what a conversion to this format needs.
    type: str
    choices: [raw, qcow2]
  force_share:
    description:
      - Read an image in use with C(-U) (metadata only). Without it, an image in use is reported with
        RV(in_use=true) and the facts only qemu-img can tell stay null.
    type: bool
    default: false
  allowed_backing_dirs:
    description:
      - Directories a backing file may lie in. A backing file elsewhere makes the image unsafe.
      - When omitted, the image's own directory.
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: Facts about a guest's disk, as its definition declares it
  kvm.images.qemu_image_info:
    path: /var/lib/libvirt/images/web01.img
    format: raw
    check: true
    measure_format: qcow2
  register: web01_disk

- name: Refuse what the guest may have forged
  ansible.builtin.assert:
    that: web01_disk.safety.safe
    fail_msg: "{{ web01_disk.safety.problems | join('; ') }}"

- name: Several images in one call; a running guest's image read with -U
  kvm.images.qemu_image_info:
    measure_format: qcow2
    images:
      - path: /var/lib/libvirt/images/web01.img
        format: raw
        check: true
      - path: /var/lib/libvirt/images/db01.img
        format: raw
        force_share: true
  register: disks

- name: The images that could not be read
  ansible.builtin.debug:
    msg: "{{ disks.images | selectattr('failed', 'defined') | map(attribute='msg') }}"
"""

RETURN = r"""
path:
  description: The image's path.
  returned: when O(path) is given
  type: str
exists:
  description: Whether the path exists. A missing path is no failure.
  returned: when O(path) is given
  type: bool
format:
  description: The format qemu-img was told (the declared one, or the detected one when none was declared).
  returned: when O(path) is given
  type: str
  sample: raw
detected_format:
  description: The format the header says; V(raw) when it says nothing.
  returned: with O(path), when the image exists
  type: str
  sample: qcow2
format_mismatch:
  description: Whether the declared format differs from the header.
  returned: with O(path), when the image exists
  type: bool
is_iso:
  description: Whether the image holds an ISO 9660 file system.
  returned: with O(path), when the image exists
  type: bool
virtual_size:
  description: Size the guest sees, in bytes.
  returned: with O(path), when the image exists
  type: int
actual_size:
  description: Bytes allocated on the host's file system.
  returned: with O(path), when the image exists
  type: int
dirty_flag:
  description: Whether a qcow2 image was not closed cleanly.
  returned: with O(path), when the image exists
  type: bool
in_use:
  description: Whether another process (a running guest) holds QEMU's lock on the image.
  returned: with O(path), when the image exists
  type: bool
cluster_size:
  description: qcow2 cluster size in bytes.
  returned: with O(path), when the image exists
  type: int
compat:
  description: qcow2 compatibility level (V(0.10) or V(1.1)).
  returned: with O(path), when the image exists
  type: str
lazy_refcounts:
  description: Whether a qcow2 v3 image uses lazy refcounts.
  returned: with O(path), when the image exists
  type: bool
compression_type:
  description: qcow2 compression type (V(zlib) or V(zstd)).
  returned: with O(path), when the image exists
  type: str
encrypted:
  description: Whether the image is encrypted.
  returned: with O(path), when the image exists
  type: bool
backing_file:
  description: The backing file the header names (never opened by this module unless O(backing_chain) on a safe image).
  returned: with O(path), when the image exists
  type: str
backing_format:
  description: The backing file's format the header declares.
  returned: with O(path), when the image exists
  type: str
backing_chain:
  description: The backing chain as qemu-img sees it, this image first.
  returned: with O(path), when O(backing_chain) and the image is safe
  type: list
  elements: dict
data_file:
  description: The external data file a qcow2 image names (an empty string when the feature bit is set without a name).
  returned: with O(path), when the image exists
  type: str
snapshots:
  description: Internal snapshots (C(id), C(name), C(vm_state_size)).
  returned: with O(path), when qemu-img examined the image
  type: list
  elements: dict
check:
  description:
    - The verdict of C(qemu-img check) with C(rc), C(status) (V(clean), V(leaks), V(corrupt), V(incomplete),
      V(unsupported)), C(corruptions), C(leaks), C(check_errors), C(image_end_offset).
  returned: with O(path), when O(check) and qemu-img examined the image
  type: dict
measure:
  description: What a conversion to O(measure_format) needs, in bytes (C(required), C(fully_allocated)).
  returned: with O(path), when O(measure_format) and qemu-img examined the image
  type: dict
safety:
  description: Whether the image is safe to hand to qemu-img with its declared format (C(safe)), and why not
    (C(problems)).
  returned: when O(path) is given
  type: dict
  sample: {"safe": false, "problems": ["declared raw, but the image starts with a qcow2 header (a guest can write one
    into its raw disk)"]}
images:
  description:
    - One result per entry of O(images), in order, each with the keys returned for O(path).
    - An image that could not be read has C(failed=true) and C(msg) instead; the module itself does not fail.
  returned: when O(images) is given
  type: list
  elements: dict
  sample: [{"path": "/var/lib/libvirt/images/web01.img", "exists": true, "format": "raw",
            "safety": {"safe": true, "problems": []}}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import QEMU_IMG, module_spec
from ansible_collections.kvm.images.plugins.module_utils.formats import KNOWN_FORMATS, TARGET_FORMATS
from ansible_collections.kvm.images.plugins.module_utils.image_facts import PER_IMAGE_OPTIONS, gather, gather_each
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import qemu_img_for


def run(module: AnsibleModule) -> dict:
    params = module.params
    qemu = qemu_img_for(module)
    if params["images"] is not None:
        return {"changed": False, "images": gather_each(qemu, params["images"],
                                                        {key: params[key] for key in PER_IMAGE_OPTIONS},
                                                        allowed_backing_dirs=params["allowed_backing_dirs"])}
    facts = gather(qemu, params["path"], params["format"], backing_chain=params["backing_chain"],
                   check=params["check"], measure_format=params["measure_format"],
                   force_share=params["force_share"], allowed_backing_dirs=params["allowed_backing_dirs"])
    return dict(facts, changed=False)


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            QEMU_IMG,
            path=dict(type="path"),
            images=dict(type="list", elements="dict", options=dict(
                path=dict(type="path", required=True),
                format=dict(type="str", choices=list(KNOWN_FORMATS)),
                backing_chain=dict(type="bool"),
                check=dict(type="bool"),
                measure_format=dict(type="str", choices=list(TARGET_FORMATS)),
                force_share=dict(type="bool"),
            )),
            format=dict(type="str", choices=list(KNOWN_FORMATS)),
            backing_chain=dict(type="bool", default=False),
            check=dict(type="bool", default=False),
            measure_format=dict(type="str", choices=list(TARGET_FORMATS)),
            force_share=dict(type="bool", default=False),
            allowed_backing_dirs=dict(type="list", elements="path"),
        ),
        mutually_exclusive=[("path", "images")],
        required_one_of=[("path", "images")],
        supports_check_mode=True,
    )
    run_module(module, run, on_os_error=lambda exc: f"cannot read {module.params['path']}: {exc.strerror}")


if __name__ == "__main__":
    main()
