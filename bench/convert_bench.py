#!/usr/bin/env python
"""Offline conversion: the module against bare qemu-img and the disk's own limits, side by side.

An 8 GiB raw image holding 2 GiB of data (by default) is converted to qcow2 by
  - bare ``qemu-img convert`` with default flags, then ``-W -m 16``, each followed by a sync of the output,
    which the module also does before it renames;
  - ``kvm.images.qemu_image_convert`` through ansible-playbook, with verify off and on, and with verify off and
    the confinement disabled (what confining qemu-img costs a conversion);
alternating, several rounds, on the same file system, next to fio's sequential read and write limits.
Then the confinement's own cost per qemu-img call: ``qemu-img info`` of a small image bare, and through the
launcher confined and unconfined, many times each.
Only ratios are printed as results: the machine is shared and absolute times drift.

    .venv/bin/python bench/convert_bench.py [--size-gib 8] [--data-gib 2] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from common import (
    collections_path,
    drop_caches,
    fio_bandwidth,
    fio_copy_bandwidth,
    log,
    output,
    ratio,
    run_playbook,
    timed,
)

CHUNK = 4 << 20


def make_source(path: str, size: int, data: int) -> None:
    """Random data spread over the image in 4 MiB runs, holes between them."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        runs = data // CHUNK
        stride = size // runs
        for index in range(runs):
            handle.seek(index * stride)
            handle.write(os.urandom(CHUNK))
        handle.flush()
        os.fsync(handle.fileno())


def bare(src: str, dest: str, extra: list[str]) -> float:
    drop_caches()
    seconds = timed(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *extra, src, dest])
    sync_seconds = timed(["sync", dest])
    os.unlink(dest)
    return seconds + sync_seconds


def module(src: str, dest: str, verify: bool, confinement: str = "landlock") -> tuple[float, float]:
    drop_caches()
    wall, results = run_playbook([{"kvm.images.qemu_image_convert": {
        "src": src, "src_format": "raw", "dest": dest, "format": "qcow2", "verify": verify,
        "confinement": confinement}}])
    os.unlink(dest)
    return wall, float(results[0]["duration_s"])


def ansible_start(src: str) -> float:
    """Wall time of the same playbook around a module that does nearly nothing: Ansible's own start-up."""
    drop_caches()
    wall, _results = run_playbook([{"ansible.builtin.stat": {"path": src, "get_checksum": False}}])
    return wall


