# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Many offline conversions in one module run: several at once, within a change window (private to kvm.images)."""

from __future__ import annotations

import threading
import time
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.image_convert import (
    Converter,
    Prepared,
    Request,
    execute,
    predicted,
    prepare,
    space_shortfalls,
)
from ansible_collections.kvm.images.plugins.module_utils.progress import Progress
from ansible_collections.kvm.images.plugins.module_utils.schedule import Schedule


class Throughput:
    """Bytes and seconds of the conversions finished so far, from every worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.seconds = 0.0

    def add(self, size: int, seconds: float) -> None:
        with self.lock:
            self.bytes += size
            self.seconds += seconds

    def rate(self) -> float | None:
        with self.lock:
            return self.bytes / self.seconds if self.seconds > 0 and self.bytes > 0 else None


def failure(request: Request, exc: Exception, dest: str | None = None) -> dict[str, t.Any]:
    """The result of one image that failed; the others go on."""
    dest = dest or request.dest
    if isinstance(exc, KvmImagesError):
        return dict(exc.details, src=request.src, dest=dest, changed=False, failed=True, msg=exc.msg)
    return {"src": request.src, "dest": dest, "changed": False, "failed": True,
            "msg": f"conversion of {request.src} failed: {exc}; nothing was renamed"}


def convert_all(converter: Converter, requests: list[Request], *, parallel: int, check_mode: bool, diff: bool,
                schedule: Schedule, owner: str | None = None, group: str | None = None, mode: str | None = None,
                progress: Progress | None = None,
                clock: t.Callable[[], float] = time.time) -> list[dict[str, t.Any]]:
    """Every request decided and checked first, the space of each file system added up, then (outside check
    mode) up to ``parallel`` conversions at once. A conversion that would end after the deadline is not started.
    One result per request, in order; a failed one carries ``failed`` and ``msg`` and fails alone."""
    results: list[dict[str, t.Any] | None] = [None] * len(requests)
    items: dict[int, Prepared] = {}
    for index, request in enumerate(requests):
        try:
            items[index] = prepare(converter, request, check_mode=check_mode, diff=diff)
        except (KvmImagesError, OSError) as exc:
            results[index] = failure(request, exc)
    prepared = sorted(items)
    for position, reason in space_shortfalls([items[index] for index in prepared]).items():
        index = prepared[position]
        results[index] = dict(failure(requests[index], KvmImagesError(reason), items[index].decision.dest),
                              required=items[index].required)
        del items[index]
    if check_mode:
        for index, item in items.items():
            results[index] = predicted(item)
        return t.cast(list, results)
    Workers(converter, items, results, schedule, (owner, group, mode), progress, clock).run(parallel)
    return t.cast(list, results)


class Workers:
    """Threads that take the next conversion off a shared queue until it is empty or the run stops."""

    def __init__(self, converter: Converter, items: dict[int, Prepared], results: list[dict[str, t.Any] | None],
                 schedule: Schedule, attributes: tuple[str | None, str | None, str | None],
                 progress: Progress | None, clock: t.Callable[[], float]) -> None:
        self.converter = converter
        self.items = items
        self.results = results
        self.schedule = schedule
        self.attributes = attributes
        self.progress = progress
        self.clock = clock
        self.queue = sorted(items)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.throughput = Throughput()

    def next_index(self) -> int | None:
        with self.lock:
            if self.stopped.is_set() or not self.queue:
                return None
            return self.queue.pop(0)

    def work(self) -> None:
        while True:
            index = self.next_index()
            if index is None:
                return
            item = self.items[index]
            reason = item.decision.convert and self.schedule.deferral(
                item.expected_bytes, self.throughput.rate(), self.clock())
            if reason:
                self.results[index] = dict(item.result, changed=False, deferred=True, reason=reason)
                continue
            try:
                result = execute(self.converter, item, *self.attributes, progress=self.progress)
            except (KvmImagesError, OSError) as exc:
                self.results[index] = failure(item.request, exc, item.decision.dest)
                continue
            if item.decision.convert:
                self.throughput.add(item.expected_bytes, result["duration_s"])
            self.results[index] = result

    def run(self, parallel: int) -> None:
        threads = [threading.Thread(target=self.work, name=f"kvm-images-convert-{number}", daemon=True)
                   for number in range(max(1, min(parallel, len(self.queue))))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                # A timeout keeps the main thread responsive to SIGTERM, which is raised only there.
                while thread.is_alive():
                    thread.join(timeout=0.5)
        except BaseException:
            # Interrupted: start nothing more; what runs is cleaned up with the module's temp files.
            self.stopped.set()
            raise
