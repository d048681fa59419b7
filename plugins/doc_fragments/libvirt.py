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

    # The modules that change a domain record each change in the journal before making it.
    JOURNAL = r"""
options:
  journal:
    description:
      - A file to which one JSON line is appended, and flushed to disk, just before each change this module
        makes. A disk switched to a new image or format (the define, or the pivot of a live copy) gives
        C(event=switch), C(domain), C(target), C(source) and C(source_format) (what the disk had), C(dest) and
        C(target_format) (what it gets); a shutdown gives C(event=shutdown) and the domain running again
        C(event=start), with C(domain). Every line has C(time).
      - A run killed right after a switch still leaves the original's path and format behind, and one killed
        while a domain is down for a conversion leaves a shutdown with no start after it. A line whose change
        did not happen stays too, so read the lines against what the domain is now.
      - When the line cannot be written, the change is not made.
      - The P(kvm.images.disk_format#role) role keeps the records its rollback and its restarts read this way.
    type: path
"""
