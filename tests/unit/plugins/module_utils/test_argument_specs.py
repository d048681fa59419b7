# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each shared option is defined once and documented once: the spec and its doc fragment agree."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.kvm.images.plugins.doc_fragments import libvirt, progress, qemu_img
from ansible_collections.kvm.images.plugins.module_utils import argument_specs
from ansible_collections.kvm.images.plugins.module_utils.argument_specs import module_spec, qcow2_options


def fragment_options(text):
    return yaml.safe_load(text)["options"]


@pytest.mark.parametrize("spec, fragment", [
    (argument_specs.LIBVIRT, libvirt.ModuleDocFragment.DOCUMENTATION),
    (argument_specs.JOURNAL, libvirt.ModuleDocFragment.JOURNAL),
    (argument_specs.QEMU_IMG, qemu_img.ModuleDocFragment.DOCUMENTATION),
    (argument_specs.QCOW2_OPTIONS, qemu_img.ModuleDocFragment.QCOW2_OPTIONS),
    (argument_specs.PROGRESS, progress.ModuleDocFragment.DOCUMENTATION),
    (argument_specs.SCHEDULE, progress.ModuleDocFragment.SCHEDULE),
], ids=["libvirt", "journal", "qemu_img", "qcow2_options", "progress", "schedule"])
def test_every_shared_option_is_documented_as_it_is_defined(spec, fragment):
    documented = fragment_options(fragment)
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name


def test_an_option_defined_twice_is_refused():
    with pytest.raises(ValueError, match="options defined twice: uri"):
        module_spec(argument_specs.LIBVIRT, uri=dict(type="str"))
    with pytest.raises(ValueError, match="options defined twice: uri"):
        module_spec(argument_specs.LIBVIRT, argument_specs.LIBVIRT)


def test_module_spec_keeps_shared_then_own_options():
    spec = module_spec(argument_specs.LIBVIRT, argument_specs.JOURNAL, name=dict(type="str", required=True))
    assert list(spec) == ["uri", "journal", "name"]


def test_qcow2_options_are_taken_from_the_params():
    params = {"compat": "1.1", "cluster_size": 65536, "preallocation": "off", "lazy_refcounts": True, "other": 1}
    assert qcow2_options(params) == {"compat": "1.1", "cluster_size": 65536, "preallocation": "off",
                                     "lazy_refcounts": True}
