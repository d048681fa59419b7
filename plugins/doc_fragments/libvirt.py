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
