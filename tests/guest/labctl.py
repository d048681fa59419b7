#!/usr/bin/env python
"""Drive test guests on the real libvirtd for integration tests and benchmarks.

Every subcommand prints one JSON object on stdout, so Ansible tasks can use
``from_json`` on the result. Examples::

    labctl.py define --name t1 --disk /lab/t1.raw,format=raw --serial /lab/t1.log --start
    labctl.py wait-serial /lab/t1.log --pattern 'KVMIMAGES-CHECKSUM vda (\\w+)' --timeout 60
    labctl.py shutdown t1 --timeout 10
    labctl.py heartbeat-gaps /lab/t1.log
    labctl.py remove t1

A busy guest (``define --writer 8,32``) rewrites the start of its disk over and over;
``writer-passes`` reads its progress from the serial log, ``writer-stamp`` the pass
whose stamp an image holds (the image the guest wrote that pass to).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import typing as t
from xml.sax.saxutils import escape, quoteattr

import libvirt

DEFAULT_URI = "qemu:///system"
LAB_DIR = os.environ.get("KVM_IMAGES_LAB", "/var/lib/kvm-images-lab")
HEARTBEAT = re.compile(r"^KVMIMAGES-HEARTBEAT (\d+) ([0-9.]+)\s*$")
CHECKSUM = re.compile(r"^KVMIMAGES-CHECKSUM (\w+) ([0-9a-f]{64})\s*$")
WRITER = re.compile(r"^KVMIMAGES-WRITER (\d+) (\d+) ([0-9.]+) ([0-9.]+)\s*$")
STAMP = re.compile(rb"^KVMIMAGES-PASS (\d+)\n")


def _ignore_libvirt_errors(_ctx: object, _err: object) -> None:
    """Keep libvirt from printing errors we handle ourselves to stderr."""


libvirt.registerErrorHandler(_ignore_libvirt_errors, None)


def parse_disk_spec(spec: str) -> dict[str, str]:
    """``PATH[,format=raw][,target=vda][,bus=virtio][,device=disk][,readonly][,shareable]``."""
    path, *options = spec.split(",")
    disk = {"path": path, "format": "raw", "target": "", "bus": "virtio", "device": "disk"}
    for option in options:
        key, sep, value = option.partition("=")
        disk[key] = value if sep else "yes"
    return disk


def disk_xml(disk: dict[str, str], index: int) -> str:
    target = disk["target"] or ("vd" if disk["bus"] == "virtio" else "sd") + "abcdefgh"[index]
    extra = ""
    if disk.get("readonly"):
        extra += "<readonly/>"
    if disk.get("shareable"):
        extra += "<shareable/>"
    return (
        f"<disk type='file' device={quoteattr(disk['device'])}>"
        f"<driver name='qemu' type={quoteattr(disk['format'])}/>"
        f"<source file={quoteattr(disk['path'])}/>"
        f"<target dev={quoteattr(target)} bus={quoteattr(disk['bus'])}/>{extra}</disk>"
    )


def domain_xml(name: str, disks: list[dict[str, str]], serial: str, memory_mib: int,
               kernel: str, initrd: str, cmdline_extra: str = "") -> str:
    devices = "".join(disk_xml(disk, index) for index, disk in enumerate(disks))
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>console=ttyS0 quiet no_timer_check {escape(cmdline_extra)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {devices}
    <serial type='file'><source path={quoteattr(serial)}/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


def connect(uri: str) -> libvirt.virConnect:
    return libvirt.open(uri)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def cmd_define(args: argparse.Namespace) -> dict[str, t.Any]:
    disks = [parse_disk_spec(spec) for spec in args.disk]
    xml = domain_xml(args.name, disks, args.serial, args.memory, args.kernel, args.initrd,
                     guest_switches(args))
    with connect(args.uri) as conn:
        if args.transient:
            dom = conn.createXML(xml, 0)
        else:
            dom = conn.defineXML(xml)
            if args.start:
                truncate_serial(args.serial)
                dom.create()
        return {"name": args.name, "uuid": dom.UUIDString(), "active": bool(dom.isActive())}


def guest_switches(args: argparse.Namespace) -> str:
    """Kernel command-line words that /init reads (tests/guest/init.sh)."""
    words = []
    if args.ignore_acpi:
        words.append("kvmimages.noacpi")
    if args.writer:
        words.append(f"kvmimages.writer={args.writer}")
    return " ".join(words)


def truncate_serial(path: str) -> None:
    """A fresh boot should not find the previous boot's lines."""
    if os.path.exists(path):
        with open(path, "r+b") as handle:
            handle.truncate(0)


def cmd_start(args: argparse.Namespace) -> dict[str, t.Any]:
    with connect(args.uri) as conn:
        dom = conn.lookupByName(args.name)
        if args.serial:
            truncate_serial(args.serial)
        dom.create()
        return {"name": args.name, "id": dom.ID()}


