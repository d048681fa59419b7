#!/usr/bin/python
# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_report
short_description: Write the fleet report of the disk_format role (JSON and HTML)
version_added: 0.2.0
description:
  - Writes C(report.json) and C(report.html) into O(dest) from the records the hosts of a play left - what
    became of each host and each of its disks - naming every host of the play, also those that left no record
    (unreachable, or failed before the role ran, or of a batch that has not run yet).
  - "Each file appears whole: it is written beside its final name and renamed."
  - Settings that matched no domain on any host - an entry of a host's C(disk_format_domains), or a pattern of
    its C(disk_format_include) - are listed in the report, and are warnings when O(warn_unmatched).
  - "Runs on the controller; the P(kvm.images.disk_format#role) role and its playbooks call it with
    C(delegate_to: localhost)."
author: kvm.images contributors (@kvm-images)
extends_documentation_fragment:
  - kvm.images.attributes
attributes:
  check_mode:
    support: full
    details:
      - The report of a check-mode run is written all the same (it changes nothing on the hosts); its summary says
        nothing was changed.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - The report records when it was generated.
options:
  dest:
    description: The directory of the report (made when missing).
    type: path
    required: true
  records:
    description:
      - The hosts' records, as the role leaves them (C(host), C(status), C(step), C(msg), C(hypervisor), C(domains),
        C(settings), C(disks)).
      - Exactly one of O(records) and O(merge) is required.
    type: list
    elements: dict
  play_hosts:
    description:
      - Every host of the play, in order; a host without a record is reported as such. Required with O(records).
    type: list
    elements: str
  merge:
    description:
      - Paths of C(report.json) files of several runs on this controller - shards of one fleet run from several
        controllers, or the slices of an AWX job - to merge into one report. A host in more than one keeps the
        record of the report generated last.
      - Exactly one of O(records) and O(merge) is required.
    type: list
    elements: path
    version_added: 0.2.0
  active_hosts:
    description:
      - The hosts of the play still running, as C(ansible_play_hosts) says while it runs; one of them without a
        record has not run yet. When omitted (the play is over), every host without a record is unreachable.
    type: list
    elements: str
  mode:
    description:
      - What the run was.
      - V(migrate) when unset, or with O(merge) the mode of the merged reports when they all have the same one.
    type: str
    choices: [migrate, rollback, plan, check]
  warn_unmatched:
    description: Warn about settings that matched no domain (set once every host has run).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: One report of the fleet from the reports of its shards
  kvm.images.fleet_report:
    dest: /srv/reports/fleet
    merge:
      - /srv/reports/shard-1/report.json
      - /srv/reports/shard-2/report.json

- name: The fleet report, once every host has run
  kvm.images.fleet_report:
    dest: "{{ 'disk_format_report' | ansible.builtin.realpath }}"
    records: "{{ play_hosts_all | map('extract', hostvars, '__disk_format_host') | select('defined') }}"
    play_hosts: "{{ play_hosts_all }}"
    warn_unmatched: true
  delegate_to: localhost
  run_once: true
  vars:
    play_hosts_all: "{{ groups['hypervisors'] }}"
"""

RETURN = r"""
json:
  description: The path of C(report.json).
  returned: success
  type: str
html:
  description: The path of C(report.html).
  returned: success
  type: str
summary:
  description: Hosts and disks counted by status, and the sizes of the converted disks before and after.
  returned: success
  type: dict
unmatched:
  description: The settings that matched no domain.
  returned: success
  type: list
  elements: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.images.plugins.module_utils.atomic_file import write_whole
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.fleet_report import (
    fleet_report,
    merged_mode,
    records_of_reports,
    render_html,
)
from ansible_collections.kvm.images.plugins.module_utils.module_run import run_module


def run(module: AnsibleModule) -> dict:
    params = module.params
    records, play_hosts, mode = params["records"], params["play_hosts"], params["mode"] or "migrate"
    if params["merge"] is not None:
        reports = []
        for path in params["merge"]:
            try:
                with open(path, encoding="utf-8") as handle:
                    reports.append(json.load(handle))
            except (OSError, ValueError) as exc:
                raise KvmImagesError(f"cannot read the report {path}: {getattr(exc, 'strerror', None) or exc};"
                                     " nothing was written", path=path) from exc
        records, play_hosts = records_of_reports(reports)
        mode = params["mode"] or merged_mode(reports)
    elif play_hosts is None:
        raise KvmImagesError("play_hosts is required with records")
    report = fleet_report(records, play_hosts=play_hosts, active_hosts=params["active_hosts"], mode=mode)
    os.makedirs(params["dest"], mode=0o755, exist_ok=True)
    json_path, html_path = os.path.join(params["dest"], "report.json"), os.path.join(params["dest"], "report.html")
    write_whole(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_whole(html_path, render_html(report))
    if params["warn_unmatched"]:
        for line in report["unmatched"]:
            module.warn(f"{line} on any host of the play")
    return {"changed": False, "json": json_path, "html": html_path, "summary": report["summary"],
            "unmatched": report["unmatched"]}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            records=dict(type="list", elements="dict"),
            play_hosts=dict(type="list", elements="str"),
            merge=dict(type="list", elements="path"),
            active_hosts=dict(type="list", elements="str"),
            mode=dict(type="str", choices=["migrate", "rollback", "plan", "check"]),
            warn_unmatched=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("records", "merge")],
        required_one_of=[("records", "merge")],
        supports_check_mode=True,
    )
    run_module(module, run, on_os_error=lambda exc: f"cannot write the report into {module.params['dest']}: {exc}")


if __name__ == "__main__":
    main()
