#!/usr/bin/env python
"""Disks converted at once on one hypervisor: qemu_image_convert with parallel 1, 2 and 4, side by side.

Four raw images (by default 2 GiB each holding 768 MiB of random data) are converted to qcow2 and verified in
one module run per setting, alternating the settings over the rounds, cold caches before each. Only ratios
to parallel=1 are printed as results: the machine is shared and absolute times drift.

    .venv/bin/python bench/parallel_bench.py [--images 4] [--size-gib 2] [--data-mib 768] [--rounds 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from common import drop_caches, log, ratio, run_playbook
from convert_bench import make_source

SETTINGS = (1, 2, 4)


def convert_all(sources: list[str], parallel: int) -> tuple[float, float]:
    """Wall time of the module run, and the sum of the conversions' own times."""
    drop_caches()
    wall, results = run_playbook([{"kvm.images.qemu_image_convert": {
        "format": "qcow2", "parallel": parallel, "images": [{"src": src, "src_format": "raw"} for src in sources]}}])
    images = results[0]["images"]
    failed = [image["msg"] for image in images if image.get("failed")]
    if failed:
        raise SystemExit(f"a conversion failed: {failed[0]}")
    for image in images:
        os.unlink(image["dest"])
    return wall, sum(float(image["duration_s"]) for image in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size-gib", type=int, default=2)
    parser.add_argument("--data-mib", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default="/var/lib/kvm-images-lab/bench-parallel")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    try:
        sources = [os.path.join(args.dir, f"disk{index}.raw") for index in range(args.images)]
        log(f"writing {args.images} raw images of {args.size_gib} GiB with {args.data_mib} MiB of data each")
        for source in sources:
            make_source(source, args.size_gib << 30, args.data_mib << 20)
        walls: dict[int, list[float]] = {setting: [] for setting in SETTINGS}
        for round_number in range(args.rounds):
            for setting in SETTINGS if round_number % 2 == 0 else reversed(SETTINGS):
                log(f"round {round_number + 1}/{args.rounds}: parallel={setting}")
                wall, _own = convert_all(sources, setting)
                walls[setting].append(wall)
        best = {setting: min(values) for setting, values in walls.items()}
        print(f"{args.images} images x {args.data_mib} MiB of data, verified, cold caches, {os.cpu_count()} CPUs")
        for setting in SETTINGS:
            print(f"parallel={setting}: best {best[setting]:6.2f} s  median {statistics.median(walls[setting]):6.2f} s"
                  f"  RATIO to parallel=1: {ratio(best[setting], best[1])}")
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
