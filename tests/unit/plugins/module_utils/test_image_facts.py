# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several images in one call: each with its own options, one failure alone."""

from __future__ import annotations

from ansible_collections.kvm.images.plugins.module_utils.image_facts import gather_each
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeQemu
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.image_builders import raw_image


def test_each_image_gets_its_own_options_or_the_call_s(tmp_path):
    first, second = raw_image(tmp_path / "a.raw"), raw_image(tmp_path / "b.raw")
    qemu = FakeQemu()
    results = gather_each(qemu, [{"path": first, "format": "raw", "check": True},
                                 {"path": second, "format": None, "check": None}],
                          {"format": "raw", "check": False, "measure_format": "qcow2", "force_share": False,
                           "backing_chain": False})
    assert [r["path"] for r in results] == [first, second]
    assert all(r["safety"]["safe"] for r in results)
    assert ("check", first, "raw", False) in qemu.calls
    assert not any(call[0] == "check" and call[1] == second for call in qemu.calls)
    assert [r["measure"]["required"] for r in results] == [1 << 20, 1 << 20]


def test_one_unreadable_image_fails_alone(tmp_path):
    good, bad = raw_image(tmp_path / "good.raw"), raw_image(tmp_path / "bad.raw")
    results = gather_each(FakeQemu(broken=bad), [{"path": bad}, {"path": str(tmp_path / "missing.raw")},
                                                 {"path": str(tmp_path)}, {"path": good}],
                          {"format": "raw"})
    assert results[0] == {"path": bad, "failed": True, "msg": f"qemu-img info failed for {bad}: Could not open"}
    assert results[1]["exists"] is False and not results[1].get("failed")
    assert results[2]["safety"]["safe"] is False and "directory" in results[2]["safety"]["problems"][0]
    assert results[3]["safety"]["safe"] and results[3]["virtual_size"] == 1 << 20
