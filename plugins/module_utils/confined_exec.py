# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The launcher that confines qemu-img, then becomes it (private to kvm.images).

Run as ``python -s -S -m <this module> [--read PATH]... [--write PATH]... [--address-space BYTES]
[--cpu-seconds N] [--unconfined] -- PROGRAM ARGS...``; confinement.py builds that argv. Before it executes
PROGRAM it sets the resource limits, restricts the file system with Landlock to the paths given (read-only,
or read-write for files that exist) plus the system's program and library directories, and denies every
socket and io_uring instance with seccomp. It runs once per qemu-img call, so it imports nothing but the
standard library modules it needs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import stat
import struct
import sys

# The launcher exits with this and a line starting with FAILURE_PREFIX when it
# cannot confine; qemu-img itself never exits with it.
CONFINEMENT_FAILED = 121
FAILURE_PREFIX = "kvm.images confinement: "

# What the dynamic loader and qemu-img's libraries read: programs, libraries and
# their configuration. None of it is the host's data.
SYSTEM_DIRECTORIES = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/gnutls", "/etc/crypto-policies")
# QEMU probes OFD lock support on /dev/null and seeds from /dev/urandom.
DEVICES_READ_WRITE = ("/dev/null",)
DEVICES_READ = ("/dev/urandom", "/dev/random")

# Landlock (include/uapi/linux/landlock.h).
SYS_LANDLOCK_CREATE_RULESET = {"x86_64": 444, "aarch64": 444}
SYS_LANDLOCK_ADD_RULE = {"x86_64": 445, "aarch64": 445}
SYS_LANDLOCK_RESTRICT_SELF = {"x86_64": 446, "aarch64": 446}
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_TRUNCATE = 1 << 14
FS_IOCTL_DEV = 1 << 15
# Every file system right each ABI version knows; all of them are handled, so
# whatever a rule does not grant is denied.
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# seccomp (include/uapi/linux/seccomp.h, filter.h, audit.h).
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_RET_K = 0x06
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
X32_SYSCALL_BIT = 0x40000000
# machine: (audit arch, syscalls denied: socket, io_uring_setup).
SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, (41, 425)),
    "aarch64": (0xC00000B7, (198, 425)),
}


class LaunchRequest:
    """What the launcher was asked: the paths to allow (None: unconfined), the limits, the command."""

    def __init__(self, reads: tuple[str, ...] | None, writes: tuple[str, ...], address_space: int | None,
                 cpu_seconds: int | None, command: list[str]) -> None:
        self.reads = reads
        self.writes = writes
        self.address_space = address_space
        self.cpu_seconds = cpu_seconds
        self.command = command

    @property
    def confined(self) -> bool:
        return self.reads is not None


def machine() -> str:
    return os.uname().machine


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The Landlock ABI version the running kernel offers; 0 when it offers none."""
    number = SYS_LANDLOCK_CREATE_RULESET.get(machine())
    if number is None:
        return 0
    version = _libc().syscall(number, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def parse_request(args: list[str]) -> LaunchRequest:
    """The launcher's own arguments, up to ``--``; the rest is the command."""
    reads: list[str] = []
    writes: list[str] = []
    limits: dict[str, int] = {}
    confined = True
    index = 0
    while index < len(args) and args[index] != "--":
        option = args[index]
        if option == "--unconfined":
            confined = False
            index += 1
            continue
        if index + 1 >= len(args):
            raise ValueError(f"{option} needs a value")
        value = args[index + 1]
        if option == "--read":
            reads.append(value)
        elif option == "--write":
            writes.append(value)
        elif option == "--address-space":
            limits["address_space"] = int(value)
        elif option == "--cpu-seconds":
            limits["cpu_seconds"] = int(value)
        else:
            raise ValueError(f"unknown option {option}")
        index += 2
    command = args[index + 1:]
    if not command or not command[0].startswith("/"):
        raise ValueError("the command must follow -- with an absolute program path")
    if not confined and (reads or writes):
        raise ValueError("--unconfined takes no --read or --write")
    return LaunchRequest(tuple(reads) if confined else None, tuple(writes), limits.get("address_space"),
                         limits.get("cpu_seconds"), command)


def apply_limits(request: LaunchRequest) -> None:
    if request.address_space is not None:
        resource.setrlimit(resource.RLIMIT_AS, (request.address_space, request.address_space))
    if request.cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (request.cpu_seconds, request.cpu_seconds))


def handled_rights(abi: int) -> tuple[int, int, int]:
    """(file system, network, scope) rights the ruleset handles: every one the ABI knows."""
    fs_rights = FS_RIGHTS_BY_ABI[min(abi, max(FS_RIGHTS_BY_ABI))]
    net_rights = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scopes = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return fs_rights, net_rights, scopes


def ruleset_attr(abi: int) -> bytes:
    """struct landlock_ruleset_attr, as long as this ABI knows it."""
    fs_rights, net_rights, scopes = handled_rights(abi)
    if abi >= 6:
        return struct.pack("=QQQ", fs_rights, net_rights, scopes)
    if abi >= 4:
        return struct.pack("=QQ", fs_rights, net_rights)
    return struct.pack("=Q", fs_rights)