def cmd_shutdown(args: argparse.Namespace) -> dict[str, t.Any]:
    """Graceful ACPI shutdown; reports how long the guest took to turn off."""
    with connect(args.uri) as conn:
        dom = conn.lookupByName(args.name)
        started = time.monotonic()
        if dom.isActive():
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        while dom.isActive():
            if time.monotonic() - started > args.timeout:
                return {"name": args.name, "off": False, "seconds": round(time.monotonic() - started, 2)}
            time.sleep(0.1)
        return {"name": args.name, "off": True, "seconds": round(time.monotonic() - started, 2)}


def cmd_remove(args: argparse.Namespace) -> dict[str, t.Any]:
    """Destroy and undefine, whatever state the domain is in; absent is fine."""
    removed = []
    with connect(args.uri) as conn:
        for name in args.name:
            dom = lookup(conn, name)
            if dom is None:
                continue
            persistent = dom.isPersistent()
            if dom.isActive():
                dom.destroy()
            if persistent:
                flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                         | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                         | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                dom.undefineFlags(flags)
            removed.append(name)
    return {"removed": removed}


def cmd_state(args: argparse.Namespace) -> dict[str, t.Any]:
    with connect(args.uri) as conn:
        dom = lookup(conn, args.name)
        if dom is None:
            return {"name": args.name, "defined": False}
        state, _reason = dom.state()
        return {"name": args.name, "defined": True, "active": bool(dom.isActive()),
                "id": dom.ID() if dom.isActive() else -1, "state": state,
                "persistent": bool(dom.isPersistent())}


