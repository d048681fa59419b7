# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A new file appears whole or not at all (private to kvm.images).

The temp file lives beside the destination, so the final rename never turns
into a copy across file systems, and carries a recognisable name, so a later
run can remove what an interrupted one left behind.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import typing as t

TEMP_MARK = ".kvm-images-tmp-"
LIVE_COPY_MARK = ".kvm-images-copy"


def temp_prefix(dest: str) -> str:
    return "." + os.path.basename(dest) + TEMP_MARK


def live_copy_marker(dest: str) -> str:
    """Beside a destination a live block copy writes into directly (no temp file): while it is there,
    the destination is unfinished, whatever its header says."""
    return os.path.join(os.path.dirname(dest), "." + os.path.basename(dest) + LIVE_COPY_MARK)


def claim_marker(path: str, content: str) -> int:
    """Create or take over ``path`` and hold an exclusive flock on it while the returned fd is open.

    The flock dies with its process, so a marker left by a killed run is free to take, while
    one whose process lives on (an orphaned module of an interrupted run) raises BlockingIOError.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.lstat(path).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, content.encode("utf-8"))
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        # Its holder removed it between our open and our lock: claim the path afresh.
        os.close(fd)


def marker_holder(path: str) -> str | None:
    """What a live process holding the marker wrote in it (its pid first); None when no process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
    finally:
        os.close(fd)
    return None


def make_temp(dest: str) -> str:
    fd, path = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=temp_prefix(dest))
    os.close(fd)
    return path


def leftovers(dest: str) -> list[str]:
    """Temp files an interrupted run left for this destination (regular files only)."""
    directory = os.path.dirname(dest)
    prefix = temp_prefix(dest)
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if name.startswith(prefix) and stat.S_ISREG(os.lstat(path).st_mode):
            found.append(path)
    return found


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def commit(temp: str, dest: str) -> None:
    """Rename into place, then make the rename itself durable."""
    os.replace(temp, dest)
    fsync_dir(os.path.dirname(dest))


def write_whole(path: str, text: str, mode: int = 0o644) -> None:
    """``path`` holds ``text`` whole, or what it held before: written beside it, synced, renamed."""
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=temp_prefix(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        commit(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise


def identity(path: str) -> tuple[int, ...] | None:
    """Enough to tell that a path now names another file, or the same one rewritten; None when absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (hard link, bind mount, ``..`` tricks)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def copy_attributes(module: t.Any, src: str, path: str, owner: str | None, group: str | None,
                    mode: str | None) -> None:
    """Owner, group, mode and SELinux label of ``src`` on ``path``, unless given."""
    info = os.stat(src)
    os.chown(path, info.st_uid, info.st_gid)
    os.chmod(path, stat.S_IMODE(info.st_mode))
    if module.selinux_enabled():
        module.set_context_if_different(path, module.selinux_context(src), False)
    if owner is not None:
        module.set_owner_if_different(path, owner, False)
    if group is not None:
        module.set_group_if_different(path, group, False)
    if mode is not None:
        module.set_mode_if_different(path, mode, False)
