# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One libvirt connection helper for every module (private to kvm.images)."""

from __future__ import annotations

import traceback
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.domain_xml import HAS_LXML, LXML_IMPORT_ERROR
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError

try:
    import libvirt
except ImportError:
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
    LibvirtError: type[Exception] = Exception
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
    LibvirtError = libvirt.libvirtError

    def _quiet(_context: object, _error: object) -> None:
        """libvirt prints every error to stderr by default; ours go into msg."""

    libvirt.registerErrorHandler(_quiet, None)

# What the modules that talk to libvirt need (module_run.run_module's libraries): loaded only by them.
LIBVIRT_LIBRARIES = (("libvirt-python", HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR), ("lxml", HAS_LXML, LXML_IMPORT_ERROR))

# virErrorNumber VIR_ERR_NO_DOMAIN, usable without libvirt loaded.
NO_DOMAIN = 42

# virDomainState values; kept here so the names work without libvirt loaded.
STATE_NAMES = {
    0: "no state",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutting down",
    5: "shut off",
    6: "crashed",
    7: "pmsuspended",
}


def libvirt_call(what: str, func: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> t.Any:
    """Call ``func``; a libvirtError becomes a KvmImagesError saying ``what`` failed and libvirt's reason."""
    try:
        return func(*args, **kwargs)
    except libvirt.libvirtError as exc:
        raise KvmImagesError(f"{what}: {exc.get_error_message() or exc}", libvirt_code=exc.get_error_code()) from exc


class LibvirtConnection:
    """``with LibvirtConnection(uri) as connection: connection.domain(name)``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn: t.Any = None

    def __enter__(self) -> LibvirtConnection:
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise KvmImagesError(f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}",
                                 uri=self.uri) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None

    def reopen(self) -> None:
        """A fresh connection, for when libvirtd restarted under us."""
        self.__exit__(None, None, None)
        self.__enter__()

    def domain(self, name: str) -> t.Any:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == NO_DOMAIN:
                raise KvmImagesError(f"domain {name} not found on {self.uri}", domain=name, uri=self.uri,
                                     libvirt_code=NO_DOMAIN) from exc
            raise KvmImagesError(f"cannot look up domain {name} on {self.uri}: {exc.get_error_message()}",
                                 domain=name, uri=self.uri) from exc

    def domains(self) -> list[t.Any]:
        """Every domain, running or not, in one call."""
        return libvirt_call(f"cannot list the domains on {self.uri}", self.conn.listAllDomains, 0)


def inactive_xml(dom: t.Any) -> str:
    """The persistent definition, secrets included, as ``virsh dumpxml --inactive --security-info``."""
    return libvirt_call(f"cannot read the definition of {dom.name()}", dom.XMLDesc,
                        libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def live_xml(dom: t.Any) -> str:
    return libvirt_call(f"cannot read the live definition of {dom.name()}", dom.XMLDesc,
                        libvirt.VIR_DOMAIN_XML_SECURE)


def state_name(dom: t.Any) -> str:
    state, _reason = libvirt_call(f"cannot read the state of {dom.name()}", dom.state)
    return STATE_NAMES.get(state, f"unknown ({state})")


def daemon_versions(conn: t.Any) -> tuple[int, int]:
    """The daemon's libvirt and its QEMU's versions, packed as libvirt gives them (9000000 for 9.0.0)."""
    return (libvirt_call("cannot read libvirt's version", conn.getLibVersion),
            libvirt_call("cannot read QEMU's version", conn.getVersion))


def version_text(version: int) -> str:
    """libvirt's packed versions: 9000000 -> 9.0.0, 7002022 -> 7.2.22."""
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"
