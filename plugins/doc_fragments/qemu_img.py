# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # What every module running qemu-img needs on the managed host.
    DOCUMENTATION = r"""
options:
  confinement:
    description:
      - V(landlock) runs every qemu-img confined by the kernel to the files the module decided on - the image
        read-only, its vetted backing files read-only, the one file it writes - plus the system's program and
        library directories. A Landlock ruleset enforces that, and a seccomp filter denies it any socket, so
        whatever an image names, qemu-img cannot open another host file or reach the network. Where the
        kernel lacks Landlock (Linux 5.13 or newer with C(landlock) among its security modules), the module
        fails before running anything.
      - V(disabled) runs qemu-img without that confinement, relying on the header inspection alone - the
        opt-out for hosts whose kernel cannot confine it.
    type: str
    choices: [landlock, disabled]
    default: landlock
requirements:
  - qemu-img (the C(qemu-utils) package on Debian) on the managed host
notes:
  - qemu-img is always told the image format (C(-f)); it never probes. Commands that parse image
    metadata run under limits of 1 GiB of address space and 30 s of CPU time.
"""

    QCOW2_OPTIONS = r"""
options:
  compat:
    description: qcow2 compatibility level of a new qcow2 image.
    type: str
    choices: ["0.10", "1.1"]
    default: "1.1"
  cluster_size:
    description: Cluster size of a new qcow2 image, in bytes (a power of two from 512 to 2 MiB).
    type: int
    default: 65536
  preallocation:
    description: Preallocation of a new qcow2 image.
    type: str
    choices: ["off", metadata, falloc, full]
    default: "off"
  lazy_refcounts:
    description: Lazy refcounts for a new qcow2 image (needs O(compat=1.1)).
    type: bool
    default: false
"""
