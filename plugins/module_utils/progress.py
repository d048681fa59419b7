# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How far a long task has come, kept in a small JSON file that the task's action plugin reads while the
module runs and turns into progress lines in the play's output (private to kvm.images)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import typing as t


class Progress:
    """Items (one per disk) with their bytes done and to do; written to ``path`` at most every ``every`` s.

    ``path`` None keeps the bookkeeping (the results' throughput) and writes nothing. Thread-safe: parallel
    conversions report into one Progress.
    """

    def __init__(self, path: str | None, *, every: float = 1.0, clock: t.Callable[[], float] = time.time) -> None:
        self.path = path
        self.every = every
        self.clock = clock
        self.items: dict[str, dict[str, t.Any]] = {}
        self.samplers: dict[str, t.Callable[[], int]] = {}
        self.lock = threading.Lock()
        self.written = 0.0
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, key: str, label: str, total: int, mode: str, sampler: t.Callable[[], int] | None = None) -> None:
        """``key`` begins: ``total`` bytes to move; ``sampler`` tells how many are done, when asked."""
        with self.lock:
            self.items[key] = {"label": label, "mode": mode, "phase": "copying", "done": 0, "total": int(total),
                               "started": self.clock(), "updated": self.clock()}
            if sampler is not None:
                self.samplers[key] = sampler
        self.write()

    def update(self, key: str, done: int | None = None, total: int | None = None, **fields: t.Any) -> None:
        with self.lock:
            item = self.items.get(key)
            if item is None:
                return
            if done is not None:
                item["done"] = int(done)
            if total is not None:
                item["total"] = int(total)
            item.update(fields, updated=self.clock())
        self.write()

    def finish(self, key: str, phase: str) -> None:
        """``phase``: done, failed or deferred."""
        with self.lock:
            self.samplers.pop(key, None)
            item = self.items.get(key)
            if item is not None:
                if phase == "done":
                    item["done"] = item["total"]
                item.update(phase=phase, updated=self.clock())
        self.write(force=True)

    def sample(self) -> None:
        """Ask every sampler how far its item has come."""
        with self.lock:
            samplers = list(self.samplers.items())
        for key, sampler in samplers:
            try:
                done = sampler()
            except OSError:
                continue
            with self.lock:
                item = self.items.get(key)
                if item is not None and item["phase"] == "copying":
                    item.update(done=min(int(done), item["total"]), updated=self.clock())

    def snapshot(self) -> list[dict[str, t.Any]]:
        with self.lock:
            return [dict(item) for item in self.items.values()]

    def write(self, force: bool = False) -> None:
        """Replace the file in one rename, so that a reader never sees half of it."""
        if self.path is None:
            return
        now = self.clock()
        with self.lock:
            if not force and now - self.written < self.every:
                return
            self.written = now
            data = json.dumps({"updated": now, "items": list(self.items.values())})
        directory = os.path.dirname(self.path) or "."
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".progress-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(temp, self.path)
        except OSError:
            # Progress is a courtesy: never fail the work for it.
            try:
                os.unlink(temp)
            except OSError:
                pass

    def run_sampler(self, interval: float = 1.0) -> None:
        """Sample and write every ``interval`` s in a thread of its own, until ``close``; without a file
        nobody reads the samples, so no thread."""
        if self.path is None:
            return

        def loop() -> None:
            while not self.stopped.wait(interval):
                self.sample()
                self.write(force=True)
        self.thread = threading.Thread(target=loop, name="kvm-images-progress", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def allocated_bytes(path: str) -> int:
    """Bytes a (sparse) file takes on disk: how much of a new image has been written."""
    return os.stat(path).st_blocks * 512
