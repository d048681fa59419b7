# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.kvm.images.plugins.module_utils.disk_plan import plan_disks
from ansible_collections.kvm.images.plugins.module_utils.fleet_report import report_records
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.plan_builders import disk, domain


def test_report_records_list_every_disk_once():
    plan = plan_disks([domain(disks=[disk("vda"), disk("vdb", source="/images/b.raw")])], "qcow2")
    done = [dict(plan[0], host="hv1", status="converted")]
    records = report_records(done, plan, "hv1")
    assert [(r["target"], r.get("status")) for r in records] == [("vda", "converted"), ("vdb", None)]
    assert all(r["host"] == "hv1" for r in records)


