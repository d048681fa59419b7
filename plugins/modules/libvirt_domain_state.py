#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_domain_state
short_description: Shut libvirt domains down gracefully, or start them
version_added: 0.1.0
description:
  - Brings a domain to V(shutoff) with an ACPI shutdown request, waiting up to O(shutdown_timeout)
    seconds, and powers it off only when O(force_off) allows it; or starts a shut-off domain.
  - With O(names), several domains at once - one shutdown request to each, then one wait for all of them,
    so that their shutdowns overlap - and one result per domain in RV(domains).
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
    description:
      - The domain's name.
      - Exactly one of O(name) and O(names) is required.
    type: str
  names:
    description:
      - Several domains, brought to O(state) together. Exactly one of O(name) and O(names) is required.
      - Should one of them not shut down in time (and O(force_off) not allow powering it off), the task fails
        naming it; the others are shut off by then.
    type: list
    elements: str
    version_added: 0.2.0
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
  returned: success, with O(name)
  type: str
  sample: running
state:
  description: libvirt's name of the state after the task.
  returned: success, with O(name)
  type: str
  sample: shut off
forced:
  description: Whether the domain had to be powered off.
  returned: success, with O(name)
  type: bool
duration_s:
  description: Seconds the shutdown took.
  returned: success, with O(name)
  type: float
reason:
  description: Why the state changed, or would change in check mode.
  returned: changed, with O(name)
  type: str
  sample: running -> shut off (ACPI shutdown)
domains:
  description: One result per entry of O(names), in order, each with C(name) and the keys returned with O(name).
  returned: success, with O(names)
  type: list
  elements: dict
  sample: [{"name": "web01", "changed": true, "previous_state": "running", "state": "shut off", "forced": false,
            "duration_s": 1.2, "reason": "running -> shut off (ACPI shutdown)"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.argument_specs import JOURNAL, LIBVIRT, module_spec
from ansible_collections.kvm.images.plugins.module_utils.domain_power import bring_all
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import LIBVIRT_LIBRARIES, LibvirtConnection
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module


def run(module: AnsibleModule) -> dict:
    params = module.params
    names = params["names"] if params["names"] is not None else [params["name"]]
    with LibvirtConnection(params["uri"]) as connection:
        results = bring_all([connection.domain(name) for name in names], params["state"],
                            shutdown_timeout=params["shutdown_timeout"], force_off=params["force_off"],
                            journal=params["journal"], apply=not module.check_mode)
    if params["names"] is None:
        [result] = results
        result.pop("name")
        return result
    return {"changed": any(result["changed"] for result in results), "domains": results}


def main() -> None:
    module = AnsibleModule(
        argument_spec=module_spec(
            LIBVIRT, JOURNAL,
            name=dict(type="str"),
            names=dict(type="list", elements="str"),
            state=dict(type="str", required=True, choices=["running", "shutoff"]),
            shutdown_timeout=dict(type="int", default=120),
            force_off=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("name", "names")],
        required_one_of=[("name", "names")],
        supports_check_mode=True,
    )
    run_module(module, run, libraries=LIBVIRT_LIBRARIES)


if __name__ == "__main__":
    main()
