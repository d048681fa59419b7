# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Live conversion of a running domain's disk: block copy, wait for READY, pivot (private to kvm.images)."""

from __future__ import annotations

import collections
import os
import time
import typing as t
from xml.sax.saxutils import quoteattr

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.atomic_file import (
    claim_marker,
    live_copy_marker,
    marker_holder,
)
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.journal import record_before, switch_entry
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import (
    LibvirtError,
    daemon_versions,
    inactive_xml,
    libvirt_call,
    live_xml,
    version_text,
)
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import held_by_qemu

# libvirt constants, named here so the logic can be tested without libvirt.
BLOCK_COPY_REUSE_EXT = 2
BLOCK_COPY_TRANSIENT_JOB = 4
BLOCK_COPY_SYNCHRONOUS_WRITES = 8
BLOCK_JOB_ABORT_PIVOT = 2
BLOCK_COPY_BANDWIDTH = "bandwidth"
DOMAIN_RUNNING = 1
# Seconds over which an attempt's bytes left are reported (the most seen).
LEFT_WINDOW = 10.0

# Copy modes (QEMU's mirror copy-mode). In the background mode QEMU copies dirty blocks behind the
# guest, which a guest that writes faster than the copy runs keeps from ever catching up. In the
# write-blocking mode (libvirt's SYNCHRONOUS_WRITES) each guest write also goes to the destination
# before it completes, so only the background pass is left to finish, whatever the guest writes.
BACKGROUND = "background"
WRITE_BLOCKING = "write_blocking"
AUTO = "auto"
COPY_MODES = (AUTO, BACKGROUND, WRITE_BLOCKING)
# libvirt 8.0.0 added SYNCHRONOUS_WRITES; it needs QEMU's -blockdev, which libvirt uses from QEMU 4.2.0.
WRITE_BLOCKING_MIN_LIBVIRT = 8_000_000
WRITE_BLOCKING_MIN_QEMU = 4_002_000
# virErrorNumber values with which a daemon refuses a flag or a mode it does not know: NO_SUPPORT,
# INVALID_ARG ("unsupported flags"), ARGUMENT_UNSUPPORTED, OPERATION_UNSUPPORTED.
UNSUPPORTED_ERRORS = frozenset({3, 8, 74, 84})


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


def write_blocking_supported(libvirt_version: int, qemu_version: int) -> bool:
    """Whether the daemon (``getLibVersion``) and its QEMU (``getVersion``) can copy in write-blocking mode."""
    return libvirt_version >= WRITE_BLOCKING_MIN_LIBVIRT and qemu_version >= WRITE_BLOCKING_MIN_QEMU


def planned_modes(requested: str, supported: bool, versions: str = "") -> list[str]:
    """The modes to start the copy in, in order: the next only when the daemon refuses to start one.

    ``auto`` copies in write-blocking mode where the daemon and its QEMU can: it is ready within one
    background pass whatever the guest writes, and costs the guest's writes about a fifth more time
    (bench/live_copy_modes_bench.py). A background copy first, restarted in write-blocking mode once
    it stopped gaining on the guest, took 2.4 and 6.5 times as long on busy test guests and copied the
    disk twice. The background mode stays for where write-blocking cannot run.
    """
    if requested == BACKGROUND:
        return [BACKGROUND]
    if requested == WRITE_BLOCKING:
        if supported:
            return [WRITE_BLOCKING]
        raise KvmImagesError(f"copy_mode {WRITE_BLOCKING} needs libvirt {version_text(WRITE_BLOCKING_MIN_LIBVIRT)}"
                             f" and QEMU {version_text(WRITE_BLOCKING_MIN_QEMU)} or later{versions}; nothing was"
                             " created")
    return [WRITE_BLOCKING, BACKGROUND] if supported else [BACKGROUND]


def mode_label(mode: str) -> str:
    return mode.replace("_", "-")


def is_ready(mode: str, info: dict[str, int], mirror_ready: t.Callable[[], bool]) -> bool:
    """Whether the job may pivot. Both modes need libvirt's ``<mirror ready='yes'>``.

    A background job must also have caught up (``cur == end``): QEMU completes a pivot only once no
    dirty block is left, and a busy guest keeps dirtying them behind a background copy. A ready
    write-blocking job has none left; its ``end`` runs ahead of ``cur`` only by the guest writes in
    flight to both images (libvirt 9.0 with QEMU 7.2, in about half the polls under a busy guest),
    which QEMU finishes before it pivots.
    """
    end = info.get("end", 0)
    if not end:
        return False
    if mode == BACKGROUND and info.get("cur") != end:
        return False
    return mirror_ready()


