# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The differential run: every corpus image under every declaration through the inspector,
and every one it calls safe through qemu-img, as the modules run it, under strace."""

from __future__ import annotations

import collections
import json
import os
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible_collections.kvm.images.plugins.module_utils import qemu_img
from ansible_collections.kvm.images.plugins.module_utils.image_safety import Vetting, vet_image
from ansible_collections.kvm.images.tests.differential.corpus import Case
from ansible_collections.kvm.images.tests.differential.tracing import COMMAND_TIMEOUT, Run, run_traced, system_reason

# qemu-img convert copies the whole virtual disk: larger ones are only inspected, measured and checked.
CONVERT_LIMIT = 256 << 20
WORKERS = max(2, min(4, (os.cpu_count() or 1) + 1))


@dataclass
class Job:
    """One qemu-img command on one image under one declaration, and what the inspector predicted."""

    case: Case
    declaration: str | None
    fmt: str
    command: str
    argv: list[str]
    vetting: Vetting
    expected: frozenset[str]
    dest: str | None = None

    def describe(self) -> str:
        declared = self.declaration or "no format (detected " + self.fmt + ")"
        return f"{self.case.name} [{self.case.recipe}] declared {declared}: qemu-img {self.command}"


@dataclass
class Results:
    """What the differential run found."""

    seed: int
    cases: int = 0
    verdicts: collections.Counter[str] = field(default_factory=collections.Counter)
    safe_formats: collections.Counter[str] = field(default_factory=collections.Counter)
    runs: int = 0
    opens: int = 0
    path_calls: int = 0
    unpredicted: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    chain_mismatches: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    unknown_formats: list[str] = field(default_factory=list)
    sizes_compared: int = 0
    chains_compared: int = 0
    qemu_failures: int = 0
    system_paths: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    seconds: float = 0.0

    def summary(self) -> list[str]:
        lines = [
            f"differential: seed {self.seed}, corpus {self.cases} images; inspector verdicts by declaration:"
            f" {', '.join(f'{label} {count}' for label, count in sorted(self.verdicts.items()))}",
            f"differential: safe images run through qemu-img, by format:"
            f" {', '.join(f'{fmt} {count}' for fmt, count in self.safe_formats.most_common())}",
            f"differential: {self.runs} qemu-img runs ({self.qemu_failures} failed in qemu), {self.opens} opens and"
            f" {self.path_calls} other path calls compared, {self.sizes_compared} virtual sizes and"
            f" {self.chains_compared} chains compared, in {self.seconds:.1f} s",
            f"differential: {len(self.unpredicted)} unpredicted opens, {len(self.size_mismatches)} size and"
            f" {len(self.chain_mismatches)} chain mismatches, {len(self.timeouts)} runs past the time limit",
        ]
        common = set.intersection(*self.system_paths.values()) if self.system_paths else set()
        lines.append(f"differential: system files every qemu-img command opened: {', '.join(sorted(common))}")
        for command in sorted(self.system_paths):
            extra = self.system_paths[command] - common
            if extra:
                lines.append(f"differential: ... and qemu-img {command} also: {', '.join(sorted(extra))}")
        return lines


def commands(path: str, fmt: str, dest: str, virtual_size: int | None) -> list[tuple[str, list[str], str | None]]:
    """The qemu-img commands the modules run on a source, built by the modules' own argv builders."""
    planned = [
        ("info", qemu_img.info_argv(path, fmt), None),
        ("info --backing-chain", qemu_img.info_argv(path, fmt, backing_chain=True), None),
        ("check", qemu_img.check_argv(path, fmt), None),
        ("measure", qemu_img.measure_argv(path, fmt, "qcow2"), None),
    ]
    if virtual_size is not None and virtual_size <= CONVERT_LIMIT:
        planned.append(("convert", qemu_img.convert_argv(path, fmt, dest, "qcow2"), dest))
    return planned


