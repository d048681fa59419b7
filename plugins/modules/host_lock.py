#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_lock
short_description: Keep two runs from converting disks on one hypervisor at once
version_added: 0.1.0
description:
  - Takes or releases a lock file on the hypervisor. A second run waits up to O(wait_timeout) seconds
    for the first to release it, then fails having changed nothing.
  - A lock older than O(stale_after) seconds is taken over, since its run was killed before it could
    release it (an C(async) timeout or a killed C(ansible-playbook) runs no cleanup).
  - The lock names the C(ansible-playbook) process of its run (O(process)). When another run's lock is found,
    the controller checks that process; if it ran on this same controller and is gone (killed with C(kill -9)
    or interrupted with Ctrl-C before its cleanup), the lock is taken over at once. A run of another
    controller is never presumed dead.
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the lock is only read, and the module fails when another run holds it.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  path:
    description: The lock file. Its directory is made (mode 0700) when missing, except in check mode.
    type: path
    required: true
  owner:
    description: Who holds the lock; the same owner taking it again is no change.
    type: str
    required: true
  state:
    description: Take (V(acquired)) or give back (V(released)) the lock.
    type: str
    choices: [acquired, released]
    default: acquired
  wait_timeout:
    description: Seconds to wait for another run's lock.
    type: int
    default: 0
  stale_after:
    description: Age in seconds after which a lock is considered left behind by a killed run.
    type: int
    default: 21600
  process:
    description:
      - The controller process of this run (C(host), C(pid), C(started)), kept in the lock. Filled in by the
        module's action plugin; set it only when calling the module some other way.
    type: dict
  take_over:
    description:
      - The owner of a lock known to be dead - the action plugin sets it after checking that owner's process.
        Its lock is replaced, provided it still holds it; any other owner's lock is waited for as usual.
    type: str
"""

EXAMPLES = r"""
- name: One run at a time on this hypervisor
  kvm.images.host_lock:
    path: /var/lib/kvm-images/lock
    owner: "{{ run_id }}"
    wait_timeout: 600

- name: Give the lock back
  kvm.images.host_lock:
    path: /var/lib/kvm-images/lock
    owner: "{{ run_id }}"
    state: released
"""

RETURN = r"""
taken_over:
  description: The content of a lock that was taken over (stale, or its run dead), if any.
  returned: success
  type: dict
holder:
  description: The content of the lock another run holds (C(owner), C(since), C(process)).
  returned: failure, when another run holds the lock
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.host_lock import HostLock
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module


def run(module: AnsibleModule) -> dict:
    params = module.params
    lock = HostLock(params["path"], params["owner"], process=params["process"])
    if params["state"] == "acquired":
        return lock.acquire(params["wait_timeout"], params["stale_after"], params["take_over"],
                            apply=not module.check_mode)
    return dict(lock.release(apply=not module.check_mode), taken_over=None)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            state=dict(type="str", default="acquired", choices=["acquired", "released"]),
            wait_timeout=dict(type="int", default=0),
            stale_after=dict(type="int", default=21600),
            process=dict(type="dict"),
            take_over=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
