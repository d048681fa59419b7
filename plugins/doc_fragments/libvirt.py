# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The libvirt connection option, named as in community.libvirt.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The libvirt connection URI of the hypervisor, as C(virsh -c) takes it.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python (the C(python3-libvirt) package on Debian) on the managed host
  - lxml (the C(python3-lxml) package on Debian) on the managed host
"""

    # The modules that point a disk at a new image record each switch before making it.
    JOURNAL = r"""
options:
  journal:
    description:
      - A file to which, just before a disk is switched to a new image or format (the define, or the pivot
        of a live copy), one JSON line is appended and flushed to disk - C(domain), C(target), C(source) and
        C(source_format) (what the disk had), C(dest) and C(target_format) (what it gets), and C(time).
      - A run killed right after the switch still leaves the original's path and format behind. A line whose
        switch did not happen stays too, so read the lines against what the domain uses now.
      - When the line cannot be written, the disk is not switched.
      - The C(kvm.images.disk_format) role keeps the records its rollback reads this way.
    type: path
"""