def launcher_cost(directory: str, calls: int = 40) -> dict[str, float]:
    """Seconds per ``qemu-img info`` of a small image: bare, and through the launcher with and without
    confinement (the system's Python, as on a hypervisor), alternating."""
    image = os.path.join(directory, "small.qcow2")
    output(["qemu-img", "create", "-q", "-f", "qcow2", image, "64M"])
    info = ["/usr/bin/qemu-img", "info", "--output=json", "-f", "qcow2", image]
    root = collections_path()
    launcher = ["/usr/bin/python3", "-s", "-S", "-m", "ansible_collections.kvm.images.plugins.module_utils.confinement"]
    env = dict(os.environ, PYTHONPATH=root)
    commands = {
        "bare": info,
        "launcher, confined": launcher + ["--read", image, "--address-space", str(1 << 30), "--cpu-seconds", "30",
                                          "--"] + info,
        "launcher, unconfined": launcher + ["--unconfined", "--address-space", str(1 << 30), "--cpu-seconds", "30",
                                            "--"] + info,
    }
    spent = dict.fromkeys(commands, 0.0)
    for _call in range(calls):
        for name, argv in commands.items():
            spent[name] += timed(argv, env=env)
    os.unlink(image)
    return {name: seconds / calls for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/lib/kvm-images-lab/bench")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    src, dest = os.path.join(args.dir, "source.raw"), os.path.join(args.dir, "dest.qcow2")
    data = args.data_gib << 30
    try:
        log(f"writing {args.data_gib} GiB of data into a {args.size_gib} GiB raw image")
        make_source(src, args.size_gib << 30, data)
        read_bw, write_bw = fio_bandwidth(args.dir, "read"), fio_bandwidth(args.dir, "write")
        copy_bw = fio_copy_bandwidth(args.dir)
        times: dict[str, list[float]] = {name: [] for name in
                                         ("bare default", "bare -W -m 16", "module verify=off (wall)",
                                          "module verify=off (convert)", "module verify=on (wall)",
                                          "module verify=on (convert)", "module verify=off unconfined (convert)",
                                          "ansible start-up (stat)")}
        for round_number in range(args.rounds):
            log(f"round {round_number + 1}/{args.rounds}")
            times["bare default"].append(bare(src, dest, []))
            times["bare -W -m 16"].append(bare(src, dest, ["-W", "-m", "16"]))
            wall, own = module(src, dest, verify=False)
            times["module verify=off (wall)"].append(wall)
            times["module verify=off (convert)"].append(own)
            wall, own = module(src, dest, verify=True)
            times["module verify=on (wall)"].append(wall)
            times["module verify=on (convert)"].append(own)
            _wall, own = module(src, dest, verify=False, confinement="disabled")
            times["module verify=off unconfined (convert)"].append(own)
            times["ansible start-up (stat)"].append(ansible_start(src))
        best = {name: min(values) for name, values in times.items()}
        median = {name: statistics.median(values) for name, values in times.items()}
        best_bare = min(best["bare default"], best["bare -W -m 16"])
        disk_limit = data / min(read_bw, write_bw)
        print(f"fio sequential: read {read_bw / 2**30:.2f} GiB/s, write {write_bw / 2**30:.2f} GiB/s;"
              f" disk limit for {args.data_gib} GiB of data: {disk_limit:.2f} s")
        for name in times:
            print(f"{name:32s} best {best[name]:6.2f} s  median {median[name]:6.2f} s"
                  f"  vs best bare {ratio(best[name], best_bare)}  vs disk limit {ratio(best[name], disk_limit)}")
        print(f"RATIO module(verify=off, in-module time) / best bare qemu-img: "
              f"{ratio(best['module verify=off (convert)'], best_bare)} (target <= 1.10x)")
        print(f"RATIO module(verify=off, ansible-playbook wall time) / best bare qemu-img: "
              f"{ratio(best['module verify=off (wall)'], best_bare)}")
        # Paired by round: each round's start-up against the same round's module run, cold caches for both.
        beyond = [wall - start
                  for wall, start in zip(times["module verify=off (wall)"], times["ansible start-up (stat)"])]
        bare_median = statistics.median(times["bare default"])
        print(f"RATIO module(verify=off, wall time beyond ansible's start-up, median of rounds) / median bare qemu-img,"
              f" cold caches: {ratio(statistics.median(beyond), bare_median)} (target <= 1.10x;"
              f" {statistics.median(beyond):.2f} s vs {bare_median:.2f} s;"
              f" per round {', '.join(f'{b:.2f}' for b in beyond)})")
        print(f"RATIO module(verify=off, in-module time) / disk limit: "
              f"{ratio(best['module verify=off (convert)'], disk_limit)} (target <= 1.25x)")
        # The disk limit above assumes reads and writes overlap for free; on one disk they share it.
        copy_limit = data / copy_bw
        print(f"fio reading and writing at once: {copy_bw / 2**30:.2f} GiB/s each; copy limit {copy_limit:.2f} s")
        print(f"RATIO best bare qemu-img / copy limit: {ratio(best_bare, copy_limit)}")
        print(f"RATIO module(verify=off, in-module time) / copy limit: "
              f"{ratio(best['module verify=off (convert)'], copy_limit)}")
        verify_cost = best["module verify=on (convert)"] - best["module verify=off (convert)"]
        one_read_each = data / read_bw * 2
        print(f"RATIO verification cost / one read of each image: {ratio(verify_cost, one_read_each)}"
              f" (target <= 1.00x; {verify_cost:.2f} s vs {one_read_each:.2f} s)")
        print(f"RATIO module(verify=off, in-module time) confined / unconfined: "
              f"{ratio(best['module verify=off (convert)'], best['module verify=off unconfined (convert)'])}")
        per_call = launcher_cost(args.dir)
        for name, seconds in per_call.items():
            print(f"qemu-img info, {name:22s} {seconds * 1000:7.1f} ms per call")
        print(f"RATIO qemu-img info through the confining launcher / bare: "
              f"{ratio(per_call['launcher, confined'], per_call['bare'])}"
              f" (+{(per_call['launcher, confined'] - per_call['bare']) * 1000:.1f} ms per call)")
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
