# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A lock file that keeps two runs from converting disks on one hypervisor at once (private to kvm.images)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
import typing as t
from contextlib import contextmanager

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError


def read_holder(path: str) -> dict[str, t.Any] | None:
    """The lock's content, None when there is no lock; an unreadable lock counts as held."""
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"owner": "unknown (unreadable lock file)", "since": os.stat(path).st_mtime}
    return holder if isinstance(holder, dict) else {"owner": "unknown", "since": 0}


def try_create(path: str, owner: str, now: float, process: dict[str, t.Any] | None = None) -> bool:
    """Create the lock atomically; False when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise KvmImagesError(f"cannot create the lock {path}: {exc.strerror}", path=path) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"owner": owner, "since": now, "process": process}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


@contextmanager
def directory_locked(path: str) -> t.Iterator[None]:
    """Two runs taking over the same dead lock must not both believe they won."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_action(holder: dict[str, t.Any] | None, owner: str, now: float, stale_after: float,
                take_over: str | None) -> str:
    """What taking the lock means now: ``held`` (ours already), ``create`` (free), ``take_over`` (left by a
    killed run: older than ``stale_after`` s, or held by ``take_over``, a run known to be dead), or ``wait``."""
    if holder is None:
        return "create"
    if holder.get("owner") == owner:
        return "held"
    age = now - float(holder.get("since", 0))
    if age > stale_after or (take_over is not None and holder.get("owner") == take_over):
        return "take_over"
    return "wait"


class HostLock:
    """The lock at ``path`` for the run ``owner``; decides, then (when ``apply``) acts - check mode applies the
    same rules and changes nothing."""

    def __init__(self, path: str, owner: str, *, process: dict[str, t.Any] | None = None,
                 clock: t.Callable[[], float] = time.time,
                 sleep: t.Callable[[float], None] = time.sleep, poll_interval: float = 1.0) -> None:
        self.path = path
        self.owner = owner
        self.process = process
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval

    def acquire(self, wait_timeout: float, stale_after: float, take_over: str | None = None, *,
                apply: bool = True) -> dict[str, t.Any]:
        """Take the lock, waiting up to ``wait_timeout`` s for another run to release it.

        A lock older than ``stale_after`` s is taken over: its run was killed before it could release it (an
        async timeout or a kill -9 runs no cleanup). So is a lock held by ``take_over``. Without ``apply``, the
        answer a real run would start from, and nothing written; a lock another live run holds is a failure,
        as it is for a real run once ``wait_timeout`` has passed.
        """
        started = self.clock()
        while True:
            holder = read_holder(self.path)
            action = lock_action(holder, self.owner, self.clock(), stale_after, take_over)
            if action == "held":
                return {"changed": False, "taken_over": None}
            if action in ("create", "take_over") and not apply:
                return {"changed": True, "taken_over": holder if action == "take_over" else None}
            if action == "create":
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
                if try_create(self.path, self.owner, self.clock(), self.process):
                    return {"changed": True, "taken_over": None}
                continue
            if action == "take_over":
                if self.replace(holder):
                    return {"changed": True, "taken_over": holder}
                continue
            waited = self.clock() - started
            if not apply or waited >= wait_timeout:
                raise self.busy(holder, wait_timeout if apply else 0)
            self.sleep(self.poll_interval)

    def busy(self, holder: dict[str, t.Any], waited: float) -> KvmImagesError:
        age = self.clock() - float(holder.get("since", 0))
        return KvmImagesError(
            f"another run ({holder.get('owner')}, for {age:.0f} s) holds the lock {self.path};"
            f" waited {waited:g} s and changed nothing. If that run is dead, remove {self.path}.",
            path=self.path, holder=holder)

    def replace(self, holder: dict[str, t.Any]) -> bool:
        """Our lock in place of ``holder``'s, if it still holds it; False when another run came first."""
        with directory_locked(self.path):
            if read_holder(self.path) != holder:
                return False
            os.unlink(self.path)
            return try_create(self.path, self.owner, self.clock(), self.process)

    def release(self, *, apply: bool = True) -> dict[str, t.Any]:
        holder = read_holder(self.path)
        if holder is None:
            return {"changed": False}
        if holder.get("owner") != self.owner:
            raise KvmImagesError(f"the lock {self.path} is held by {holder.get('owner')}, not by this run;"
                                 " left in place", path=self.path, holder=holder)
        if apply:
            os.unlink(self.path)
        return {"changed": True}
