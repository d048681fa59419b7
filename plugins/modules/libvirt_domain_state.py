#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_domain_state
short_description: Shut a libvirt domain down gracefully, or start it
version_added: 0.1.0
description:
  - Brings one domain to V(shutoff) with an ACPI shutdown request, waiting up to O(shutdown_timeout)
    seconds, and powers it off only when O(force_off) allows it; or starts a shut-off domain.
  - Used by the P(kvm.images.disk_format#role) role around offline conversions.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
  - kvm.images.libvirt
  - kvm.images.libvirt.journal
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description: The domain's name.
    type: str
    required: true
  state:
    description: The state to bring the domain to.
    type: str
    choices: [running, shutoff]
    required: true
  shutdown_timeout:
    description: Seconds to wait for the guest to turn itself off after the shutdown request.
    type: int
    default: 120
  force_off:
    description:
      - Power the domain off (like pulling the plug) when it has not shut down within O(shutdown_timeout).
      - When V(false), such a domain is left running and the task fails.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Shut web01 down, waiting up to five minutes
  kvm.images.libvirt_domain_state:
    name: web01
    state: shutoff
    shutdown_timeout: 300

- name: Start it again
  kvm.images.libvirt_domain_state:
    name: web01
    state: running
"""

RETURN = r"""
previous_state:
  description: libvirt's name of the state before the task.
  returned: success
  type: str
  sample: running
state:
  description: libvirt's name of the state after the task.
  returned: success
  type: str
  sample: shut off
forced:
  description: Whether the domain had to be powered off.
  returned: success
  type: bool
duration_s:
  description: Seconds the shutdown took.
  returned: success
  type: float
reason:
  description: Why the state changed, or would change in check mode.
  returned: changed
  type: str
  sample: running -> shut off (ACPI shutdown)
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import JOURNAL, LIBVIRT, module_spec
from ansible_collections.kvm.images.plugins.module_utils.domain_power import bring_to
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import LIBVIRT_LIBRARIES, run_module


def run(module: AnsibleModule) -> dict:
    params = module.params
    with LibvirtConnection(params["uri"]) as connection:
        return bring_to(connection.domain(params["name"]), params["state"],
                        shutdown_timeout=params["shutdown_timeout"], force_off=params["force_off"],
                        journal=params["journal"], apply=not module.check_mode)


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            LIBVIRT, JOURNAL,
            name=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["running", "shutoff"]),
            shutdown_timeout=dict(type="int", default=120),
            force_off=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, libraries=LIBVIRT_LIBRARIES)


if __name__ == "__main__":
    main()
