# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Live conversion of a running domain's disk: block copy, wait for READY, pivot (private to kvm.images)."""

from __future__ import annotations

import os
import time
import typing as t
from xml.sax.saxutils import quoteattr

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.atomic_file import claim_marker, live_copy_marker, marker_holder
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.journal import record_before, switch_entry
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import (
    LibvirtError,
    inactive_xml,
    libvirt_call,
    live_xml,
)

# libvirt constants, named here so the logic can be tested without libvirt.
BLOCK_COPY_REUSE_EXT = 2
BLOCK_COPY_TRANSIENT_JOB = 4
BLOCK_JOB_ABORT_PIVOT = 2
BLOCK_COPY_BANDWIDTH = "bandwidth"


def dest_xml(dest: str, fmt: str) -> str:
    return f"<disk type='file'><source file={quoteattr(dest)}/><driver type={quoteattr(fmt)}/></disk>"


def live_disk(dom: t.Any, target: str) -> dict[str, t.Any]:
    root = domain_xml.parse(live_xml(dom))
    disk = domain_xml.find_disk(root, target=target)
    facts = domain_xml.disk_facts(disk)
    mirror = disk.find("mirror")
    facts["mirror_ready"] = mirror is not None and mirror.get("ready") == "yes"
    facts["mirror"] = mirror is not None
    facts["mirror_source"] = mirror_source(mirror)
    return facts


def mirror_source(mirror: t.Any) -> str | None:
    """The file a block copy writes to: <source file=…/> in current libvirt, the file attribute in older."""
    if mirror is None:
        return None
    source = mirror.find("source")
    return source.get("file") if source is not None and source.get("file") else mirror.get("file")


def is_leftover_job(disk: dict[str, t.Any], dest: str) -> bool:
    """A copy job into ``dest`` that this collection started (its marker is there) and whose run died."""
    return disk["mirror"] and disk["mirror_source"] == dest and os.path.exists(live_copy_marker(dest))


def persistent_disk(dom: t.Any, target: str) -> dict[str, t.Any]:
    return domain_xml.disk_facts(domain_xml.find_disk(domain_xml.parse(inactive_xml(dom)), target=target))


def refusal(disk: dict[str, t.Any]) -> str | None:
    if disk["device"] != "disk":
        return f"a {disk['device']} is not converted"
    if disk["type"] != "file":
        return f"a {disk['type']} disk is not converted (only file disks)"
    if disk["shareable"]:
        return "a shareable disk is not converted"
    if disk["readonly"]:
        return "a read-only disk is not converted"
    return None


