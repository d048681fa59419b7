# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The confinement of qemu-img: its launcher's arguments and rules, and what the kernel then lets qemu-img do.

The last group runs the real launcher and the real qemu-img on this host's kernel: an image naming a host
file (as a backing file, a data file, through a link, a json: or network name) is refused by the kernel,
while the same call allowed that file reads it - so each test could fail.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys

import pytest

from ansible_collections.kvm.images.plugins.module_utils import confined_exec, confinement
from ansible_collections.kvm.images.plugins.module_utils.confined_exec import (
    parse_request,
    path_rules,
    ruleset_attr,
    socket_filter,
)
from ansible_collections.kvm.images.plugins.module_utils.confinement import Access, Limits, launcher_argv

QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
SECRET = b"kvm-images-host-secret-0123456789\n"


# --- the launcher's arguments -------------------------------------------------------------------------------

def test_arguments_round_trip_through_the_launcher():
    access = Access(reads=("/i/a b.qcow2", "/i/\udcffbase.raw"), writes=("/i/.new --read x",))
    argv = launcher_argv("/usr/bin/python3", ["/usr/bin/qemu-img", "info", "--", "-x"], access,
                         Limits(address_space=1 << 30, cpu_seconds=30))
    assert argv[:5] == ["/usr/bin/python3", "-s", "-S", "-m", confinement.LAUNCHER_MODULE]
    request = parse_request(argv[5:])
    assert (request.reads, request.writes) == (access.reads, access.writes)
    assert (request.address_space, request.cpu_seconds) == (1 << 30, 30)
    assert request.command == ["/usr/bin/qemu-img", "info", "--", "-x"]


def test_unconfined_takes_limits_only():
    request = parse_request(launcher_argv("/p", ["/usr/bin/qemu-img"], None, Limits(cpu_seconds=5))[5:])
    assert not request.confined
    assert (request.address_space, request.cpu_seconds) == (None, 5)


@pytest.mark.parametrize("args, message", [
    (["--read"], "--read needs a value"),
    (["--bogus", "x", "--", "/bin/true"], "unknown option --bogus"),
    (["--read", "/a"], "the command must follow --"),
    (["--", "qemu-img"], "absolute program path"),
    (["--unconfined", "--read", "/a", "--", "/bin/true"], "--unconfined takes no --read"),
], ids=["no-value", "unknown", "no-command", "relative", "unconfined-with-paths"])
def test_bad_launcher_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        parse_request(args)


# --- the rules ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("abi, length", [(1, 8), (2, 8), (3, 8), (4, 16), (5, 16), (6, 24), (7, 24)])
def test_ruleset_handles_every_right_the_abi_knows(abi, length):
    attr = ruleset_attr(abi)
    assert len(attr) == length
    fs_rights = struct.unpack_from("=Q", attr)[0]
    assert fs_rights == confined_exec.FS_RIGHTS_BY_ABI[min(abi, 5)]
    if abi >= 4:
        assert struct.unpack_from("=Q", attr, 8)[0] == confined_exec.NET_BIND_TCP | confined_exec.NET_CONNECT_TCP


def test_rules_grant_the_image_read_and_the_destination_write_only():
    rules = dict(path_rules(("/i/a.qcow2",), ("/i/.b.tmp",), "/usr/bin/qemu-img", abi=3))
    assert rules["/i/a.qcow2"] == confined_exec.FS_READ_FILE
    assert rules["/i/.b.tmp"] == confined_exec.FS_READ_FILE | confined_exec.FS_WRITE_FILE | confined_exec.FS_TRUNCATE
    assert rules["/usr/bin/qemu-img"] == confined_exec.FS_EXECUTE | confined_exec.FS_READ_FILE
    # Nothing else of the host but programs, libraries, their configuration and two devices.
    others = set(rules) - {"/i/a.qcow2", "/i/.b.tmp", "/usr/bin/qemu-img"}
    assert others == set(confined_exec.SYSTEM_DIRECTORIES + confined_exec.SYSTEM_FILES
                         + confined_exec.DEVICES_READ_WRITE + confined_exec.DEVICES_READ)
    assert not any(rights & confined_exec.FS_WRITE_FILE for path, rights in rules.items()
                   if path not in ("/i/.b.tmp", "/dev/null"))


