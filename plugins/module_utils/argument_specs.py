# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options several modules share, each defined once beside the doc fragment that documents it
(private to kvm.images).

A module's spec is ``module_spec(LIBVIRT, JOURNAL, name=dict(...))``: the shared parts, then its own
options. tests/unit/plugins/module_utils/test_argument_specs.py holds every part to its fragment.
"""

from __future__ import annotations

import typing as t

from ansible_collections.kvm.images.plugins.module_utils.confinement import ENABLED, MODES
from ansible_collections.kvm.images.plugins.module_utils.formats import TARGET_FORMATS

Spec = t.Dict[str, t.Dict[str, t.Any]]

# doc_fragments/libvirt.py DOCUMENTATION
LIBVIRT: Spec = {"uri": {"type": "str", "default": "qemu:///system"}}

# doc_fragments/libvirt.py JOURNAL
JOURNAL: Spec = {"journal": {"type": "path"}}

# doc_fragments/qemu_img.py DOCUMENTATION
QEMU_IMG: Spec = {"confinement": {"type": "str", "default": ENABLED, "choices": list(MODES)}}

# doc_fragments/qemu_img.py QCOW2_OPTIONS
QCOW2_OPTIONS: Spec = {
    "compat": {"type": "str", "default": "1.1", "choices": ["0.10", "1.1"]},
    "cluster_size": {"type": "int", "default": 65536},
    "preallocation": {"type": "str", "default": "off", "choices": ["off", "metadata", "falloc", "full"]},
    "lazy_refcounts": {"type": "bool", "default": False},
}

# doc_fragments/progress.py DOCUMENTATION
PROGRESS: Spec = {
    "progress_interval": {"type": "int", "default": 0},
    "progress_file": {"type": "path"},
}

# doc_fragments/progress.py SCHEDULE
SCHEDULE: Spec = {
    "deadline": {"type": "float"},
    "expected_throughput": {"type": "float"},
}

# The format of a new image: the formats the collection converts to.
NEW_IMAGE_FORMAT: dict[str, t.Any] = {"type": "str", "choices": list(TARGET_FORMATS)}


def module_spec(*shared: Spec, **own: dict[str, t.Any]) -> Spec:
    """The shared parts, then the module's own options; a name given twice is a mistake, not an override."""
    spec: Spec = {}
    for part in shared + (own,):
        clash = set(spec) & set(part)
        if clash:
            raise ValueError(f"options defined twice: {', '.join(sorted(clash))}")
        spec.update(part)
    return spec


def qcow2_options(params: dict[str, t.Any]) -> dict[str, t.Any]:
    """The QCOW2_OPTIONS a module was given, for qemu-img's -o."""
    return {name: params[name] for name in QCOW2_OPTIONS}
