# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""qemu-img under strace: the command line, and every file it tried to open.

"Tried to open" is every path-taking system call (strace's %file class plus openat2 and
open_by_handle_at), successful or not: a failed open of /etc/shadow is as much a leak of
the inspector's prediction as a successful one. Opens are counted apart from the other
path calls (stat, access, readlink) in the summary; both must be predicted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import typing as t
from dataclasses import dataclass, field

from ansible_collections.kvm.images.plugins.module_utils import confinement
from ansible_collections.kvm.images.plugins.module_utils.qemu_img import DEFAULT_LIMITS

STRACE = shutil.which("strace")
QEMU_IMG = shutil.which("qemu-img")
# Another qemu's root file system (the next generation's, say: a Debian 13 root built for the
# lab): its qemu-img then runs through its own loader and libraries, on this host's files.
QEMU_ROOT = os.environ.get("KVM_IMAGES_QEMU_ROOT", "").rstrip("/")
# qemu-img runs as the modules run it: through the confinement launcher, which lets it open only the image,
# its predicted chain and its output. An open it did not predict is then attempted and refused - and still
# recorded by strace, so the comparison is the same; a qemu of another root runs unconfined (the launcher
# allows this host's system directories, not that root's).
CONFINED = not QEMU_ROOT and os.environ.get("KVM_IMAGES_DIFFERENTIAL_UNCONFINED", "") != "1"
TRACED = "%file,openat2,open_by_handle_at"
OPEN_CALLS = frozenset({"open", "openat", "openat2", "creat", "open_by_handle_at"})
# System calls whose every string argument is a path (the others: only their first).
ALL_PATHS = frozenset({"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat"})
# As QemuImg._run sets it: the C locale, so no locale or gconv file is ever read.
ENVIRONMENT = {"LC_ALL": "C", "LANG": "C"}
# As long as the modules' CPU limit for qemu-img (DEFAULT_LIMITS.cpu_seconds).
COMMAND_TIMEOUT = 30

# What qemu-img opens on its own, whatever the image: its program files. Each is named
# exactly; none can be the target of an image under test (they name planted files).
ROOT = f"(?:{re.escape(QEMU_ROOT)})?" if QEMU_ROOT else ""
SYSTEM_FILES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(ROOT + r"/etc/ld\.so\.(cache|preload)"), "the dynamic loader's cache and preload list"),
    (re.compile(ROOT + r"/(usr/)?lib(64)?/([^/]+/)*[^/]+\.so(\.[0-9a-z]+)*"),
     "shared libraries, also looked for in glibc-hwcaps directories, and qemu's block modules"),
    (re.compile(ROOT + r"/(usr/)?lib(64)?/([^/]+/)*glibc-hwcaps/[^/]+/"),
     "the loader's glibc-hwcaps directories (looked for)"),
    (re.compile(re.escape(QEMU_ROOT) + r"/usr/bin/qemu-img"), "the program a loader started by hand opens"),
    (re.compile(r"/proc/sys/vm/max_map_count"), "glib (of qemu 10) reads the mapping limit"),
    (re.compile(r"/proc/self/status"), "glib's thread set-up reads the process status"),
    (re.compile(r"/proc/self/exe"), "qemu finds its own binary (to locate its module directory)"),
    (re.compile(r"/sys/devices/system/(node|node/node[0-9]+/meminfo|cpu/possible)"),
     "libnuma reads the NUMA layout and the possible CPUs"),
    (re.compile(r"/sys/devices/system/cpu/online"), "glib sizes its thread pool by the online CPUs"),
    (re.compile(r"/proc/stat"), "glib counts the CPUs there when the confinement refuses it /sys"),
    (re.compile(r"/dev/urandom"), "random seeds (glib, gnutls)"),
    (re.compile(r"/dev/null"), "qemu-img redirects stdin to /dev/null"),
    (re.compile(r"/etc/gnutls/config"), "gnutls's system-wide configuration (looked for; absent here)"),
)

LINE = re.compile(r"^(\d+) +([a-z0-9_]+)\((.*)$")
STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
DIRFD = re.compile(r"^(AT_FDCWD|-?[0-9]+), \"")
RESULT = re.compile(r"\) += (-?[0-9]+|\?)(?: ([A-Z0-9_]+))?")


@dataclass(frozen=True)
class Access:
    """One path-taking system call of the traced process."""

    syscall: str
    path: str
    result: str

    @property
    def is_open(self) -> bool:
        return self.syscall in OPEN_CALLS


@dataclass
class Run:
    """One traced qemu-img command and what it touched."""

    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    accesses: list[Access] = field(default_factory=list)