def size_text(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"


def attempt_text(attempt: dict[str, t.Any]) -> str:
    """``write-blocking copy at 95 % after 74.8 s (1.2 GiB copied, 13.0 MiB left)``, or why it never started."""
    if "error" in attempt:
        return f"{mode_label(attempt['mode'])} copy refused ({attempt['error']})"
    return (f"{mode_label(attempt['mode'])} copy at {attempt['percent']} % after {attempt['seconds']:g} s"
            f" ({size_text(attempt['bytes'])} copied, {size_text(attempt['remaining'])} left)")


def attempts_text(attempts: list[dict[str, t.Any]]) -> str:
    return ", then ".join(attempt_text(attempt) for attempt in attempts)


def refusal(disk: dict[str, t.Any]) -> str | None:
    """Why this disk is not copied live, or None."""
    if disk["device"] != "disk":
        return f"a {disk['device']} is not converted"
    if disk["type"] != "file":
        return f"a {disk['type']} disk is not converted (only file disks)"
    if disk["shareable"]:
        return "a shareable disk is not converted"
    if disk["readonly"]:
        return "a read-only disk is not converted"
    if disk.get("slices"):
        return f"its <source> has <slices>: {domain_xml.SLICES_KEEP_THEIR_IMAGE}"
    if disk.get("encryption"):
        return f"it has <encryption>: {domain_xml.ENCRYPTION_KEEPS_ITS_IMAGE}"
    return None


class BlockCopy:
    """One copy job. ``dom`` is a libvirt virDomain (the seam tests fake)."""

    def __init__(self, dom: t.Any, target: str, dest: str, fmt: str, *, timeout: float,
                 bandwidth_mib: int | None = None, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep, poll_interval: float = 0.2,
                 reconnect: t.Callable[[], t.Any] | None = None, reconnect_timeout: float = 60,
                 progress: Progress | None = None, label: str | None = None) -> None:
        self.dom = dom
        self.progress = progress
        self.label = label
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
        self.mode = BACKGROUND
        self.started: float | None = None
        self.attempt_started = 0.0
        self.attempts: list[dict[str, t.Any]] = []
        self.recent_left: collections.deque[tuple[float, int]] = collections.deque()

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

    def start(self, persistent: bool, mode: str = BACKGROUND) -> None:
        """Start a job in ``mode``; the timeout counts from the first attempt's start."""
        flags = BLOCK_COPY_REUSE_EXT | (BLOCK_COPY_TRANSIENT_JOB if persistent else 0)
        if mode == WRITE_BLOCKING:
            flags |= BLOCK_COPY_SYNCHRONOUS_WRITES
        params = {}
        if self.bandwidth_mib:
            params[BLOCK_COPY_BANDWIDTH] = self.bandwidth_mib << 20
        self.attempt_started = self.clock()
        self.recent_left.clear()
        if self.started is None:
            self.started = self.attempt_started
        self.mode = mode
        self.attempts.append({"mode": mode, "percent": 0, "bytes": 0, "remaining": 0, "seconds": 0.0})
        if self.progress is not None:
            self.progress.start(self.dest, self.label or f"{self.name} {self.target}", 0, f"live, {mode}")
        self.dom.blockCopy(self.target, dest_xml(self.dest, self.fmt), params, flags)

    def note(self, info: dict[str, int], ready: bool = False) -> None:
        """Record how far the running attempt got: ``cur`` of ``end`` as virsh shows it, all of it once READY.

        What is left is the most seen over the last ``LEFT_WINDOW`` seconds: behind a busy guest it swings
        between what the copy just cleaned (libvirt shows that as 1 byte left) and what the guest dirtied again.
        """
        now = self.clock()
        cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
        self.recent_left.append((now, max(end - cur, 0)))
        while self.recent_left[0][0] < now - LEFT_WINDOW:
            self.recent_left.popleft()
        self.attempts[-1].update(percent=100 if ready else cur * 100 // end if end else 0, bytes=cur,
                                 remaining=0 if ready else max(seen[1] for seen in self.recent_left),
                                 seconds=round(now - self.attempt_started, 1))
        if self.progress is not None:
            self.progress.update(self.dest, done=end if ready else cur, total=end,
                                 phase="pivoting" if ready else "copying")

    def refused(self, msg: str) -> None:
        """The daemon would not start the last attempt's job."""
        self.attempts[-1]["error"] = msg

    def report(self) -> list[dict[str, t.Any]]:
        """The attempts so far: mode, percent, bytes copied, bytes left, seconds (and a refusal's error)."""
        return [dict(attempt) for attempt in self.attempts]

    def wait_ready(self) -> None:
        """Until the mirror is READY; a vanished job or the timeout (counted from the first attempt) is a failure."""
        deadline = self.started + self.timeout
        # Small disks are ready in milliseconds: poll fast first, then back off to the interval.
        pause = min(0.02, self.poll_interval)
        while True:
            info = self.job()
            if not info:
                raise KvmImagesError(f"the block copy stopped before it was ready ({self.where()});"
                                     " the guest stays on its original disk", attempts=self.report())
            self.bytes_copied = int(info.get("end", 0))
            if is_ready(self.mode, info, lambda: self.follow(lambda: live_disk(self.dom, self.target))["mirror_ready"]):
                self.note(info, ready=True)
                return
            self.note(info)
            if self.clock() > deadline:
                raise KvmImagesError(f"the block copy was not ready within {self.timeout:g} s ({self.where()}):"
                                     f" {attempts_text(self.report())}; it was aborted and the guest stays on its"
                                     " original disk", attempts=self.report())
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

    def end(self) -> None:
        """End our job without a pivot: the copy stays as it is and the guest on its disk. A write-blocking job
        ends with the guest paused (see end_paused)."""
        if self.mode == WRITE_BLOCKING:
            self.end_paused()
        else:
            self.dom.blockJobAbort(self.target, 0)

    def abort_leftover(self) -> None:
        """End a copy job a killed earlier run left behind; the guest stays on its source. Its mode is unknown
        (libvirt does not show it), so it is ended as a write-blocking one is."""
        self.end_paused("the earlier run's block copy")

    def end_paused(self, what: str = "the block copy") -> None:
        """Abort the job with the guest paused, wait until it is gone, resume the guest.

        Aborting a write-blocking job while guest writes were in flight crashed QEMU 7.2 here (heap
        corruption, 2 of 20 aborts under a busy test guest; no background abort did). A paused guest has
        none in flight: QEMU drains every request when it stops the guest (no crash in 30 aborts). The
        pause lasts as long as the abort, about 0.1 s. A guest that was paused already stays paused.
        """
        pausing = self.follow(lambda: self.dom.state()[0]) == DOMAIN_RUNNING
        if pausing:
            self.dom.suspend()
        try:
            self.dom.blockJobAbort(self.target, 0)
            deadline = self.clock() + 30
            while self.job():
                if self.clock() > deadline:
                    raise KvmImagesError(f"{what} did not end within 30 s ({self.where()})")
                self.sleep(0.02)
        finally:
            if pausing:
                self.resume()

    def resume(self) -> None:
        try:
            self.follow(self.resume_now)
        except (LibvirtError, KvmImagesError) as exc:
            raise KvmImagesError(f"domain {self.name} was paused to end its block copy and could not be resumed"
                                 f" ({exc}); resume it with virsh resume {self.name}", domain=self.name,
                                 left_paused=True) from exc

    def resume_now(self) -> None:
        """Resume the guest through the connection of the moment (follow may have opened a new one)."""
        self.dom.resume()

    def abort(self) -> None:
        """Best effort: stop our job if it still runs. Before a pivot the guest stays on its source.
        Only a guest left paused is worth an error of its own."""
        try:
            if not self.job():
                return
            self.end()
        except KvmImagesError as exc:
            if exc.details.get("left_paused"):
                raise
        except LibvirtError:
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
                 reconnect: t.Callable[[], t.Any] | None = None, journal: str | None = None,
                 copy_mode: str = AUTO, progress: Progress | None = None, label: str | None = None,
                 force: bool = False) -> None:
        self.dom = dom
        self.progress = progress
        self.copy_mode = copy_mode
        self.force = force
        self.modes: list[str] = []
        self.journal = journal
        self.qemu = qemu
        self.target = target
        self.dest = dest
        self.fmt = fmt
        self.options = options
        self.copy = BlockCopy(dom, target, dest, fmt, timeout=timeout, bandwidth_mib=bandwidth_mib,
                              reconnect=reconnect, progress=progress, label=label)
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
            # Its mode does not matter (the live XML does not show it): it is aborted like any other.
            self.leftover_job = True
            self.modes = self.plan_modes()
            return (f"{disk['source']} ({disk['driver_type']}) -> {self.dest} ({self.fmt}), live; the block copy"
                    " an interrupted earlier run left is aborted and started again"), disk
        if disk["mirror"] or self.copy.job():
            raise KvmImagesError(f"domain {self.name}, disk {self.target} already has a block job"
                                 f" (into {disk['mirror_source'] or 'an unknown destination'}), not one this"
                                 f" collection left for {self.dest}; nothing was created", domain=self.name)
        if not os.path.isdir(os.path.dirname(self.dest)):
            raise KvmImagesError(f"destination directory {os.path.dirname(self.dest)} does not exist;"
                                 " nothing was created", dest=self.dest)
        replaced = ""
        if os.path.lexists(self.dest) and not os.path.exists(live_copy_marker(self.dest)):
            if not self.force:
                raise KvmImagesError(f"{self.dest} exists; a block copy would overwrite it. Nothing was changed",
                                     dest=self.dest)
            if not os.path.isfile(self.dest) or held_by_qemu(self.dest):
                raise KvmImagesError(f"{self.dest} exists and is not a regular file out of QEMU's use; a block copy"
                                     " does not replace it, even with force. Nothing was changed", dest=self.dest)
            replaced = f"; replaces the existing {self.dest} (force)"
        self.modes = self.plan_modes()
        return f"{disk['source']} ({disk['driver_type']}) -> {self.dest} ({self.fmt}), live{replaced}", disk

    def plan_modes(self) -> list[str]:
        """The modes the copy will try, from what was asked and what the daemon and its QEMU can do."""
        if self.copy_mode == BACKGROUND:
            return [BACKGROUND]
        libvirt_version, qemu_version = daemon_versions(self.dom.connect())
        return planned_modes(self.copy_mode, write_blocking_supported(libvirt_version, qemu_version),
                             f" (libvirt {version_text(libvirt_version)}, QEMU {version_text(qemu_version)} here)")

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
            return {"bytes_copied": 0, "max_pause_s": 0.0, "pivoted": False, "copy_mode": None, "attempts": []}
        if self.leftover_job:
            libvirt_call(f"cannot end the earlier run's block copy of {self.copy.where()}", self.copy.abort_leftover)
        if os.path.lexists(self.dest):
            os.unlink(self.dest)
        pause = 0.0
        try:
            capacity = libvirt_call(f"cannot read the size of {self.target}", self.dom.blockInfo, self.target)[0]
            self.copy_until_ready(capacity, bool(self.dom.isPersistent()))
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
                libvirt_call(f"cannot end the block copy of {self.copy.where()}", self.copy.end)
        except BaseException as exc:
            if self.progress is not None:
                self.progress.finish(self.dest, "failed")
            try:
                self.copy.abort()
            except KvmImagesError as paused:
                if not isinstance(exc, KvmImagesError):
                    raise
                # The guest left paused comes first: it needs a hand at once.
                exc.msg = f"{paused.msg}; {exc.msg}"
                exc.details.update(paused.details)
            if isinstance(exc, KvmImagesError) and self.copy.attempts:
                exc.details.setdefault("attempts", self.copy.report())
            if not self.runs_on_dest():
                for leftover in (self.dest, marker):
                    if os.path.lexists(leftover):
                        os.unlink(leftover)
            raise
        os.unlink(marker)
        if self.progress is not None:
            self.progress.finish(self.dest, "done")
        return {"bytes_copied": self.copy.bytes_copied, "max_pause_s": round(pause, 3), "pivoted": pivot,
                "copy_mode": self.copy.mode, "attempts": self.copy.report()}

    def copy_until_ready(self, capacity: int, persistent: bool) -> None:
        """Start the copy in the first planned mode the daemon accepts, then wait until it is READY."""
        for number, mode in enumerate(self.modes):
            if number:
                # The refused job never started: the next one gets a fresh destination all the same.
                os.unlink(self.dest)
            self.qemu.create(self.dest, self.fmt, capacity, options=self.options if self.fmt == "qcow2" else None)
            try:
                libvirt_call(f"cannot start the {mode_label(mode)} block copy of {self.copy.where()}",
                             self.copy.start, persistent, mode)
            except KvmImagesError as exc:
                if number == len(self.modes) - 1 or exc.details.get("libvirt_code") not in UNSUPPORTED_ERRORS:
                    raise
                self.copy.refused(exc.msg)
                continue
            libvirt_call(f"the block copy of {self.copy.where()} failed", self.copy.wait_ready)
            return

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
