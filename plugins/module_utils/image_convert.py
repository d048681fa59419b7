# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline conversion of one image: decide, then write, verify and rename (private to kvm.images)."""

from __future__ import annotations

import os
import time
import typing as t
from dataclasses import dataclass, field

from ansible_collections.kvm.images.plugins.module_utils import atomic_file
from ansible_collections.kvm.images.plugins.module_utils.destination import destination_path
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    HeaderReport,
    inspect_path,
    path_problems,
    readable_backing,
    vet_image,
)
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress, allocated_bytes
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import QemuImg, held_by_qemu
from ansible_collections.kvm.images.plugins.module_utils.space import with_margin


@dataclass
class Request:
    src: str
    src_format: str | None
    dest: str | None
    format: str
    create_options: dict[str, t.Any] = field(default_factory=dict)
    compress: bool = False
    sparse: str | None = None
    coroutines: int | None = None
    out_of_order: bool = False
    src_cache: str | None = None
    dest_cache: str | None = None
    verify: bool = True
    space_check: bool = True
    keep_backing: bool = False
    force: bool = False
    allowed_backing_dirs: list[str] | None = None
    # MiB/s the copy may read and write (qemu-img -r); None: as fast as it goes.
    bandwidth_mib: int | None = None
    # Check mode only: the guest using the source is shut down by an earlier task of the same run.
    expect_shutdown: bool = False
    # Names the image in progress lines.
    label: str | None = None


@dataclass
class Decision:
    """What a run would do; ``reason`` None means nothing."""

    src: str
    dest: str
    src_format: str
    header: HeaderReport
    convert: bool
    reason: str | None
    leftovers: list[str]
    dest_exists: bool
    unfinished_live_copy: bool = False
    dest_identity: tuple[int, ...] | None = None
    # The source's vetted backing files: what qemu-img may read besides the source.
    backing: tuple[str, ...] = ()
    # Check mode only: a running guest holds the source (it is to be shut down first); read it shared.
    in_use: bool = False
    # The backing files qemu opens, in order, as (real path, format): what keeping the chain names.
    chain: list[tuple[str, str]] = field(default_factory=list)


def free_bytes(directory: str) -> int:
    info = os.statvfs(directory)
    return info.f_bavail * info.f_frsize


def up_to_date(dest: str, dest_header: HeaderReport, src: str, src_header: HeaderReport, fmt: str) -> bool:
    """A dest of the target format and size, not older than the source, is the earlier run's result.

    Enough without reading the images in full because dest only ever appears
    through a verified rename, or as a live copy whose marker goes only once it
    is finished (decide checks that first), and a source changed since would be newer.
    """
    return (dest_header.detected_format == fmt
            and dest_header.virtual_size == src_header.virtual_size
            and os.stat(dest).st_mtime >= os.stat(src).st_mtime)


