# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the libvirt modules' main() does once its AnsibleModule exists (private to kvm.images)."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kvm.images.plugins.module_utils.domain_xml import HAS_LXML, LXML_IMPORT_ERROR
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR


def run_libvirt_module(module: t.Any, run: t.Callable[[t.Any], dict[str, t.Any]]) -> None:
    """Check for libvirt-python and lxml, run, and turn the collection's error into fail_json."""
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=LXML_IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except KvmImagesError as exc:
        module.fail_json(**exc.fail_json_kwargs())
