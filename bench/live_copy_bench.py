#!/usr/bin/env python
"""Live copy: the guest-visible gap and the copy throughput, against offline qemu-img convert of the same image.

A test guest runs on a raw disk full of data while ``kvm.images.libvirt_disk_copy``
moves it to qcow2; the guest's heartbeat (every 0.25 s on its serial log) is
watched from the host. The same image, copied aside, is converted offline by
bare qemu-img for the throughput ratio.

    .venv/bin/python bench/live_copy_bench.py [--data-mib 512] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from common import LABCTL, drop_caches, labctl, log, ratio, run_playbook, timed

DOMAIN = "kvm-images-bench-live"


def one_round(lab: str, data_mib: int) -> dict[str, float]:
    src, dest = os.path.join(lab, "live.raw"), os.path.join(lab, "live.qcow2")
    serial, stop = os.path.join(lab, "serial.log"), os.path.join(lab, "stop")
    for path in (dest, stop):
        if os.path.exists(path):
            os.unlink(path)
    subprocess.run(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", f"count={data_mib}", "status=none"], check=True)
    shutil.copyfile(src, os.path.join(lab, "offline.raw"))
    drop_caches()
    offline = timed(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", os.path.join(lab, "offline.raw"),
                     os.path.join(lab, "offline.qcow2")])
    sync_time = timed(["sync"])
    labctl("define", "--name", DOMAIN, "--disk", src, "--serial", serial, "--start")
    try:
        labctl("wait-serial", serial, "--pattern", "KVMIMAGES-CHECKSUM vda", "--timeout", "120")
        watcher = subprocess.Popen(LABCTL + ["watch", serial, "--duration", "600", "--stop-file", stop],
                                   stdout=subprocess.PIPE, text=True)
        wall, results = run_playbook([{"kvm.images.libvirt_disk_copy": {
            "name": DOMAIN, "target": "vda", "dest": dest, "format": "qcow2"}}])
        subprocess.run(["sleep", "1"], check=True)
        open(stop, "w", encoding="utf-8").close()
        watched = json.loads(watcher.communicate(timeout=30)[0])
    finally:
        labctl("remove", DOMAIN)
        for name in ("offline.raw", "offline.qcow2"):
            os.unlink(os.path.join(lab, name))
    result = results[0]
    return {"offline_s": offline + sync_time, "live_s": float(result["duration_s"]), "wall_s": wall,
            "pause_s": float(result["max_pause_s"]), "gap_s": float(watched["max_gap_s"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default="/var/lib/kvm-images-lab/bench-live")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    os.chmod(args.dir, 0o755)
    try:
        rounds = []
        for number in range(args.rounds):
            log(f"round {number + 1}/{args.rounds}")
            rounds.append(one_round(args.dir, args.data_mib))
        for index, values in enumerate(rounds, 1):
            print(f"round {index}: offline qemu-img {values['offline_s']:.2f} s, live copy {values['live_s']:.2f} s"
                  f" (ansible-playbook {values['wall_s']:.2f} s), pivot pause {values['pause_s']:.3f} s,"
                  f" largest heartbeat gap seen from the host {values['gap_s']:.3f} s")
        best_live = min(r["live_s"] for r in rounds)
        best_offline = min(r["offline_s"] for r in rounds)
        print(f"RATIO live copy time / offline qemu-img convert of the same image: {ratio(best_live, best_offline)}")
        print(f"RATIO largest guest heartbeat gap / 1 s target: {ratio(max(r['gap_s'] for r in rounds), 1.0)}")
        print(f"live throughput {args.data_mib / best_live:.0f} MiB/s,"
              f" offline {args.data_mib / best_offline:.0f} MiB/s")
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