def qemu_command(qemu_args: list[str], readable: t.Sequence[str] = (), writable: t.Sequence[str] = ()) -> list[str]:
    """The qemu-img command line for ``qemu_args``, confined as QemuImg confines it: ``readable`` (the image and
    its vetted chain) read-only, ``writable`` (the destination, which must exist) read-write; metadata commands
    under the modules' resource limits."""
    command = [*qemu_program(), *qemu_args]
    if not CONFINED:
        return command
    limits = confinement.Limits() if qemu_args[0] == "convert" else DEFAULT_LIMITS
    return confinement.launcher_argv(sys.executable, command, confinement.Access(tuple(readable), tuple(writable)),
                                     limits)


def qemu_program() -> list[str]:
    """qemu-img itself: this host's, or the one of QEMU_ROOT through that root's loader."""
    if QEMU_ROOT:
        libraries = f"{QEMU_ROOT}/lib/x86_64-linux-gnu:{QEMU_ROOT}/usr/lib/x86_64-linux-gnu"
        return [f"{QEMU_ROOT}/lib64/ld-linux-x86-64.so.2", "--library-path", libraries, f"{QEMU_ROOT}/usr/bin/qemu-img"]
    assert QEMU_IMG, "qemu-img is not installed"
    return [QEMU_IMG]


def traced_command(command: list[str], trace_file: str) -> list[str]:
    """``command`` under strace, following every thread and child, strings in hex."""
    assert STRACE, "strace is not installed (tools/setup-host.sh installs it)"
    return [STRACE, "-f", "-qq", "-xx", "-s", "16384", "--seccomp-bpf", "-e", f"trace={TRACED}",
            "-o", trace_file, "--", *command]


def decode(hex_string: str) -> str:
    """A strace -xx string ("\\x2f\\x65...") back to the path it was, bytes kept."""
    return os.fsdecode(bytes.fromhex(hex_string.replace("\\x", "")))


def parse_trace(text: str, cwd: str) -> list[Access]:
    """Every path the traced process passed to a path-taking system call."""
    accesses = []
    for line in text.splitlines():
        match = LINE.match(line)
        if not match:
            continue  # "<... resumed>" halves and exit notices carry no new path
        syscall, args = match.group(2), match.group(3)
        strings = STRING.findall(args)
        if not strings:
            continue
        results = RESULT.findall(args)
        outcome = " ".join(part for part in results[-1] if part) if results else "unfinished"
        dirfd = DIRFD.match(args)
        for raw in strings if syscall in ALL_PATHS else strings[:1]:
            path = decode(raw)
            if not path:
                continue  # an operation on an open descriptor (AT_EMPTY_PATH)
            if not path.startswith("/"):
                if dirfd and dirfd.group(1) != "AT_FDCWD":
                    path = f"<descriptor {dirfd.group(1)}>/{path}"
                else:
                    path = os.path.join(cwd, path)
            accesses.append(Access(syscall, path, outcome))
    return accesses


def system_reason(path: str) -> str | None:
    """Why qemu-img opens ``path`` on its own, or None when it is not one of its program files."""
    for pattern, reason in SYSTEM_FILES:
        if pattern.fullmatch(path):
            return reason
    return None


def run_traced(qemu_args: list[str], trace_file: str, cwd: str, readable: t.Sequence[str] = (),
               writable: t.Sequence[str] = ()) -> Run:
    """Run qemu-img under strace in ``cwd``; the trace file is removed afterwards.

    A run past COMMAND_TIMEOUT is killed with its whole process group (strace leaves a
    killed tracer's tracees running) and reported with rc None.
    """
    command = qemu_command(qemu_args, readable, writable)
    environment = dict(os.environ, **ENVIRONMENT, **confinement.launcher_environment())
    process = subprocess.Popen(traced_command(command, trace_file), cwd=cwd, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        rc: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        rc = None
    try:
        with open(trace_file, encoding="ascii", errors="replace") as trace:
            accesses = parse_trace(trace.read(), cwd)
    finally:
        if os.path.exists(trace_file):
            os.unlink(trace_file)
    # What came before qemu-img began is strace starting it, or the launcher confining itself.
    program = qemu_program()[0]
    started = next((index for index, access in enumerate(accesses)
                    if access.syscall == "execve" and access.path == program), None)
    if started is not None:
        accesses = accesses[started + 1:]
    # qemu-img writes file names as they are, bytes and all.
    return Run(qemu_args, rc, out.decode(errors="surrogateescape"), err.decode(errors="surrogateescape"), accesses)
