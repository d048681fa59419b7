# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""argv builders and runners for qemu-img (private to kvm.images).

Every builder passes the formats explicitly (``-f``, ``-F``, ``-O``): qemu-img
never probes. Paths must be absolute, so that no ``json:`` or ``nbd:`` prefix
can be read as a protocol and no leading ``-`` as an option.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import sys
import typing as t

from ansible_collections.kvm.images.plugins.module_utils import confinement
from ansible_collections.kvm.images.plugins.module_utils.confinement import Access, Limits
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.formats import KNOWN_FORMATS

FORMATS = KNOWN_FORMATS
CHECK_STATUS = {0: "clean", 1: "incomplete", 2: "corrupt", 3: "leaks", 63: "unsupported"}
LOCK_MARKERS = ('Failed to get "write" lock', 'Failed to get shared "write" lock',
                'Failed to get "consistent read" lock', "Is another process using the image")

# QEMU's file driver takes OFD locks on these bytes of an image it opens: one per
# permission it holds (from 100) and one per permission it does not share (from 200).
QEMU_LOCK_START = 100
QEMU_LOCK_LENGTH = 200


class QemuImgError(KvmImagesError):
    """qemu-img failed; details carry cmd, rc, stdout and stderr."""


class ImageInUseError(QemuImgError):
    """qemu-img met QEMU's image lock: another process (a running guest) uses the image."""


# Limits for commands that parse guest-controlled metadata (CVE-2015-5162).
DEFAULT_LIMITS = Limits(address_space=1 << 30, cpu_seconds=30)


def qemu_img_for(module: t.Any) -> QemuImg:
    """The runner a module's own options ask for (argument_specs.QEMU_IMG)."""
    return QemuImg(module, confinement_mode=module.params["confinement"])


def checked_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise KvmImagesError(f"image path must be absolute, not {path!r}", path=path)
    if "\0" in path:
        raise KvmImagesError("image path contains a NUL byte", path=path)
    return path


def checked_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise KvmImagesError(f"unknown image format {fmt!r}; expected one of {', '.join(FORMATS)}", format=fmt)
    return fmt


def option_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    # qemu's option parser reads ",," as a literal comma.
    return str(value).replace(",", ",,")


def format_options(options: dict[str, object] | None) -> str:
    """``{"compat": "1.1", "lazy_refcounts": True}`` -> ``"compat=1.1,lazy_refcounts=on"``."""
    if not options:
        return ""
    return ",".join(f"{key}={option_value(value)}" for key, value in sorted(options.items()) if value is not None)


def _options_args(options: dict[str, object] | None) -> list[str]:
    rendered = format_options(options)
    return ["-o", rendered] if rendered else []


def info_argv(path: str, fmt: str, *, backing_chain: bool = False, force_share: bool = False) -> list[str]:
    argv = ["info", "--output=json", "-f", checked_format(fmt)]
    if backing_chain:
        argv.append("--backing-chain")
    if force_share:
        argv.append("-U")
    return argv + [checked_path(path)]


def check_argv(path: str, fmt: str, *, force_share: bool = False) -> list[str]:
    argv = ["check", "--output=json", "-f", checked_format(fmt)]
    if force_share:
        argv.append("-U")
    return argv + [checked_path(path)]


def image_opts(path: str, fmt: str) -> str:
    """--image-opts for reading an image in use without QEMU's lock (measure has no -U)."""
    return (f"driver={checked_format(fmt)},file.driver=file,"
            f"file.filename={option_value(checked_path(path))},file.locking=off")


def measure_argv(path: str, fmt: str, out_format: str, *, options: dict[str, object] | None = None,
                 force_share: bool = False) -> list[str]:
    argv = ["measure", "--output=json", "-O", checked_format(out_format)] + _options_args(options)
    if force_share:
        return argv + ["--image-opts", image_opts(path, fmt)]
    return argv + ["-f", checked_format(fmt), checked_path(path)]


def create_argv(path: str, fmt: str, size: int, *, options: dict[str, object] | None = None) -> list[str]:
    return ["create", "-q", "-f", checked_format(fmt)] + _options_args(options) + [checked_path(path), str(int(size))]


