# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel-enforced confinement of qemu-img: what a module asks for (private to kvm.images).

The header inspector decides which files an image may make qemu-img read; the
kernel holds qemu-img to that decision. Every qemu-img runs through a small
launcher (confined_exec.py, run as ``python -m`` from the module's own payload)
that, before it executes qemu-img, sets the resource limits of commands that
parse guest-controlled metadata, restricts the file system with Landlock - the
image and its vetted backing files read-only, the one file it is to produce
read-write, the system's program and library directories, nothing else (a
symbolic link is judged by the file it leads to) - and denies, with a seccomp
filter, every socket and io_uring instance, so no protocol driver (nbd, ssh,
http, a unix socket) reaches anything either.

Landlock only ever removes rights, needs no privilege and no new package, and is
in every kernel since 5.13 that lists it among its security modules (Debian 12
and 13 do). Where the kernel lacks it, qemu-img is not run unless the user opted out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.kvm.images.plugins.module_utils import confined_exec

ENABLED = "landlock"
DISABLED = "disabled"
MODES = (ENABLED, DISABLED)
LAUNCHER_MODULE = "ansible_collections.kvm.images.plugins.module_utils.confined_exec"


@dataclass(frozen=True)
class Access:
    """The files one qemu-img run may open: ``reads`` read-only, ``writes`` read-write (they must exist)."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; None leaves a limit as it is."""

    address_space: int | None = None
    cpu_seconds: int | None = None


def unavailable_reason() -> str | None:
    """Why qemu-img cannot be confined on this host, or None when it can."""
    machine = confined_exec.machine()
    if machine not in confined_exec.SECCOMP_ARCHES:
        return f"confinement is not supported on {machine} (only {', '.join(confined_exec.SECCOMP_ARCHES)})"
    if confined_exec.landlock_abi() < 1:
        return ("the kernel offers no Landlock (it needs Linux 5.13 or newer with landlock among its security"
                " modules, see /sys/kernel/security/lsm and the lsm= boot parameter)")
    return None


def payload_root() -> str:
    """The directory (or the zip file of an Ansible module's payload) that holds ``ansible_collections``."""
    path = os.path.abspath(confined_exec.__file__)
    for _level in LAUNCHER_MODULE.split("."):
        path = os.path.dirname(path)
    return path


def launcher_argv(python: str, command: list[str], access: Access | None, limits: Limits) -> list[str]:
    """The argv that runs ``command`` confined to ``access`` (None: only limited, the opt-out) and limited."""
    argv = [python, "-s", "-S", "-m", LAUNCHER_MODULE]
    if access is None:
        argv.append("--unconfined")
    else:
        for path in access.reads:
            argv += ["--read", path]
        for path in access.writes:
            argv += ["--write", path]
    if limits.address_space is not None:
        argv += ["--address-space", str(int(limits.address_space))]
    if limits.cpu_seconds is not None:
        argv += ["--cpu-seconds", str(int(limits.cpu_seconds))]
    return argv + ["--"] + command


def launcher_environment() -> dict[str, str]:
    """``-m`` finds the launcher where this module was loaded from."""
    return {"PYTHONPATH": payload_root()}


def launcher_failure(rc: int, stderr: str) -> str | None:
    """The launcher's reason when it could not confine (and ran nothing), else None."""
    if rc != confined_exec.CONFINEMENT_FAILED or confined_exec.FAILURE_PREFIX not in stderr:
        return None
    return stderr.split(confined_exec.FAILURE_PREFIX, 1)[1].strip().splitlines()[0]
