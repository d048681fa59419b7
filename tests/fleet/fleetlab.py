#!/usr/bin/env python
"""The fleet test's eyes on one hypervisor, in one call per step.

Runs with the hypervisor's own python3 (Debian 12 and 13) and the standard
library only. Every subcommand prints one JSON object::

    fleetlab.py disks DIR --mib 16 web-a web-b     # DIR/NAME.raw full of random data
    fleetlab.py state --uri qemu:///session web db

``state`` reads each domain's persistent definition from ``virsh dumpxml
--inactive``, each disk's format from ``qemu-img info`` and, for a qcow2 image
beside its raw original (NAME.qcow2 and NAME.raw), whether both hold the same
data (``qemu-img compare``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import typing as t
import xml.etree.ElementTree as ET


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})


def output(argv: list[str]) -> str:
    done = run(argv)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def cmd_disks(args: argparse.Namespace) -> dict[str, t.Any]:
    made = []
    for name in args.name:
        path = os.path.join(args.dir, f"{name}.raw")
        if os.path.exists(path):
            continue
        with open(path + ".tmp", "wb") as handle:
            for _mib in range(args.mib):
                handle.write(os.urandom(1 << 20))
        os.replace(path + ".tmp", path)
        made.append(path)
    return {"changed": bool(made), "made": made}


def image_format(path: str) -> str | None:
    # -U: a running guest holds the image's lock; this reads metadata only.
    done = run(["qemu-img", "info", "-U", "--output=json", path])
    return json.loads(done.stdout)["format"] if done.returncode == 0 else None


def same_as_original(path: str) -> bool | None:
    stem, ext = os.path.splitext(path)
    if ext != ".qcow2" or not os.path.exists(stem + ".raw"):
        return None
    done = run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", stem + ".raw", path])
    return done.returncode == 0


def domain_state(uri: str, name: str) -> dict[str, t.Any]:
    virsh = ["virsh", "-c", uri]
    domid = output(virsh + ["domid", name]).strip()
    root = ET.fromstring(output(virsh + ["dumpxml", "--inactive", name]))
    disks = []
    for disk in root.findall("devices/disk"):
        driver, source, target = disk.find("driver"), disk.find("source"), disk.find("target")
        path = source.get("file") if source is not None else None
        disks.append({
            "target": target.get("dev") if target is not None else None,
            "device": disk.get("device"),
            "driver": driver.get("type") if driver is not None else None,
            "source": path,
            "format": image_format(path) if path and disk.get("device") == "disk" else None,
            "same_as_original": same_as_original(path) if path else None,
        })
    return {"active": domid.isdigit(), "id": int(domid) if domid.isdigit() else -1, "disks": disks}


def cmd_state(args: argparse.Namespace) -> dict[str, t.Any]:
    return {"domains": {name: domain_state(args.uri, name) for name in args.name}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    disks = sub.add_parser("disks", help="raw images full of random data (kept when present)")
    disks.add_argument("dir")
    disks.add_argument("name", nargs="+")
    disks.add_argument("--mib", type=int, default=16)
    disks.set_defaults(func=cmd_disks)
    state = sub.add_parser("state", help="domains' state, persistent disks and image formats")
    state.add_argument("name", nargs="+")
    state.add_argument("--uri", default="qemu:///system")
    state.set_defaults(func=cmd_state)
    args = parser.parse_args(argv)
    print(json.dumps(args.func(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