def read_lines(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


def cmd_wait_serial(args: argparse.Namespace) -> dict[str, t.Any]:
    pattern = re.compile(args.pattern)
    deadline = time.monotonic() + args.timeout
    while True:
        matches = [m for m in map(pattern.search, read_lines(args.path)) if m]
        if len(matches) >= args.count:
            found = matches[args.count - 1]
            return {"line": found.group(0), "groups": list(found.groups())}
        if time.monotonic() > deadline:
            raise SystemExit(f"no {args.count} line(s) matching {args.pattern!r} in {args.path} "
                             f"within {args.timeout} s; last lines: {read_lines(args.path)[-5:]}")
        time.sleep(0.1)


def cmd_checksums(args: argparse.Namespace) -> dict[str, t.Any]:
    sums = {}
    for line in read_lines(args.path):
        match = CHECKSUM.match(line)
        if match:
            sums[match.group(1)] = match.group(2)
    return {"checksums": sums}


def heartbeat_gaps(lines: t.Iterable[str]) -> dict[str, t.Any]:
    """Largest gap between consecutive guest heartbeats, by the guest's own clock."""
    beats = [(int(m.group(1)), float(m.group(2))) for m in map(HEARTBEAT.match, lines) if m]
    gaps = [later[1] - earlier[1] for earlier, later in itertools.pairwise(beats)]
    return {"beats": len(beats), "max_gap_s": round(max(gaps), 3) if gaps else None}


def cmd_heartbeat_gaps(args: argparse.Namespace) -> dict[str, t.Any]:
    return heartbeat_gaps(read_lines(args.path))


def cmd_watch(args: argparse.Namespace) -> dict[str, t.Any]:
    """Watch a serial log from the host and report the largest gap between new
    heartbeat lines by the host's monotonic clock (a paused guest's own clock
    stops too, so only the host's view shows a pause)."""
    deadline = time.monotonic() + args.duration
    seen = len(read_lines(args.path))
    last_beat = time.monotonic()
    max_gap = 0.0
    beats = 0
    while time.monotonic() < deadline and not os.path.exists(args.stop_file or "\0"):
        lines = read_lines(args.path)
        fresh = [line for line in lines[seen:] if HEARTBEAT.match(line)]
        seen = len(lines)
        now = time.monotonic()
        if fresh:
            max_gap = max(max_gap, now - last_beat)
            last_beat = now
            beats += len(fresh)
        time.sleep(0.02)
    max_gap = max(max_gap, time.monotonic() - last_beat)
    return {"beats": beats, "max_gap_s": round(max_gap, 3)}


def writer_passes(lines: t.Iterable[str], after: int = 0, before: int | None = None) -> dict[str, t.Any]:
    """The busy guest's passes numbered between ``after`` and ``before`` (both excluded): how many, the last,
    and their write rate by the guest's clock (pauses between passes left out)."""
    passes = [(int(m.group(1)), int(m.group(2)), float(m.group(4)) - float(m.group(3)))
              for m in map(WRITER.match, lines) if m]
    chosen = [p for p in passes if p[0] > after and (before is None or p[0] < before)]
    mib = sum(p[1] for p in chosen)
    seconds = sum(p[2] for p in chosen)
    return {"passes": len(chosen), "last": passes[-1][0] if passes else 0, "write_mib": mib,
            "write_s": round(seconds, 2), "mib_per_s": round(mib / seconds, 1) if seconds > 0 else None}


def cmd_writer_passes(args: argparse.Namespace) -> dict[str, t.Any]:
    return writer_passes(read_lines(args.path), args.after, args.before)


def cmd_writer_stamp(args: argparse.Namespace) -> dict[str, t.Any]:
    """The pass number the busy guest stamped last into an image (None: no stamp), read by qemu-img with
    the image's format given; the image must not be in use."""
    with tempfile.TemporaryDirectory() as scratch:
        sector = os.path.join(scratch, "sector")
        subprocess.run(["qemu-img", "dd", "-f", args.format, "-O", "raw", "bs=512", "count=1", f"if={args.image}",
                        f"of={sector}"], check=True, capture_output=True)
        with open(sector, "rb") as handle:
            match = STAMP.match(handle.read())
    return {"image": args.image, "pass": int(match.group(1)) if match else None}


def xml_leaves(xml: str) -> dict[str, str]:
    """Every attribute and text of a document, keyed by a path with positions."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    leaves = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        path = root.getroottree().getpath(element)
        for name, value in element.attrib.items():
            leaves[f"{path}/@{name}"] = value
        if element.text and element.text.strip():
            leaves[f"{path}/text()"] = element.text.strip()
    return leaves


def cmd_xml_changes(args: argparse.Namespace) -> dict[str, t.Any]:
    """What differs between two definitions: [path, before, after] for each changed leaf."""
    with open(args.before, encoding="utf-8") as before, open(args.after, encoding="utf-8") as after:
        old, new = xml_leaves(before.read()), xml_leaves(after.read())
    changes = [[path, old.get(path), new.get(path)] for path in sorted(set(old) | set(new))
               if old.get(path) != new.get(path)]
    return {"changes": changes}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=DEFAULT_URI)
    sub = parser.add_subparsers(dest="command", required=True)

    define = sub.add_parser("define", help="define (and optionally start) a test guest")
    define.add_argument("--name", required=True)
    define.add_argument("--disk", action="append", default=[],
                        help="PATH[,format=raw][,target=vda][,bus=virtio][,device=disk]")
    define.add_argument("--serial", required=True)
    define.add_argument("--memory", type=int, default=160)
    define.add_argument("--kernel", default=os.path.join(LAB_DIR, "guest", "vmlinuz"))
    define.add_argument("--initrd", default=os.path.join(LAB_DIR, "guest", "initrd.img"))
    define.add_argument("--start", action="store_true")
    define.add_argument("--ignore-acpi", action="store_true", help="a guest that ignores ACPI shutdown")
    define.add_argument("--transient", action="store_true", help="create a running transient domain")
    define.add_argument("--writer", metavar="MIB[,RATE]",
                        help="a busy guest: rewrite the first MIB MiB of vda (at least 2) over and over, at most"
                             " RATE MiB/s on average when given")
    define.set_defaults(func=cmd_define)

    start = sub.add_parser("start")
    start.add_argument("name")
    start.add_argument("--serial", help="truncate this serial log first")
    start.set_defaults(func=cmd_start)

    shutdown = sub.add_parser("shutdown", help="ACPI shutdown, wait until off")
    shutdown.add_argument("name")
    shutdown.add_argument("--timeout", type=float, default=10)
    shutdown.set_defaults(func=cmd_shutdown)

    remove = sub.add_parser("remove", help="destroy and undefine (absent is fine)")
    remove.add_argument("name", nargs="+")
    remove.set_defaults(func=cmd_remove)

    state = sub.add_parser("state")
    state.add_argument("name")
    state.set_defaults(func=cmd_state)

    wait = sub.add_parser("wait-serial", help="wait for a line matching a pattern")
    wait.add_argument("path")
    wait.add_argument("--pattern", required=True)
    wait.add_argument("--count", type=int, default=1)
    wait.add_argument("--timeout", type=float, default=60)
    wait.set_defaults(func=cmd_wait_serial)

    checksums = sub.add_parser("checksums", help="disk checksums the guest printed")
    checksums.add_argument("path")
    checksums.set_defaults(func=cmd_checksums)

    gaps = sub.add_parser("heartbeat-gaps", help="largest gap by the guest's clock")
    gaps.add_argument("path")
    gaps.set_defaults(func=cmd_heartbeat_gaps)

    watch = sub.add_parser("watch", help="largest heartbeat gap seen from the host")
    watch.add_argument("path")
    watch.add_argument("--duration", type=float, default=60)
    watch.add_argument("--stop-file", help="stop early once this file exists")
    watch.set_defaults(func=cmd_watch)

    passes = sub.add_parser("writer-passes", help="the busy guest's passes, from its serial log")
    passes.add_argument("path")
    passes.add_argument("--after", type=int, default=0, help="only passes numbered above this")
    passes.add_argument("--before", type=int, help="only passes numbered below this")
    passes.set_defaults(func=cmd_writer_passes)

    stamp = sub.add_parser("writer-stamp", help="the last pass the busy guest wrote into an image")
    stamp.add_argument("image")
    stamp.add_argument("--format", required=True, choices=["raw", "qcow2"])
    stamp.set_defaults(func=cmd_writer_stamp)

    changes = sub.add_parser("xml-changes", help="leaves that differ between two XML files")
    changes.add_argument("before")
    changes.add_argument("after")
    changes.set_defaults(func=cmd_xml_changes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except libvirt.libvirtError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