def convert_argv(src: str, src_format: str, dest: str, dest_format: str, *,
                 options: dict[str, object] | None = None, sparse_size: str | int | None = None,
                 parallel: int | None = None, out_of_order: bool = False, src_cache: str | None = None,
                 dest_cache: str | None = None, compress: bool = False, progress: bool = False,
                 flatten: bool = True, backing_file: str | None = None,
                 backing_format: str | None = None, rate_limit_mib: int | None = None) -> list[str]:
    argv = ["convert", "-f", checked_format(src_format), "-O", checked_format(dest_format)]
    argv += _options_args(options)
    if not flatten:
        if not backing_file or not backing_format:
            raise KvmImagesError("keeping the backing chain needs the backing file and its format")
        argv += ["-B", checked_path(backing_file), "-F", checked_format(backing_format)]
    if sparse_size is not None:
        argv += ["-S", str(sparse_size)]
    if parallel is not None:
        argv += ["-m", str(int(parallel))]
    if out_of_order:
        argv.append("-W")
    if rate_limit_mib:
        argv += ["-r", f"{int(rate_limit_mib)}M"]
    if src_cache:
        argv += ["-T", src_cache]
    if dest_cache:
        argv += ["-t", dest_cache]
    if compress:
        argv.append("-c")
    if progress:
        argv.append("-p")
    return argv + [checked_path(src), checked_path(dest)]


def compare_argv(a: str, a_format: str, b: str, b_format: str, *, strict: bool = False,
                 force_share: bool = False) -> list[str]:
    argv = ["compare", "-f", checked_format(a_format), "-F", checked_format(b_format)]
    if strict:
        argv.append("-s")
    if force_share:
        argv.append("-U")
    return argv + [checked_path(a), checked_path(b)]


def is_lock_error(stderr: str) -> bool:
    return any(marker in stderr for marker in LOCK_MARKERS)


