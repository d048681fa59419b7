#!/usr/bin/env python
"""Live copy modes under a busy guest: time to converge per copy mode, and what the guest's writes pay.

The test guest's writer rewrites the start of its disk over and over (1 MiB direct
writes, timed by the guest's own clock), far faster than the copy's bandwidth cap.

- Converge: ``kvm.images.libvirt_disk_copy`` copies a fresh busy guest's disk to
  qcow2 once per copy mode. A background copy cannot catch up and gives up at its
  timeout; a write-blocking copy is ready after about one pass at the cap.
- Cost: on one busy guest, short phases follow each other in turn - no copy, a
  background copy, a write-blocking copy (started with libvirt, aborted at the end of
  the phase) - and the guest's write rate is read per phase. Neighbouring phases
  share the machine's noise; the ratios are medians over the cycles.

    .venv/bin/python bench/live_copy_modes_bench.py [--disk-mib 256] [--writer 32,80] [--bandwidth 8] [--cycles 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import typing as t

import libvirt
from common import ROOT, labctl, log, ratio, run_playbook

DOMAIN = "kvm-images-bench-live-modes"
MODES = ("background", "write_blocking", "auto")
PHASES = ("none", "background", "write_blocking")


def last_pass(serial: str) -> int:
    return labctl("writer-passes", serial)["last"]


def guest_rate(serial: str, after: int, before: int) -> float:
    """MiB/s the guest wrote in the passes strictly between two pass numbers (its own clock, pauses left out)."""
    rate = labctl("writer-passes", serial, "--after", str(after), "--before", str(before))["mib_per_s"]
    if rate is None:
        raise SystemExit(f"no whole writer pass between passes {after} and {before}: lengthen --phase-s")
    return float(rate)


def start_guest(lab: str, guest: str, args: argparse.Namespace) -> tuple[str, str]:
    """A busy guest on a fresh disk full of data, writing; returns its disk and serial log."""
    src, serial = os.path.join(lab, "busy.raw"), os.path.join(lab, "busy.log")
    labctl("remove", DOMAIN)  # what an interrupted run of this bench left
    subprocess.run(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", f"count={args.disk_mib}", "status=none"],
                   check=True)
    labctl("define", "--name", DOMAIN, "--disk", src, "--serial", serial, "--writer", args.writer,
           "--kernel", os.path.join(guest, "vmlinuz"), "--initrd", os.path.join(guest, "initrd.img"), "--start")
    labctl("wait-serial", serial, "--pattern", "KVMIMAGES-WRITER", "--count", "5", "--timeout", "120")
    return src, serial


def converge(lab: str, guest: str, mode: str, args: argparse.Namespace) -> dict[str, t.Any]:
    """One copy through the module in ``mode``: whether it pivoted, after how long, or how far it got."""
    dest = os.path.join(lab, "busy.qcow2")
    start_guest(lab, guest, args)
    try:
        _wall, results = run_playbook([{"kvm.images.libvirt_disk_copy": {
            "name": DOMAIN, "target": "vda", "dest": dest, "format": "qcow2", "bandwidth": args.bandwidth,
            "timeout": args.timeout, "copy_mode": mode}, "ignore_errors": True}])
    finally:
        labctl("remove", DOMAIN)
        if os.path.exists(dest):
            os.unlink(dest)
    result = results[0]
    if not result.get("attempts"):
        raise SystemExit(f"the {mode} copy failed before it started: {result.get('msg')}")
    last = result["attempts"][-1]
    pivoted = not result.get("failed", False)
    return {"mode": mode, "used": last["mode"], "pivoted": pivoted, "percent": last["percent"],
            "seconds": float(result["duration_s"]) if pivoted else float(last["seconds"])}


def copy_phase(dom: libvirt.virDomain, dest: str, capacity: int, phase: str, seconds: float,
               bandwidth: int) -> None:
    """``seconds`` of the guest's life under a copy in ``phase``'s mode (or none), then no job left."""
    if phase == "none":
        time.sleep(seconds)
        return
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", dest, str(capacity)], check=True)
    flags = (libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
             | (libvirt.VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES if phase == "write_blocking" else 0))
    dom.blockCopy("vda", f"<disk type='file'><source file='{dest}'/><driver type='qcow2'/></disk>",
                  {"bandwidth": bandwidth << 20}, flags)
    time.sleep(seconds)
    # As the module does: a write-blocking job is aborted with the guest paused (QEMU 7.2 crashed when one
    # was cancelled with guest writes in flight).
    pause = phase == "write_blocking"
    if pause:
        dom.suspend()
    try:
        dom.blockJobAbort("vda", 0)
        while dom.blockJobInfo("vda", 0):
            time.sleep(0.02)
    finally:
        if pause:
            dom.resume()
    os.unlink(dest)


def reconnect() -> libvirt.virConnect:
    """A new connection once libvirtd answers again (another test on the machine may restart it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return libvirt.open("qemu:///system")
        except libvirt.libvirtError:
            time.sleep(0.5)
    raise SystemExit("libvirtd did not come back within 60 s")


def one_cycle(dom: libvirt.virDomain, lab: str, src: str, serial: str, number: int,
              args: argparse.Namespace) -> dict[str, float]:
    """The guest's write rate (MiB/s) in each phase; a different phase first in each cycle."""
    order = PHASES[number % len(PHASES):] + PHASES[:number % len(PHASES)]
    rates = {}
    for phase in order:
        first = last_pass(serial)
        copy_phase(dom, os.path.join(lab, "cost.qcow2"), os.path.getsize(src), phase, args.phase_s, args.bandwidth)
        rates[phase] = guest_rate(serial, first + 1, last_pass(serial))
    return rates


def guest_cost(lab: str, guest: str, args: argparse.Namespace) -> tuple[list[dict[str, float]], list[str]]:
    """Per cycle, the guest's write rate in each phase; and what cut other cycles short (a guest that died,
    libvirtd restarted by someone else): such a cycle is left out and the next goes on."""
    cycles, lost = [], []
    conn = libvirt.open("qemu:///system")
    try:
        src, serial = start_guest(lab, guest, args)
        for number in range(args.cycles):
            log(f"cost cycle {number + 1}/{args.cycles}")
            try:
                cycles.append(one_cycle(conn.lookupByName(DOMAIN), lab, src, serial, number, args))
                continue
            except libvirt.libvirtError as exc:
                time.sleep(2)
                conn = reconnect()
                dom = conn.lookupByName(DOMAIN)
                alive = dom.isActive()
                lost.append(f"cycle {number + 1}: {exc}" + ("" if alive else " - the guest died (QEMU crashed)"))
            if alive:
                if dom.blockJobInfo("vda", 0):
                    if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                        dom.suspend()
                    dom.blockJobAbort("vda", 0)
                    while dom.blockJobInfo("vda", 0):
                        time.sleep(0.02)
                if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    dom.resume()
            else:
                labctl("remove", DOMAIN)
                src, serial = start_guest(lab, guest, args)
            dest = os.path.join(lab, "cost.qcow2")
            if os.path.exists(dest):
                os.unlink(dest)
    finally:
        conn.close()
        labctl("remove", DOMAIN)
    return cycles, lost


def describe(values: dict[str, t.Any], timeout: int) -> str:
    outcome = (f"pivoted after {values['seconds']:.1f} s" if values["pivoted"]
               else f"gave up after {timeout} s at {values['percent']} %")
    return f"{values['mode']} (ran {values['used']}): {outcome}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disk-mib", type=int, default=256)
    parser.add_argument("--writer", default="32,80", help="the guest's writer: MiB it rewrites[,MiB/s cap]")
    parser.add_argument("--bandwidth", type=int, default=8, help="the copy's cap in MiB/s")
    parser.add_argument("--timeout", type=int, default=60, help="the module's timeout in seconds")
    parser.add_argument("--cycles", type=int, default=6, help="cost cycles (one phase of each kind)")
    parser.add_argument("--phase-s", type=float, default=5.0, help="seconds of each cost phase")
    parser.add_argument("--dir", default="/var/lib/kvm-images-lab/bench-live-modes")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    os.chmod(args.dir, 0o755)
    guest = os.path.join(args.dir, "guest")
    subprocess.run([str(ROOT / "tests" / "guest" / "build.sh"), guest], check=True, capture_output=True)
    try:
        copies = []
        for mode in MODES:
            log(f"converge: {mode}")
            copies.append(converge(args.dir, guest, mode, args))
            log(f"converge {describe(copies[-1], args.timeout)}")
        cycles, lost = guest_cost(args.dir, guest, args)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)

    one_pass = args.disk_mib / args.bandwidth
    hot, _sep, cap = args.writer.partition(",")
    print(f"busy guest rewrites {hot} MiB of its {args.disk_mib} MiB disk"
          f"{f' at up to {cap} MiB/s' if cap else ''}; copy capped at {args.bandwidth} MiB/s"
          f" (one pass {one_pass:.0f} s), timeout {args.timeout} s")
    for values in copies:
        print(f"converge {describe(values, args.timeout)}")
    for rates in cycles:
        print(f"cost cycle: guest writes {rates['none']:.0f} MiB/s with no copy, {rates['background']:.0f}"
              f" during a background copy, {rates['write_blocking']:.0f} during a write-blocking copy")

    for reason in lost:
        print(f"cost {reason} (left out)")

    def latency_ratio(phase: str, other: str) -> str:
        # The guest's writes are 1 MiB each, one at a time: latency is the inverse of the rate.
        return ratio(statistics.median(rates[other] / rates[phase] for rates in cycles), 1.0)

    print(f"RATIO guest write latency, write-blocking copy / background copy (median of {len(cycles)} cycles):"
          f" {latency_ratio('write_blocking', 'background')}")
    print(f"RATIO guest write latency, write-blocking copy / no copy: {latency_ratio('write_blocking', 'none')}")
    print(f"RATIO guest write latency, background copy / no copy: {latency_ratio('background', 'none')}")
    for values in copies:
        if values["pivoted"]:
            print(f"RATIO {values['mode']} copy time / one pass at the cap: {ratio(values['seconds'], one_pass)}")
    sys.exit(0)


if __name__ == "__main__":
    main()