def decide(request: Request, *, check_mode: bool = False) -> Decision:
    """What converting ``request.src`` means now, and why; raises when it must not happen.

    In check mode, a source a running guest holds is not refused when ``request.expect_shutdown``: the
    prediction is for the run in which that guest was shut down first.
    """
    src = request.src
    problems = path_problems(src)
    if problems:
        raise KvmImagesError(f"cannot convert {src}: {'; '.join(problems)}; nothing was written", src=src)
    vetting = vet_image(src, request.src_format, request.allowed_backing_dirs)
    header, problems = vetting.report, vetting.problems
    if problems:
        raise KvmImagesError(f"refusing to convert {src}: {'; '.join(problems)}; nothing was written",
                             src=src, problems=problems)
    if header.snapshots:
        raise KvmImagesError(f"refusing to convert {src}: it holds {header.snapshots} internal snapshot(s),"
                             " which a conversion would drop; nothing was written", src=src)
    src_format = request.src_format or header.detected_format
    dest = request.dest or destination_path(src, request.format)
    if not dest.startswith("/"):
        raise KvmImagesError(f"dest must be an absolute path, not {dest}", dest=dest)
    directory = os.path.dirname(dest)
    if not os.path.isdir(directory):
        raise KvmImagesError(f"destination directory {directory} does not exist; nothing was written", dest=dest)
    if os.path.islink(dest):
        raise KvmImagesError(f"{dest} is a symlink; refusing to write through it", dest=dest)
    if os.path.abspath(dest) == os.path.abspath(src) or atomic_file.same_file(src, dest):
        raise KvmImagesError(f"{dest} is the source itself; nothing was written", dest=dest, src=src)
    found = atomic_file.leftovers(dest)
    exists = os.path.lexists(dest)
    reason = None
    unfinished_live_copy = exists and os.path.lexists(atomic_file.live_copy_marker(dest))
    if exists:
        if not os.path.isfile(dest):
            raise KvmImagesError(f"{dest} exists and is not a regular file; nothing was written", dest=dest)
        dest_header = inspect_path(dest)
        if unfinished_live_copy:
            # Its header and size are those of a finished image: never take it for one. Nor replace it
            # unasked: a run killed just after its pivot leaves the marker beside the image the guest
            # has been writing to since.
            if held_by_qemu(dest):
                raise KvmImagesError(f"{dest} is the destination of a live block copy, and QEMU holds it: the copy"
                                     " still runs or the guest runs on it. Nothing was written", dest=dest)
            if not request.force:
                raise KvmImagesError(
                    f"{dest} is the destination of a live block copy that did not finish - or that a guest"
                    " switched to just before its run was interrupted. Check which image the domain uses; set"
                    " force to replace it. Nothing was written", dest=dest)
            reason = f"{dest}, the destination of an unfinished live copy, is replaced (force)"
        elif up_to_date(dest, dest_header, src, header, request.format) and not request.force:
            reason = None
        elif request.force:
            reason = f"{dest} is replaced (force)"
        else:
            raise KvmImagesError(
                f"{dest} exists ({dest_header.detected_format}, {dest_header.virtual_size} bytes) and is not"
                f" an up-to-date {request.format} conversion of {src}; set force to replace it."
                " Nothing was written", dest=dest)
    else:
        reason = f"{src} ({src_format}) -> {dest} ({request.format})"
    convert = reason is not None
    in_use = convert and held_by_qemu(src)
    if in_use and not (check_mode and request.expect_shutdown):
        raise KvmImagesError(f"{src} is in use by a running guest (QEMU's lock); shut it down or"
                             " copy it live with kvm.images.libvirt_disk_copy. Nothing was written", src=src)
    if not convert and found:
        reason = f"leftovers of an interrupted run removed: {', '.join(found)}"
    return Decision(src, dest, src_format, header, convert, reason, found, exists, unfinished_live_copy,
                    atomic_file.identity(dest), readable_backing(vetting, src, request.allowed_backing_dirs), in_use,
                    vetting.chain)


def create_options(request: Request) -> dict[str, t.Any]:
    options = {key: value for key, value in request.create_options.items() if value is not None}
    if request.format != "qcow2":
        options = {key: value for key, value in options.items() if key == "preallocation"}
    return options