def held_by_qemu(path: str) -> bool:
    """Whether another process holds QEMU's image lock on ``path``.

    ``qemu-img info`` of a raw image in use succeeds without complaint, so ask
    the kernel directly: an OFD lock test on the bytes QEMU locks. Read-only;
    takes no lock.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        request = struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, QEMU_LOCK_START, QEMU_LOCK_LENGTH, 0)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, request)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOLCK):
                # No lock support on this filesystem: QEMU cannot lock it either.
                return False
            raise
        lock_type = struct.unpack("hhxxxxqqixxxx", answer)[0]
        return lock_type != fcntl.F_UNLCK
    finally:
        os.close(fd)


class QemuImg:
    """Runs qemu-img, confined to the files each call names; ``_run`` is the one seam tests replace.

    ``backing`` arguments name the vetted, resolved backing files of the image a
    call reads: the only other files qemu-img may read.
    """

    def __init__(self, module: t.Any, limits: Limits = DEFAULT_LIMITS,
                 confinement_mode: str = confinement.ENABLED) -> None:
        self.module = module
        self.limits = limits
        self.confinement_mode = confinement_mode
        self.binary = module.get_bin_path("qemu-img", required=True)
        self.python = sys.executable
        self._confinement_checked = False

    def _ensure_confinable(self) -> None:
        """Fail closed, before anything runs, where the kernel cannot confine qemu-img."""
        if self._confinement_checked or self.confinement_mode == confinement.DISABLED:
            return
        reason = confinement.unavailable_reason()
        if reason:
            raise KvmImagesError(f"qemu-img cannot be confined on this host: {reason}. Nothing was run; set"
                                 f" confinement to {confinement.DISABLED} to run it without (see the safety model"
                                 " in the user guide)", confinement=self.confinement_mode)
        self._confinement_checked = True

    def command(self, argv: list[str], access: Access, *, limited: bool = False) -> list[str]:
        """The whole argv of one call: the launcher, its confinement and limits, then qemu-img."""
        limits = self.limits if limited else Limits()
        if self.confinement_mode == confinement.DISABLED:
            access = None
        return confinement.launcher_argv(self.python, [self.binary] + argv, access, limits)

    def _run(self, argv: list[str], access: Access, *, limited: bool = False) -> tuple[int, str, str]:
        self._ensure_confinable()
        environment = dict(confinement.launcher_environment(), LC_ALL="C", LANG="C")
        return self.module.run_command(self.command(argv, access, limited=limited), environ_update=environment)

    def _checked(self, argv: list[str], access: Access, *, limited: bool = False, ok: t.Container[int] = (0,),
                 what: str = "qemu-img failed") -> tuple[int, str, str]:
        rc, out, err = self._run(argv, access, limited=limited)
        if rc not in ok:
            details = {"cmd": argv, "rc": rc, "stdout": out, "stderr": err}
            unconfinable = confinement.launcher_failure(rc, err)
            if unconfinable:
                raise QemuImgError(f"{what}: qemu-img could not be confined ({unconfinable})", **details)
            if is_lock_error(err):
                raise ImageInUseError(f"{what}: the image is in use by another process (QEMU's image lock)",
                                      **details)
            reason = (err.strip().splitlines() or [f"exit code {rc}"])[-1]
            raise QemuImgError(f"{what}: {reason}", **details)
        return rc, out, err

    @staticmethod
    def _json(argv: list[str], rc: int, out: str, err: str, what: str) -> t.Any:
        try:
            return json.loads(out)
        except ValueError as exc:
            raise QemuImgError(f"{what}: qemu-img printed no valid JSON", cmd=argv, rc=rc, stdout=out,
                               stderr=err) from exc

    def info(self, path: str, fmt: str, *, backing_chain: bool = False, force_share: bool = False,
             backing: t.Sequence[str] = ()) -> t.Any:
        argv = info_argv(path, fmt, backing_chain=backing_chain, force_share=force_share)
        what = f"qemu-img info of {path} failed"
        rc, out, err = self._checked(argv, reading(path, backing), limited=True, what=what)
        return self._json(argv, rc, out, err, what)

    def check(self, path: str, fmt: str, *, force_share: bool = False,
              backing: t.Sequence[str] = ()) -> dict[str, t.Any]:
        argv = check_argv(path, fmt, force_share=force_share)
        what = f"qemu-img check of {path} failed"
        rc, out, err = self._checked(argv, reading(path, backing), limited=True, ok=CHECK_STATUS, what=what)
        if rc == 63:
            return {"rc": rc, "status": "unsupported", "corruptions": 0, "leaks": 0, "check_errors": 0,
                    "image_end_offset": None, "raw": None}
        if rc == 1 and not out.strip():
            reason = (err.strip().splitlines() or ["no reason given"])[-1]
            raise QemuImgError(f"{what}: the check could not be completed ({reason})", cmd=argv, rc=rc, stdout=out,
                               stderr=err)
        data = self._json(argv, rc, out, err, what)
        return {
            "rc": rc,
            "status": CHECK_STATUS[rc],
            "corruptions": data.get("corruptions", 0),
            "leaks": data.get("leaks", 0),
            "check_errors": data.get("check-errors", 0),
            "image_end_offset": data.get("image-end-offset"),
            "raw": data,
        }

    def measure(self, path: str, fmt: str, out_format: str, *, options: dict[str, object] | None = None,
                force_share: bool = False, backing: t.Sequence[str] = ()) -> dict[str, int]:
        argv = measure_argv(path, fmt, out_format, options=options, force_share=force_share)
        what = f"qemu-img measure of {path} failed"
        rc, out, err = self._checked(argv, reading(path, backing), limited=True, what=what)
        data = self._json(argv, rc, out, err, what)
        try:
            return {"required": int(data["required"]), "fully_allocated": int(data["fully-allocated"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise QemuImgError(f"{what}: unexpected output", cmd=argv, rc=rc, stdout=out, stderr=err) from exc

    def create(self, path: str, fmt: str, size: int, *, options: dict[str, object] | None = None) -> None:
        """A new image at ``path``, which must not exist; made here first, so that qemu-img may write only it."""
        fd = os.open(checked_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.close(fd)
        self._checked(create_argv(path, fmt, size, options=options), Access(writes=(path,)),
                      what=f"qemu-img create of {path} failed")

    def convert(self, src: str, src_format: str, dest: str, dest_format: str, *, backing: t.Sequence[str] = (),
                **kwargs: t.Any) -> list[str]:
        """A data copy into ``dest``, which must exist (a temp file): never limited, never -U (QEMU's lock keeps
        a running guest's image out)."""
        argv = convert_argv(src, src_format, dest, dest_format, **kwargs)
        access = Access(reads=(src,) + tuple(backing), writes=(dest,))
        self._checked(argv, access, what=f"qemu-img convert of {src} to {dest} failed")
        return [self.binary] + argv

    def compare(self, a: str, a_format: str, b: str, b_format: str, *, strict: bool = False,
                force_share: bool = False, backing: t.Sequence[str] = ()) -> bool:
        argv = compare_argv(a, a_format, b, b_format, strict=strict, force_share=force_share)
        rc, _out, _err = self._checked(argv, Access(reads=(a, b) + tuple(backing)), ok=(0, 1),
                                       what=f"qemu-img compare of {a} and {b} failed")
        return rc == 0


def reading(path: str, backing: t.Sequence[str]) -> Access:
    return Access(reads=(path,) + tuple(backing))
