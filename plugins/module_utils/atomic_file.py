# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A new file appears whole or not at all (private to kvm.images).

The temp file lives beside the destination, so the final rename never turns
into a copy across file systems, and carries a recognisable name, so a later
run can remove what an interrupted one left behind.
"""

from __future__ import annotations

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