class Converter:
    """Executes a Decision; the qemu-img wrapper is the seam."""

    def __init__(self, module: t.Any, qemu: QemuImg) -> None:
        self.module = module
        self.qemu = qemu

    def check_source(self, decision: Decision) -> None:
        """qemu-img convert copies a qcow2 whose tables point past its end without a word, the lost data
        as zeros, and compare then finds the copy identical: such a source is refused, not copied."""
        if decision.src_format == "raw":
            return
        verdict = self.qemu.check(decision.src, decision.src_format, backing=decision.backing,
                                  force_share=decision.in_use)
        if verdict["status"] in ("corrupt", "incomplete"):
            raise KvmImagesError(
                f"qemu-img check found {decision.src} {verdict['status']} ({verdict['corruptions']} corruption(s));"
                " a conversion would carry the damage into the new image without a word. Repair a copy of it first"
                " (qemu-img check -r all). Nothing was written", src=decision.src, check=verdict)

    def measure(self, decision: Decision, request: Request) -> dict[str, int]:
        return self.qemu.measure(decision.src, decision.src_format, request.format,
                                 options=create_options(request) or None, backing=decision.backing,
                                 force_share=decision.in_use)

    def convert_argv_options(self, decision: Decision, request: Request) -> dict[str, t.Any]:
        options: dict[str, t.Any] = {
            "options": create_options(request) or None,
            "sparse_size": request.sparse,
            "parallel": request.coroutines,
            "rate_limit_mib": request.bandwidth_mib,
            "out_of_order": request.out_of_order,
            "src_cache": request.src_cache,
            "dest_cache": request.dest_cache,
            "compress": request.compress,
        }
        if request.keep_backing and decision.chain:
            # The new image names the vetted backing file by its resolved path.
            backing_file, backing_format = decision.chain[0]
            options.update(flatten=False, backing_file=backing_file, backing_format=backing_format)
        return options

    def verify(self, decision: Decision, request: Request, temp: str) -> None:
        """Same content, same virtual size, a clean qcow2, the expected header."""
        # A copy that keeps the backing chain reads the source's backing files too.
        backing = decision.backing
        src_size = self.qemu.info(decision.src, decision.src_format, backing=backing)["virtual-size"]
        dest_size = self.qemu.info(temp, request.format, backing=backing)["virtual-size"]
        if src_size != dest_size:
            raise KvmImagesError(f"verification failed: {temp} has {dest_size} bytes, {decision.src} {src_size}",
                                 dest=decision.dest)
        if not self.qemu.compare(decision.src, decision.src_format, temp, request.format, backing=backing):
            raise KvmImagesError(f"verification failed: qemu-img compare found {temp} differs from {decision.src}",
                                 dest=decision.dest)
        if request.format == "qcow2":
            verdict = self.qemu.check(temp, "qcow2", backing=backing)
            if verdict["status"] != "clean":
                raise KvmImagesError(f"verification failed: qemu-img check found the new image {verdict['status']}",
                                     dest=decision.dest, check=verdict)
            if inspect_path(temp).detected_format != "qcow2":
                raise KvmImagesError("verification failed: the new image has no qcow2 header", dest=decision.dest)

    def run(self, decision: Decision, request: Request, owner: str | None, group: str | None,
            mode: str | None, progress: Progress | None = None, expected_bytes: int = 0) -> dict[str, t.Any]:
        """Remove the leftovers of an interrupted run, then write the temp file, sync it, verify it, give it
        the source's attributes and rename it into place; ``progress`` follows the copy by the bytes the
        temp file takes. Returns the argv, the seconds it took and whether it was verified."""
        for path in decision.leftovers:
            # A temp file qemu-img still writes belongs to a run in progress.
            if not held_by_qemu(path):
                atomic_file.remove_quietly(path)
        if not decision.convert:
            return {"argv": None, "duration_s": 0.0, "verified": False}
        started = time.monotonic()
        temp = atomic_file.make_temp(decision.dest)
        self.module.add_cleanup_file(temp)
        key = decision.dest
        if progress is not None:
            progress.start(key, request.label or decision.src, expected_bytes, "offline",
                           sampler=lambda: allocated_bytes(temp))
        try:
            argv = self.qemu.convert(decision.src, decision.src_format, temp, request.format, backing=decision.backing,
                                     **self.convert_argv_options(decision, request))
            # qemu-img's default target cache does not flush at exit.
            atomic_file.fsync_path(temp)
            if request.verify:
                if progress is not None:
                    progress.update(key, done=expected_bytes, phase="verifying")
                self.verify(decision, request, temp)
            atomic_file.copy_attributes(self.module, decision.src, temp, owner, group, mode)
            if atomic_file.identity(decision.dest) != decision.dest_identity:
                # An interrupted run's module lives on (ansible-playbook's workers have sessions of their
                # own) and may have put its image there meanwhile, which a guest may run on by now.
                raise KvmImagesError(f"{decision.dest} changed while this run converted {decision.src} (another"
                                     " run, or a module of an interrupted one, wrote it); it is left as it is and"
                                     " this run's copy discarded", dest=decision.dest)
            atomic_file.commit(temp, decision.dest)
        except BaseException:
            atomic_file.remove_quietly(temp)
            if progress is not None:
                progress.finish(key, "failed")
            raise
        if progress is not None:
            progress.finish(key, "done")
        if decision.unfinished_live_copy:
            atomic_file.remove_quietly(atomic_file.live_copy_marker(decision.dest))
        return {"argv": argv, "duration_s": round(time.monotonic() - started, 3), "verified": request.verify}


