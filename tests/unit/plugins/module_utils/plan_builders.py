# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records the planner tests build: disks and domains as libvirt_disk_info gives them, journal switches."""

from __future__ import annotations


def disk(target="vda", source="/images/a.raw", fmt="raw", convertible=True, skip_reason=None):
    return {"target": target, "source": source, "driver_type": fmt,
            "convertible": convertible, "skip_reason": skip_reason}


def domain(name="web01", state="running", disks=None):
    return {"name": name, "state": state, "disks": disks if disks is not None else [disk()]}


def converted_record(domain_name="web01", target="vda"):
    return {"domain": domain_name, "target": target, "source": "/images/a.raw", "source_format": "raw",
            "dest": "/images/a.qcow2", "target_format": "qcow2", "status": "converted"}