class BlockCopy:
    """One copy job. ``dom`` is a libvirt virDomain (the seam tests fake)."""

    def __init__(self, dom: t.Any, target: str, dest: str, fmt: str, *, timeout: float,
                 bandwidth_mib: int | None = None, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep, poll_interval: float = 0.2,
                 reconnect: t.Callable[[], t.Any] | None = None, reconnect_timeout: float = 60) -> None:
        self.dom = dom
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.name = dom.name()
        self.target = target
        self.dest = dest
        self.fmt = fmt
        self.timeout = timeout
        self.bandwidth_mib = bandwidth_mib
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.bytes_copied = 0

    def where(self) -> str:
        return f"domain {self.name}, disk {self.target}, {self.dest}"

    def job(self) -> dict[str, int]:
        return self.follow(lambda: self.dom.blockJobInfo(self.target, 0) or {})

    def follow(self, read: t.Callable[[], t.Any]) -> t.Any:
        """Read the job's state; when libvirtd went away (restarted), reconnect and read again.

        The copy runs inside QEMU and outlives a libvirtd restart; libvirt
        takes the job up again once it is back. A guest that stopped (destroyed,
        crashed) took its job with it: that is a failure at once, not a wait.
        """
        try:
            return read()
        except LibvirtError:
            self.fail_if_stopped()
            if self.reconnect is None:
                raise
        deadline = self.clock() + self.reconnect_timeout
        while True:
            try:
                self.dom = self.reconnect()
                return read()
            except (LibvirtError, KvmImagesError):
                self.fail_if_stopped()
                if self.clock() > deadline:
                    raise KvmImagesError(f"lost libvirt during the block copy and could not reconnect within"
                                         f" {self.reconnect_timeout:g} s ({self.where()})") from None
                self.sleep(1.0)

    def fail_if_stopped(self) -> None:
        try:
            running = self.dom.isActive()
        except LibvirtError:
            # libvirtd itself does not answer: reconnecting will tell.
            return
        if not running:
            raise KvmImagesError(f"the guest stopped during the block copy ({self.where()}); its job went with it"
                                 " and its definition still names its original disk", domain=self.name)

    def start(self, persistent: bool) -> None:
        flags = BLOCK_COPY_REUSE_EXT | (BLOCK_COPY_TRANSIENT_JOB if persistent else 0)
        params = {}
        if self.bandwidth_mib:
            params[BLOCK_COPY_BANDWIDTH] = self.bandwidth_mib << 20
        self.dom.blockCopy(self.target, dest_xml(self.dest, self.fmt), params, flags)

    def wait_ready(self) -> None:
        """Until the mirror is READY; a vanished job or the timeout is a failure."""
        started = self.clock()
        # Small disks are ready in milliseconds: poll fast first, then back off to the interval.
        pause = min(0.02, self.poll_interval)
        while True:
            info = self.job()
            if not info:
                raise KvmImagesError(f"the block copy stopped before it was ready ({self.where()});"
                                     " the guest stays on its original disk")
            self.bytes_copied = int(info.get("end", 0))
            if info.get("end", 0) and info.get("cur") == info.get("end") and \
                    self.follow(lambda: live_disk(self.dom, self.target))["mirror_ready"]:
                return
            if self.clock() - started > self.timeout:
                raise KvmImagesError(f"the block copy was not ready within {self.timeout:g} s ({self.where()});"
                                     " it was aborted and the guest stays on its original disk")
            self.sleep(pause)
            pause = min(pause * 2, self.poll_interval)

    def pivot(self) -> float:
        """Switch the guest to the copy; returns how long the switch took (the guest's pause)."""
        started = self.clock()
        self.dom.blockJobAbort(self.target, BLOCK_JOB_ABORT_PIVOT)
        pause = self.clock() - started
        deadline = self.clock() + 30
        while self.job() and self.clock() < deadline:
            self.sleep(0.05)
        return pause

    def finish_without_pivot(self) -> None:
        """Keep the copy as it is at READY and leave the guest on its disk."""
        self.dom.blockJobAbort(self.target, 0)

    def abort_leftover(self) -> None:
        """End a copy job a killed earlier run left behind; the guest stays on its source."""
        self.dom.blockJobAbort(self.target, 0)
        deadline = self.clock() + 30
        while self.job():
            if self.clock() > deadline:
                raise KvmImagesError(f"the earlier run's block copy did not end within 30 s ({self.where()})")
            self.sleep(0.05)

    def abort(self) -> None:
        """Best effort: stop our job if it still runs. Before a pivot the guest stays on its source."""
        try:
            if self.job():
                self.dom.blockJobAbort(self.target, 0)
        except (LibvirtError, KvmImagesError):
            # The caller reports its own error; the job, the guest or libvirt is gone.
            pass


def fix_persistent(dom: t.Any, target: str, dest: str, fmt: str) -> bool:
    """libvirt's rewrite of the persistent definition after a pivot is best effort: check it, fix it."""
    root = domain_xml.parse(inactive_xml(dom))
    disk = domain_xml.find_disk(root, target=target)
    if not domain_xml.set_disk(disk, source=dest, driver_type=fmt):
        return False
    libvirt_call(f"cannot update the persistent definition of {dom.name()}", dom.connect().defineXML,
                 domain_xml.serialize(root))
    after = persistent_disk(dom, target)
    if (after["source"], after["driver_type"]) != (dest, fmt):
        raise KvmImagesError(f"the persistent definition of {dom.name()} still names {after['source']}"
                             f" ({after['driver_type']}) for {target}; the guest runs on {dest}")
    return True