@dataclass
class Prepared:
    """One conversion decided, its source checked and its new image measured: the result so far."""

    request: Request
    decision: Decision
    result: dict[str, t.Any]
    required: int | None = None

    @property
    def expected_bytes(self) -> int:
        """What the copy writes: measured for a qcow2; for a raw image, the source's data (its holes stay holes)."""
        if self.required is None:
            return 0
        if self.request.format == "qcow2":
            return self.required
        return min(self.result["src_actual_size"], self.decision.header.virtual_size or self.required)


def prepare(converter: Converter, request: Request, *, check_mode: bool, diff: bool) -> Prepared:
    """Decide, and for a conversion check the source and measure the new image; nothing is written."""
    decision = decide(request, check_mode=check_mode)
    result = {
        "changed": decision.reason is not None, "src": decision.src, "dest": decision.dest,
        "format": request.format, "src_format": decision.src_format, "virtual_size": decision.header.virtual_size,
        "src_actual_size": allocated_bytes(decision.src), "verified": False, "duration_s": 0.0,
        "removed_leftovers": decision.leftovers,
    }
    if decision.reason:
        result["reason"] = decision.reason
    prepared = Prepared(request, decision, result)
    if decision.convert:
        converter.check_source(decision)
        prepared.required = converter.measure(decision, request)["required"]
        if diff:
            before = (f"{decision.dest}: present (replaced)\n" if decision.dest_exists
                      else f"{decision.dest}: absent\n")
            result["diff"] = {"before": before, "after": f"{decision.dest}: {request.format},"
                              f" {decision.header.virtual_size} bytes virtual\n"}
    return prepared


def space_shortfalls(items: list[Prepared]) -> dict[int, str]:
    """The conversions whose file system cannot take them all together (by index in ``items``), and why.

    New images of one file system are added up: parallel conversions that fit one by one may not fit at once.
    """
    by_filesystem: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        if item.decision.convert and item.request.space_check:
            directory = os.path.dirname(item.decision.dest)
            by_filesystem.setdefault(os.stat(directory).st_dev, []).append(index)
    short: dict[int, str] = {}
    for indexes in by_filesystem.values():
        required = sum(items[index].required or 0 for index in indexes)
        directory = os.path.dirname(items[indexes[0]].decision.dest)
        free = free_bytes(directory)
        wanted = with_margin(required)
        if free >= wanted:
            continue
        for index in indexes:
            dest = items[index].decision.dest
            if len(indexes) == 1:
                short[index] = (f"not enough space in {directory} for {dest}: it needs {required} bytes"
                                f" ({wanted} with the margin), {free} are free; nothing was written")
            else:
                short[index] = (f"not enough space in {directory} for {dest} and the {len(indexes) - 1} other new"
                                f" image(s) on its file system: together they need {required} bytes ({wanted} with"
                                f" the margin), {free} are free; nothing was written")
    return short


def predicted(item: Prepared) -> dict[str, t.Any]:
    """The result of a check-mode run: what a real one would make."""
    result = dict(item.result)
    result["dest_actual_size"] = item.required if item.required is not None else allocated_bytes(item.decision.dest)
    result["bytes_saved"] = result["src_actual_size"] - result["dest_actual_size"]
    return result


def execute(converter: Converter, item: Prepared, owner: str | None, group: str | None, mode: str | None,
            progress: Progress | None = None) -> dict[str, t.Any]:
    """Carry out a prepared conversion; the full result."""
    done = converter.run(item.decision, item.request, owner, group, mode, progress, item.expected_bytes)
    result = dict(item.result, verified=done["verified"], duration_s=done["duration_s"])
    if done["argv"]:
        result["cmd"] = done["argv"]
        if done["duration_s"] > 0:
            result["throughput_mib_s"] = round(item.expected_bytes / done["duration_s"] / (1 << 20), 1)
    result["dest_actual_size"] = allocated_bytes(item.decision.dest)
    result["bytes_saved"] = result["src_actual_size"] - result["dest_actual_size"]
    return result