def path_rules(reads: tuple[str, ...], writes: tuple[str, ...], program: str, abi: int) -> list[tuple[str, int]]:
    """(path, rights) for every rule: system directories, devices, the program, the access asked for."""
    fs_rights = handled_rights(abi)[0]
    read_only = FS_READ_FILE
    read_write = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
    rules = [(path, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR) for path in SYSTEM_DIRECTORIES]
    rules += [(path, FS_READ_FILE | FS_READ_DIR) for path in SYSTEM_FILES]
    rules += [(path, read_write) for path in DEVICES_READ_WRITE]
    rules += [(path, read_only) for path in DEVICES_READ]
    rules.append((program, FS_EXECUTE | FS_READ_FILE))
    # An image may be a block device: qemu asks it for its size with an ioctl.
    rules += [(path, read_only | FS_IOCTL_DEV) for path in reads]
    rules += [(path, read_write) for path in writes]
    return [(path, rights & fs_rights) for path, rights in rules]


def _fail(message: str) -> None:
    """Say why on stderr and exit with CONFINEMENT_FAILED: nothing was executed."""
    sys.stderr.write(FAILURE_PREFIX + message + "\n")
    sys.stderr.flush()
    os._exit(CONFINEMENT_FAILED)


def restrict_files(reads: tuple[str, ...], writes: tuple[str, ...], program: str) -> None:
    """Landlock: from here on, this process and what it executes open only what the rules allow."""
    abi = landlock_abi()
    if abi < 1:
        _fail("the kernel offers no Landlock; qemu-img was not run")
    libc = _libc()
    arch = machine()
    attr = ruleset_attr(abi)
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET[arch], ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        _fail(f"cannot create a Landlock ruleset: {os.strerror(ctypes.get_errno())}")
    for path, rights in path_rules(reads, writes, program, abi):
        add_rule(libc, arch, int(ruleset), path, rights)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _fail(f"cannot set no_new_privs: {os.strerror(ctypes.get_errno())}")
    if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF[arch], ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
        _fail(f"cannot enforce the Landlock ruleset: {os.strerror(ctypes.get_errno())}")
    os.close(ruleset)


def add_rule(libc: ctypes.CDLL, arch: str, ruleset: int, path: str, rights: int) -> None:
    """Allow ``rights`` beneath ``path`` (on the file itself when it is no directory)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        # A system entry this host lacks (/lib32, /etc/gnutls) needs no rule; a path asked for must exist.
        if path in SYSTEM_DIRECTORIES + SYSTEM_FILES + DEVICES_READ:
            return
        _fail(f"{path} does not exist; qemu-img was not run")
    except OSError as exc:
        _fail(f"cannot open {path}: {exc.strerror}; qemu-img was not run")
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        attr = struct.pack("=Qi", rights, fd)
        if libc.syscall(SYS_LANDLOCK_ADD_RULE[arch], ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                        ctypes.c_char_p(attr), ctypes.c_uint32(0)) != 0:
            _fail(f"cannot allow {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def socket_filter(arch: str) -> list[tuple[int, int, int, int]]:
    """A seccomp program: socket() and io_uring_setup() fail with EACCES, as does any foreign or x32 call."""
    audit_arch, denied = SECCOMP_ARCHES[arch]
    refuse = SECCOMP_RET_ERRNO | errno.EACCES
    program = [
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, 1, 0, audit_arch),
        (BPF_RET_K, 0, 0, refuse),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        (BPF_JGE_K, len(denied) + 1, 0, X32_SYSCALL_BIT),
    ]
    for position, number in enumerate(denied):
        # Jump to the refusal just after the list when it matches.
        program.append((BPF_JEQ_K, len(denied) - position, 0, number))
    program += [(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), (BPF_RET_K, 0, 0, refuse)]
    return program


def forbid_sockets() -> None:
    arch = machine()
    if arch not in SECCOMP_ARCHES:
        _fail(f"no seccomp filter for {arch}; qemu-img was not run")
    program = socket_filter(arch)
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    filters = ctypes.create_string_buffer(code)
    fprog = struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(filters))
    libc = _libc()
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        _fail(f"cannot install the seccomp filter: {os.strerror(ctypes.get_errno())}")


def main(args: list[str] | None = None) -> None:
    """Launcher: confine this process, then become the command."""
    try:
        request = parse_request(sys.argv[1:] if args is None else args)
    except ValueError as exc:
        _fail(f"bad launcher arguments: {exc}")
    try:
        apply_limits(request)
    except (OSError, ValueError) as exc:
        _fail(f"cannot set resource limits: {exc}")
    if request.confined:
        restrict_files(request.reads, request.writes, request.command[0])
        forbid_sockets()
    os.environ.pop("PYTHONPATH", None)
    try:
        os.execv(request.command[0], request.command)
    except OSError as exc:
        _fail(f"cannot execute {request.command[0]}: {exc.strerror}")


if __name__ == "__main__":
    main()