def run_filter(program, arch, number):
    """A small interpreter of the classic BPF subset the filter uses."""
    data = struct.pack("=iI", number, arch)
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == confined_exec.BPF_LD_W_ABS:
            accumulator = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == confined_exec.BPF_JEQ_K:
            pc += 1 + (jt if accumulator == k else jf)
        elif code == confined_exec.BPF_JGE_K:
            pc += 1 + (jt if accumulator >= k else jf)
        elif code == confined_exec.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unknown instruction {code:#x}")


@pytest.mark.parametrize("machine", sorted(confined_exec.SECCOMP_ARCHES))
def test_socket_filter_denies_sockets_and_io_uring_only(machine):
    program = socket_filter(machine)
    audit_arch, (socket_nr, io_uring_nr) = confined_exec.SECCOMP_ARCHES[machine]
    refuse = confined_exec.SECCOMP_RET_ERRNO | errno.EACCES
    assert run_filter(program, audit_arch, socket_nr) == refuse
    assert run_filter(program, audit_arch, io_uring_nr) == refuse
    for allowed in (0, 1, 2, 3, 56, 57, 59, 60, 200, 257, 435):
        if allowed not in (socket_nr, io_uring_nr):
            assert run_filter(program, audit_arch, allowed) == confined_exec.SECCOMP_RET_ALLOW
    # x32 calls and calls of another architecture (int 0x80 from a 64-bit process) are refused whole.
    assert run_filter(program, audit_arch, confined_exec.X32_SYSCALL_BIT | socket_nr) == refuse
    assert run_filter(program, 0x40000003, 102) == refuse


def test_payload_root_holds_the_collection():
    root = confinement.payload_root()
    assert os.path.isfile(os.path.join(root, *confinement.LAUNCHER_MODULE.split(".")) + ".py")
    assert confined_exec.__file__.startswith(root)


# --- on this host's kernel ----------------------------------------------------------------------------------

NOTHING_MORE = Access()
NO_LIMITS = Limits()


def confined(command, access=NOTHING_MORE, limits=NO_LIMITS):
    """Run ``command`` through the real launcher, as QemuImg does."""
    env = dict(os.environ, LC_ALL="C", **confinement.launcher_environment())
    return subprocess.run(launcher_argv(sys.executable, command, access, limits), env=env,
                          capture_output=True, check=False, timeout=60)


def qemu_img(*args):
    return [QEMU_IMG, *args]


@pytest.fixture
def lab(tmp_path):
    """An allowed directory of images and, outside it, a host file an image must never get to read."""
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "host-secret"
    secret.write_bytes(SECRET * 4096)
    return images, secret


def make(*args):
    subprocess.run(qemu_img(*args), check=True, capture_output=True)


def confined_conversion(image, dest, *also_read):
    """qemu-img convert of ``image`` into ``dest``, confined to them and to ``also_read``."""
    return confined(qemu_img("convert", "-f", "qcow2", "-O", "raw", str(image), str(dest)),
                    Access(reads=(str(image), *map(str, also_read)), writes=(str(dest),)))


def reads_secret(output: bytes) -> bool:
    return SECRET.strip() in output


def test_this_kernel_can_confine():
    assert confinement.unavailable_reason() is None
    assert confined_exec.landlock_abi() >= 1


def test_a_backing_file_the_image_names_is_denied_unless_allowed(lab):
    images, secret = lab
    image = images / "evil.qcow2"
    make("create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(image), "1M")
    denied = confined(qemu_img("info", "--output=json", "-f", "qcow2", "--backing-chain", str(image)),
                      Access(reads=(str(image),)))
    assert denied.returncode == 1
    assert f"Could not open '{secret}'".encode() in denied.stderr
    assert b"Permission denied" in denied.stderr
    allowed = confined(qemu_img("info", "--output=json", "-f", "qcow2", "--backing-chain", str(image)),
                       Access(reads=(str(image), str(secret))))
    assert allowed.returncode == 0, allowed.stderr


def test_a_conversion_of_such_an_image_copies_nothing_of_the_host_file(lab):
    images, secret = lab
    image, dest = images / "evil.qcow2", images / ".dest.tmp"
    make("create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(image), "1M")
    dest.touch()
    result = confined_conversion(image, dest)
    assert result.returncode == 1
    assert b"Permission denied" in result.stderr
    assert not reads_secret(dest.read_bytes())
    # The control: allowed to read it, the same conversion does copy the host file.
    result = confined_conversion(image, dest, secret)
    assert result.returncode == 0, result.stderr
    assert reads_secret(dest.read_bytes())


def test_a_link_inside_the_allowed_directory_does_not_lead_out(lab):
    images, secret = lab
    link = images / "base.raw"
    link.symlink_to(secret)
    image = images / "linked.qcow2"
    make("create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", str(image), "1M")
    result = confined(qemu_img("compare", "-f", "qcow2", "-F", "raw", str(image), str(secret)),
                      Access(reads=(str(image),)))
    assert result.returncode == 2
    assert b"Permission denied" in result.stderr


def test_an_external_data_file_is_denied(lab):
    images, secret = lab
    image = images / "data.qcow2"
    scratch = images / "scratch-data"
    make("create", "-q", "-f", "qcow2", "-o", f"data_file={scratch}", str(image), "1M")
    # Point its data file at the host file by editing the header extension's name in place.
    raw = bytearray(image.read_bytes())
    at = raw.index(str(scratch).encode())
    name = str(secret).encode()
    assert len(name) <= len(str(scratch).encode())
    raw[at:at + len(str(scratch))] = name.ljust(len(str(scratch)), b"\0")
    image.write_bytes(bytes(raw))
    dest = images / ".dest.tmp"
    dest.touch()
    result = confined_conversion(image, dest)
    assert result.returncode == 1
    assert b"Permission denied" in result.stderr
    assert not reads_secret(dest.read_bytes())


@pytest.mark.parametrize("name, denied", [
    ('"driver":"raw","file":{"driver":"file","filename":"SECRET"}', "Permission denied"),
    ('"driver":"raw","file":{"driver":"host_device","filename":"/dev/vda"}', "Permission denied"),
    ('"driver":"vvfat","dir":"/etc"', "Could not read directory /etc"),
    ('"driver":"raw","file":{"driver":"nbd","host":"127.0.0.1","port":"10809"}', "Failed to create socket"),
    ('"driver":"raw","file":{"driver":"nbd","path":"IMAGES/nbd.sock"}', "Failed to create socket"),
], ids=["file", "device", "directory", "tcp", "unix-socket"])
def test_what_a_json_name_asks_for_is_denied(lab, name, denied):
    images, secret = lab
    image = images / "a.raw"
    image.write_bytes(b"\0" * 4096)
    name = name.replace("SECRET", str(secret)).replace("IMAGES", str(images))
    command = qemu_img("info", "--output=json", "json:{" + name + "}")
    result = confined(command, Access(reads=(str(image),)))
    assert result.returncode == 1
    assert denied.encode() in result.stderr, result.stderr
    # Unconfined, the same call gets further: the refusal above is the kernel's.
    assert denied.encode() not in confined(command, None).stderr


def test_the_destination_is_the_only_file_written(lab):
    images, _secret = lab
    image = images / "a.raw"
    image.write_bytes(b"\1" * 65536)
    allowed, other = images / ".allowed.tmp", images / "other.qcow2"
    allowed.touch()
    result = confined(qemu_img("convert", "-f", "raw", "-O", "qcow2", str(image), str(other)),
                      Access(reads=(str(image),), writes=(str(allowed),)))
    assert result.returncode == 1
    assert not other.exists()
    result = confined(qemu_img("convert", "-f", "raw", "-O", "qcow2", str(image), str(allowed)),
                      Access(reads=(str(image),), writes=(str(allowed),)))
    assert result.returncode == 0, result.stderr
    assert result.returncode == 0 and allowed.read_bytes()[:4] == b"QFI\xfb"
    # Nor is the image itself writable.
    result = confined(qemu_img("resize", "-f", "raw", str(image), "1M"), Access(reads=(str(image),)))
    assert result.returncode == 1
    assert image.stat().st_size == 65536


@pytest.mark.parametrize("name", ["gone.raw", "/libvirt-gone.raw", "/usr-gone.raw"],
                         ids=["anywhere", "named-like-lib", "named-like-usr"])
def test_a_missing_path_runs_nothing(tmp_path, name):
    """Also one whose name starts as a system directory's does: only those directories may be missing."""
    path = str(tmp_path / name) if not name.startswith("/") else name
    result = confined(qemu_img("info", path), Access(reads=(path,)))
    assert result.returncode == confined_exec.CONFINEMENT_FAILED
    assert result.stderr.decode().startswith(confined_exec.FAILURE_PREFIX + f"{path} does not exist")


def test_limits_hold_whether_or_not_confined():
    # The system's interpreter: the confined process reads nothing but the system's directories.
    grab = ["/usr/bin/python3", "-c", "bytearray(512 << 20)"]
    assert confined(grab, Access(), Limits(address_space=256 << 20)).returncode == 1
    assert confined(grab, None, Limits(address_space=256 << 20)).returncode == 1
    assert confined(grab, Access(), Limits()).returncode == 0
    # Killed by the CPU limit (SIGXCPU, or SIGKILL at the hard limit).
    assert confined(["/usr/bin/python3", "-c", "while True: pass"], Access(), Limits(cpu_seconds=1)).returncode < 0
