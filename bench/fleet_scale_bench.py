#!/usr/bin/env python
"""The disk_format role's own cost: a converged host with 50 disks against one with 1 disk, and the
orchestration overhead per guest beyond the time spent in qemu (conversion or live copy) and in
the guest's own shutdown, both as the role itself measured them.

Domains are defined on the local libvirtd, one set at a time, and the role runs through
ansible-playbook, alternating the sets: shut-off guests (no boot), and with --running also
booted guests, copied live and taken offline; there, ten guests run for both the 1-guest and the
10-guest run, since idle TCG guests load the host. The guests the role starts again boot under TCG
while it works on the next ones, so on a 2-core machine their boots are part of the offline figure. The role
runs with disk_format_parallel 1: the time in qemu and in shutdowns then adds up to its wall time's share.

    .venv/bin/python bench/fleet_scale_bench.py [--rounds 3] [--running]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess

from common import LABCTL, log, output, ratio, run_playbook, timed

PREFIX = "kvm-images-bench-scale-"


def define(lab: str, domains: int, disks: int, fmt: str, start: bool = False) -> list[str]:
    names = []
    for number in range(domains):
        name = f"{PREFIX}{number:02d}"
        args = []
        for disk in range(disks):
            path = os.path.join(lab, f"{name}-{disk}.{fmt}")
            subprocess.run(["qemu-img", "create", "-q", "-f", fmt, path, "16M"], check=True)
            args += ["--disk", f"{path},format={fmt}"]
        timed(LABCTL + ["define", "--name", name, "--serial", os.path.join(lab, name + ".log"), *args]
              + (["--start"] if start else []))
        names.append(name)
    return names


def wait_booted(lab: str, names: list[str]) -> None:
    for name in names:
        timed(LABCTL + ["wait-serial", os.path.join(lab, name + ".log"), "--pattern", "KVMIMAGES-CHECKSUM vda",
                        "--timeout", "300"])


def remove(lab: str, names: list[str]) -> None:
    timed(LABCTL + ["remove", *names])
    for entry in os.listdir(lab):
        path = os.path.join(lab, entry)
        if os.path.isfile(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)


def role(lab: str, method: str = "auto", include: list[str] | None = None) -> tuple[float, float]:
    """The role's wall time, and the time spent in qemu (conversions, live copies) and in guest shutdowns."""
    wall, results = run_playbook([{"ansible.builtin.include_role": {"name": "kvm.images.disk_format"}, "vars": {
        "disk_format_method": method,
        # One at a time: the time in qemu and in shutdowns adds up to the run's own only when nothing overlaps.
        "disk_format_parallel": 1,
        "disk_format_include": include or [PREFIX + "*"], "disk_format_target": "qcow2",
        "disk_format_allowed_backing_dirs": [lab], "disk_format_state_dir": os.path.join(lab, "state"),
        "disk_format_report_dir": os.path.join(lab, "report"), "disk_format_install_dependencies": False}},
        {"ansible.builtin.set_fact": {"converted": "{{ __disk_format_results | default([]) }}"}}])
    records = results[1]["ansible_facts"]["converted"]
    # A domain's shutdown is repeated in each of its disks' records: count it once.
    shutdowns = {record["domain"]: float(record.get("shutdown_s") or 0) for record in records}
    return wall, sum(float(record.get("duration_s") or 0) for record in records) + sum(shutdowns.values())


def overhead_per_extra_guest(runs: dict[int, list[tuple[float, float]]]) -> tuple[float, tuple, tuple]:
    one = min(runs[1], key=lambda run: run[0] - run[1])
    ten = min(runs[10], key=lambda run: run[0] - run[1])
    return ((ten[0] - ten[1]) - (one[0] - one[1])) / 9, one, ten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/lib/kvm-images-lab/bench-scale")
    parser.add_argument("--running", action="store_true", help="also booted guests taken offline (slow under TCG)")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    os.chmod(args.dir, 0o755)
    converged = {"1 disk": [], "50 disks": []}
    runs: dict[str, dict[int, list[tuple[float, float]]]] = {"shut-off guests, offline": {1: [], 10: []}}
    if args.running:
        runs.update({"running guests, live": {1: [], 10: []}, "running guests, offline": {1: [], 10: []}})
    try:
        for number in range(args.rounds):
            log(f"round {number + 1}/{args.rounds}")
            for label, (domains, disks) in (("1 disk", (1, 1)), ("50 disks", (10, 5))):
                names = define(args.dir, domains, disks, "qcow2")
                converged[label].append(role(args.dir)[0])
                remove(args.dir, names)
            for label, by_guests in runs.items():
                for guests in by_guests:
                    running = label.startswith("running")
                    # Ten guests run either way: idle TCG guests load the host, and that load is not the role's.
                    names = define(args.dir, 10 if running else guests, 1, "raw", start=running)
                    if running:
                        wait_booted(args.dir, names)
                    by_guests[guests].append(role(args.dir, method=label.rsplit(" ", 1)[1], include=names[:guests]))
                    remove(args.dir, names)
        best = {label: min(values) for label, values in converged.items()}
        print(f"converged host, whole role run: 1 disk {best['1 disk']:.2f} s, 50 disks {best['50 disks']:.2f} s")
        print(f"RATIO 50 disks / 1 disk on a converged host: {ratio(best['50 disks'], best['1 disk'])}"
              " (target <= 1.20x)")
        for label, by_guests in runs.items():
            overhead, one, ten = overhead_per_extra_guest(by_guests)
            print(f"{label}: 1 guest {one[0]:.2f} s (in qemu and shutdowns {one[1]:.2f} s),"
                  f" 10 guests {ten[0]:.2f} s (in qemu and shutdowns {ten[1]:.2f} s)")
            target = "<= 1.5 s" if label == "running guests, offline" else "< 1 s"
            print(f"{label}: orchestration overhead per extra guest beyond qemu and shutdowns: {overhead:.2f} s"
                  f" (target {target})")
        by_label = {label: {str(k): v for k, v in by_guests.items()} for label, by_guests in runs.items()}
        print(json.dumps({"converged": converged, "runs": by_label}))
    finally:
        left = [name for name in output(["virsh", "-c", "qemu:///system", "list", "--all", "--name"]).split()
                if name.startswith(PREFIX)]
        if left:
            timed(LABCTL + ["remove", *left])
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
