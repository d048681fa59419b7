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

from ansible_collections.kvm.images.plugins.module_utils.domain_power import PowerControl, power_action
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import (
    LibvirtConnection,
    libvirt_call,
    state_name,
)
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_libvirt_module


def run(module: AnsibleModule) -> dict:
    params = module.params
    with LibvirtConnection(params["uri"]) as connection:
        domain = connection.domain(params["name"])
        before = state_name(domain)
        action = power_action(before, params["state"])
        result = {"changed": action is not None, "previous_state": before, "state": before,
                  "forced": False, "duration_s": 0.0}
        if action is None:
            return result
        result["reason"] = f"{before} -> {'running' if action == 'start' else 'shut off'}" + (
            " (ACPI shutdown)" if action == "shutdown" else "")
        if module.check_mode:
            return result
        control = PowerControl(domain)
        if action == "start":
            libvirt_call(f"cannot start domain {params['name']}", control.start)
        else:
            result.update(libvirt_call(f"cannot shut down domain {params['name']}", control.shutdown,
                                       params["shutdown_timeout"], params["force_off"]))
        result["state"] = state_name(domain)
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["running", "shutoff"]),
            shutdown_timeout=dict(type="int", default=120),
            force_off=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, run)


if __name__ == "__main__":
    main()