def plan(cases: list[Case], allowed: list[str], out_dir: str, results: Results) -> list[Job]:
    """Inspect every case under its true format, raw and no format; plan qemu-img for the safe ones."""
    jobs = []
    for case in cases:
        planned: set[str] = set()
        for declaration in dict.fromkeys((case.true_format, "raw", None)):
            vetting = vet_image(case.path, declaration, allowed)
            fmt = declaration or vetting.report.detected_format
            kind = "none" if declaration is None else "raw" if declaration == "raw" else "true format"
            results.verdicts[f"{kind} {'safe' if vetting.safe else 'refused'}"] += 1
            if not vetting.safe or fmt in planned:
                continue
            if fmt not in qemu_img.FORMATS:
                results.unknown_formats.append(f"{case.name} [{case.recipe}]: called safe as {fmt!r}, a format"
                                               " qemu does not know")
                continue
            planned.add(fmt)
            results.safe_formats[fmt] += 1
            dest = os.path.join(out_dir, f"{case.name}.{fmt}.qcow2")
            chain = {real for real, _fmt in vetting.chain}
            for command, argv, output in commands(case.path, fmt, dest, vetting.report.virtual_size):
                expected = {os.path.realpath(case.path)} | chain
                if output:
                    expected.add(os.path.realpath(output))
                jobs.append(Job(case, declaration, fmt, command, argv, vetting, frozenset(expected), output))
    return jobs


def execute(job: Job, trace_dir: str, index: int) -> Run:
    readable = [job.case.path] + [real for real, _fmt in job.vetting.chain]
    if job.dest:
        # As the modules do: the output exists before qemu-img runs, so that it may write that one file only.
        open(job.dest, "xb").close()
    run = run_traced(job.argv, os.path.join(trace_dir, f"{index}.trace"), trace_dir, readable,
                     [job.dest] if job.dest else [])
    if job.dest and os.path.exists(job.dest):
        os.unlink(job.dest)
    return run


def unpredicted_accesses(job: Job, run: Run, results: Results) -> list[str]:
    """Accesses outside the prediction: each a failure message with the image's recipe."""
    found = []
    for access in run.accesses:
        reason = system_reason(access.path)
        if reason is not None:
            results.system_paths[job.command].add(access.path)
            continue
        real = os.path.realpath(access.path) if access.path.startswith("/") else access.path
        if real in job.expected:
            if access.is_open:
                results.opens += 1
            else:
                results.path_calls += 1
            continue
        found.append(f"{job.describe()} called {access.syscall}({access.path!r}) -> {access.result}"
                     f" (resolved {real}), predicted only {sorted(job.expected)}")
    return found


def json_text(path: str) -> str:
    """A path as qemu's JSON output spells it: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def compare_json(job: Job, run: Run, results: Results) -> None:
    """qemu-img's virtual size and backing chain against the inspector's, when qemu could read the image."""
    if run.rc != 0 or job.command not in ("info", "info --backing-chain"):
        return
    data = json.loads(run.stdout)
    if job.command == "info":
        results.sizes_compared += 1
        if data.get("virtual-size") != job.vetting.report.virtual_size:
            results.size_mismatches.append(f"{job.describe()}: qemu says virtual size {data.get('virtual-size')},"
                                           f" the inspector {job.vetting.report.virtual_size}")
        return
    results.chains_compared += 1
    chain = [(os.path.realpath(item["filename"]), item["format"]) for item in data[1:]]
    if [(json_text(real), fmt) for real, fmt in chain] != [(json_text(real), fmt) for real, fmt in job.vetting.chain]:
        results.chain_mismatches.append(f"{job.describe()}: qemu opens the chain {chain}, the inspector predicted"
                                        f" {job.vetting.chain}")


def differential_run(cases: list[Case], allowed: list[str], work_dir: str, seed: int) -> Results:
    """Run the whole corpus; fills and returns the Results."""
    started = time.monotonic()
    results = Results(seed=seed, cases=len(cases))
    out_dir, trace_dir = os.path.join(work_dir, "out"), os.path.join(work_dir, "traces")
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(trace_dir, exist_ok=True)
    jobs = plan(cases, allowed, out_dir, results)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        runs: t.Iterator[Run] = pool.map(lambda pair: execute(pair[1], trace_dir, pair[0]), enumerate(jobs))
        for job, run in zip(jobs, runs):
            results.runs += 1
            if run.rc is None:
                results.timeouts.append(f"{job.describe()} ran longer than {COMMAND_TIMEOUT} s")
            elif run.rc != 0 and not (job.command == "check" and run.rc in qemu_img.CHECK_STATUS):
                results.qemu_failures += 1
            results.unpredicted.extend(unpredicted_accesses(job, run, results))
            compare_json(job, run, results)
    results.seconds = time.monotonic() - started
    return results
