#!/usr/bin/env python
"""The controller's cost per hypervisor: the collection's playbooks over fleets of 1, 4 and 12 simulated
hypervisors, each with 8 shut-off guests on raw disks.

The hypervisors are unix users of this machine, each with its own qemu:///session libvirtd, reached over ssh
on loopback (tests/fleet/fleet.sh). For each fleet size: migrate, migrate again (nothing to do), plan and
rollback, through ansible-playbook with pipelining (what the user guide recommends for large fleets). The
controller's CPU is what ansible-playbook and its children (workers, ssh) used, from the kernel's accounting
of waited-for children - the hypervisors' own work runs under sshd, apart. Printed per added host, with the
tasks and remote calls per host (a bench-only callback counts them).

    .venv/bin/python bench/fleet_cost_bench.py [--sizes 1,4,12] [--guests 8] [--no-pipelining]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

from common import ROOT, VENV, collections_path, log

FLEET = ROOT / "tests" / "fleet" / "fleet.sh"
LABCTL = ROOT / "tests" / "guest" / "labctl.py"
RUNS = ("migrate", "no-op", "plan", "rollback")


def as_user(user: str, argv: list[str]) -> None:
    subprocess.run(["su", "-", user, "-c", " ".join(f"'{part}'" for part in argv)], check=True,
                   capture_output=True)


def build_guests(users: list[str], guests: int) -> None:
    """``guests`` shut-off domains per user, each on one 8 MiB raw disk with data."""
    for user in users:
        images = f"/home/{user}/images"
        shutil.copy(LABCTL, f"{images}/labctl.py")
        for number in range(guests):
            disk = f"{images}/g{number}.raw"
            with open(disk, "wb") as handle:
                handle.write(os.urandom(1 << 20))
                handle.truncate(8 << 20)
            shutil.chown(disk, user, user)
            as_user(user, ["/usr/bin/python3", f"{images}/labctl.py", "--uri", "qemu:///session", "define",
                           "--name", f"g{number}", "--disk", f"{disk},format=raw", "--serial",
                           f"{images}/g{number}.log"])


def playbook(inventory: str, name: str, extra: list[str], pipelining: bool, counts: str) -> dict:
    """One ansible-playbook run: the controller's CPU seconds, wall seconds, tasks and remote calls per host."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_PIPELINING=str(pipelining),
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callbacks"), ANSIBLE_CALLBACKS_ENABLED="task_count",
               KVM_IMAGES_TASK_COUNT=counts, ANSIBLE_HOST_KEY_CHECKING="False")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([str(VENV / "bin" / "ansible-playbook"), "-i", inventory, "-f", "12",
                               f"kvm.images.{name}", *extra], cwd=cwd, env=env, capture_output=True, text=True,
                              check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    with open(counts, encoding="utf-8") as handle:
        counted = json.load(handle)
    hosts = [host for host in counted["tasks"] if host != "localhost"]
    return {"cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), "wall": wall,
            "tasks": sum(counted["tasks"][host] for host in hosts) / len(hosts),
            "remote": sum(counted["remote"].get(host, 0) for host in hosts) / len(hosts)}


def measure(size: int, guests: int, pipelining: bool, work: str) -> dict[str, dict]:
    fleet_dir = os.path.join(work, f"fleet-{size}")
    subprocess.run([str(FLEET), "down", str(size), fleet_dir], check=True, capture_output=True)
    inventory = subprocess.run([str(FLEET), "up", str(size), fleet_dir], check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1]
    try:
        build_guests([f"kvmimg-hv{number}" for number in range(1, size + 1)], guests)
        counts = os.path.join(work, "counts.json")
        results = {}
        for name, (book, extra) in zip(RUNS, (("migrate", []), ("migrate", []), ("plan", []), ("rollback", []))):
            log(f"{size} host(s): {name}")
            results[name] = playbook(inventory, book, extra + ["-e", "disk_format_progress_interval=0"], pipelining,
                                     counts)
        return results
    finally:
        subprocess.run([str(FLEET), "down", str(size), fleet_dir], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,12")
    parser.add_argument("--guests", type=int, default=8)
    parser.add_argument("--no-pipelining", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="kvm-images-fleet-bench.")
    os.chmod(work, 0o755)
    try:
        by_size = {size: measure(size, args.guests, not args.no_pipelining, work) for size in sizes}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    smallest, largest = sizes[0], sizes[-1]
    print(f"controller CPU, {args.guests} disks per host, pipelining {'off' if args.no_pipelining else 'on'}:")
    for name in RUNS:
        row = ", ".join(f"{size} host(s) {by_size[size][name]['cpu']:.1f} s" for size in sizes)
        per_host = (by_size[largest][name]["cpu"] - by_size[smallest][name]["cpu"]) / (largest - smallest)
        target = {"migrate": " (target <= 1.5 s)", "no-op": " (target <= 0.6 s)"}.get(name, "")
        print(f"{name:9s} {row}; per added host {per_host:.2f} s{target};"
              f" {by_size[largest][name]['tasks']:.0f} tasks and {by_size[largest][name]['remote']:.0f} remote calls"
              " per host")
    print(json.dumps({str(size): runs for size, runs in by_size.items()}))


if __name__ == "__main__":
    main()