class LiveConversion:
    """Decide, then copy and pivot; ``qemu`` creates and checks the destination."""

    def __init__(self, dom: t.Any, qemu: t.Any, *, target: str, dest: str, fmt: str,
                 options: dict[str, t.Any] | None, bandwidth_mib: int | None, timeout: float,
                 reconnect: t.Callable[[], t.Any] | None = None, journal: str | None = None) -> None:
        self.dom = dom
        self.journal = journal
        self.qemu = qemu
        self.target = target
        self.dest = dest
        self.fmt = fmt
        self.options = options
        self.copy = BlockCopy(dom, target, dest, fmt, timeout=timeout, bandwidth_mib=bandwidth_mib,
                              reconnect=reconnect)
        self.name = dom.name()
        self.leftover_job = False

    def decide(self) -> tuple[str | None, dict[str, t.Any]]:
        """(reason or None, the live disk); raises when the copy must not start."""
        if not self.dom.isActive():
            raise KvmImagesError(f"domain {self.name} is not running: a live copy needs a running guest"
                                 " (convert it offline with kvm.images.qemu_image_convert); nothing was created",
                                 domain=self.name)
        disk = live_disk(self.dom, self.target)
        problem = refusal(disk)
        if problem:
            raise KvmImagesError(f"domain {self.name}, disk {self.target}: {problem}; nothing was created",
                                 domain=self.name)
        if (disk["source"], disk["driver_type"]) == (self.dest, self.fmt) and not disk["mirror"]:
            if self.dom.isPersistent():
                stored = persistent_disk(self.dom, self.target)
                if (stored["source"], stored["driver_type"]) != (self.dest, self.fmt):
                    return "the persistent definition is pointed at the copy the guest runs on", disk
            return None, disk
        if is_leftover_job(disk, self.dest):
            self.leftover_job = True
            return (f"{disk['source']} ({disk['driver_type']}) -> {self.dest} ({self.fmt}), live; the block copy"
                    " an interrupted earlier run left is aborted and started again"), disk
        if disk["mirror"] or self.copy.job():
            raise KvmImagesError(f"domain {self.name}, disk {self.target} already has a block job"
                                 f" (into {disk['mirror_source'] or 'an unknown destination'}), not one this"
                                 f" collection left for {self.dest}; nothing was created", domain=self.name)
        if not os.path.isdir(os.path.dirname(self.dest)):
            raise KvmImagesError(f"destination directory {os.path.dirname(self.dest)} does not exist;"
                                 " nothing was created", dest=self.dest)
        if os.path.lexists(self.dest) and not os.path.exists(live_copy_marker(self.dest)):
            raise KvmImagesError(f"{self.dest} exists; a block copy would overwrite it. Nothing was changed",
                                 dest=self.dest)
        return f"{disk['source']} ({disk['driver_type']}) -> {self.dest} ({self.fmt}), live", disk

    def wait_for_earlier_process(self, timeout: float, *, clock: t.Callable[[], float] = time.monotonic,
                                 sleep: t.Callable[[float], None] = time.sleep) -> float:
        """An interrupted run's module lives on (ansible-playbook's workers have sessions of their own), still
        following its copy into our dest: let it finish or fail before deciding. Returns the seconds waited."""
        marker = live_copy_marker(self.dest)
        started = clock()
        while True:
            holder = marker_holder(marker)
            if holder is None:
                return round(clock() - started, 3)
            if clock() - started >= timeout:
                raise KvmImagesError(self.busy(holder) + f"; waited {timeout:g} s and changed nothing",
                                     domain=self.name, dest=self.dest)
            sleep(1.0)

    def busy(self, holder: str) -> str:
        return (f"another process (pid {holder.split()[0]}) still copies domain {self.name}, disk {self.target}"
                f" into {self.dest} - a module of an interrupted run, which finishes or fails on its own")

    def run(self, disk: dict[str, t.Any], pivot: bool) -> dict[str, t.Any]:
        marker = live_copy_marker(self.dest)
        try:
            claim = claim_marker(marker, f"{os.getpid()} {self.name} {self.target}\n")
        except BlockingIOError:
            raise KvmImagesError(self.busy(marker_holder(marker) or "unknown") + "; nothing was changed",
                                 domain=self.name, dest=self.dest) from None
        try:
            return self.run_claimed(disk, pivot, marker)
        finally:
            os.close(claim)

    def run_claimed(self, disk: dict[str, t.Any], pivot: bool, marker: str) -> dict[str, t.Any]:
        if (disk["source"], disk["driver_type"]) == (self.dest, self.fmt):
            # A run killed between the pivot and fixing the definition: finish its work.
            fix_persistent(self.dom, self.target, self.dest, self.fmt)
            os.unlink(marker)
            return {"bytes_copied": 0, "max_pause_s": 0.0, "pivoted": False}
        if self.leftover_job:
            libvirt_call(f"cannot end the earlier run's block copy of {self.copy.where()}", self.copy.abort_leftover)
        if os.path.lexists(self.dest):
            os.unlink(self.dest)
        pause = 0.0
        try:
            capacity = libvirt_call(f"cannot read the size of {self.target}", self.dom.blockInfo, self.target)[0]
            self.qemu.create(self.dest, self.fmt, capacity, options=self.options if self.fmt == "qcow2" else None)
            libvirt_call(f"cannot start the block copy of {self.copy.where()}", self.copy.start,
                         bool(self.dom.isPersistent()))
            libvirt_call(f"the block copy of {self.copy.where()} failed", self.copy.wait_ready)
            self.dom = self.copy.dom
            if pivot:
                record_before(self.journal, [switch_entry(self.name, self.target, disk, self.dest, self.fmt)],
                              self.name, "switch")
                pause = libvirt_call(f"the pivot of {self.copy.where()} failed", self.copy.pivot)
                now = live_disk(self.dom, self.target)
                if (now["source"], now["driver_type"]) != (self.dest, self.fmt):
                    raise KvmImagesError(f"after the pivot, domain {self.name} still runs {self.target} on"
                                         f" {now['source']}", domain=self.name)
                if self.dom.isPersistent():
                    fix_persistent(self.dom, self.target, self.dest, self.fmt)
            else:
                libvirt_call(f"cannot end the block copy of {self.copy.where()}", self.copy.finish_without_pivot)
        except BaseException:
            self.copy.abort()
            if not self.runs_on_dest():
                for leftover in (self.dest, marker):
                    if os.path.lexists(leftover):
                        os.unlink(leftover)
            raise
        os.unlink(marker)
        return {"bytes_copied": self.copy.bytes_copied, "max_pause_s": round(pause, 3), "pivoted": pivot}

    def runs_on_dest(self) -> bool:
        try:
            return self.copy.follow(lambda: live_disk(self.copy.dom, self.target))["source"] == self.dest
        except (KvmImagesError, LibvirtError):
            # Cannot tell: keep the file rather than risk the one the guest may use.
            return True


def verify_dest(qemu: t.Any, dest: str, fmt: str, capacity: int) -> None:
    """After the pivot the guest writes to dest, so compare is moot: check its size and, for qcow2, its metadata."""
    info = qemu.info(dest, fmt, force_share=True)
    if info.get("virtual-size") != capacity:
        raise KvmImagesError(f"the new image {dest} has {info.get('virtual-size')} bytes, the disk {capacity}",
                             dest=dest)
    if fmt == "qcow2":
        verdict = qemu.check(dest, fmt, force_share=True)
        if verdict["status"] != "clean":
            raise KvmImagesError(f"qemu-img check found the new image {dest} {verdict['status']}; the guest runs"
                                 " on it, its original is kept", dest=dest, check=verdict)
