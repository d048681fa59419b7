# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What module_utils talk to, faked once for every unit test: AnsibleModule, QemuImg, libvirt's domains and
connections, a hypervisor of domains, and a clock the tests move by hand.

A test that needs other behaviour subclasses one of these and changes only that."""

from __future__ import annotations

import os

from ansible_collections.kvm.images.plugins.module_utils import domain_xml
from ansible_collections.kvm.images.plugins.module_utils.block_copy import (
    BLOCK_COPY_SYNCHRONOUS_WRITES,
    BLOCK_JOB_ABORT_PIVOT,
)
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.libvirt_connection import NO_DOMAIN

# virDomainState values.
RUNNING, PAUSED, SHUT_OFF = 1, 3, 5


class FakeClock:
    """A clock the tests move by hand, with a sleep that advances it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Exited(Exception):
    """exit_json or fail_json was called: the module's run ends there."""


class FakeModule:
    """The AnsibleModule that module_utils see.

    run_command answers from ``answers``, a list of ``(rc, stdout, stderr)``; ``calls`` notes in order each command
    as ``(argv, environ_update)`` and each attribute set on a file as ``(what, value)``. Cleanup files are collected
    in ``cleanup``; exit_json and fail_json keep their result in ``exited`` or ``failed`` and raise Exited.
    """

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.calls = []
        self.cleanup = []
        self.exited = None
        self.failed = None

    def get_bin_path(self, name, required=False):
        return f"/usr/bin/{name}"

    def run_command(self, argv, environ_update=None):
        assert self.answers, f"unexpected command {argv}"
        self.calls.append((argv, environ_update))
        return self.answers.pop(0)

    def add_cleanup_file(self, path):
        self.cleanup.append(path)

    def selinux_enabled(self):
        return False

    def set_owner_if_different(self, path, owner, changed):
        self.calls.append(("owner", owner))

    def set_group_if_different(self, path, group, changed):
        self.calls.append(("group", group))

    def set_mode_if_different(self, path, mode, changed):
        os.chmod(path, int(mode, 8))
        self.calls.append(("mode", mode))

    def exit_json(self, **result):
        self.exited = result
        raise Exited()

    def fail_json(self, **result):
        self.failed = result
        raise Exited()


class FakeQemu:
    """Stands in for QemuImg: answers as qemu-img would, writes the target of a conversion, or fails like it.

    ``fail_with``: convert fails with this message, its target half-written; ``identical``: what compare finds;
    ``check_status``: what check finds; ``broken``: a path info cannot open; ``required``: the bytes measure gives.
    ``calls`` notes each info, check and measure, ``checked`` the paths checked, ``converted`` each target.
    """

    def __init__(self, fail_with=None, identical=True, check_status="clean", broken=None, required=1 << 20):
        self.fail_with = fail_with
        self.identical = identical
        self.check_status = check_status
        self.broken = broken
        self.required = required
        self.calls = []
        self.checked = []
        self.converted = []

    def write(self, dest):
        """What a conversion leaves at ``dest``: a few bytes."""
        with open(dest, "wb") as handle:
            handle.write(b"partial")

    def convert(self, src, src_format, dest, dest_format, **kwargs):
        self.converted.append(dest)
        self.write(dest)
        if self.fail_with:
            raise KvmImagesError(self.fail_with)
        return ["qemu-img", "convert"]

    def info(self, path, fmt, force_share=False, backing_chain=False, backing=()):
        self.calls.append(("info", path, fmt, force_share))
        if path == self.broken:
            raise KvmImagesError(f"qemu-img info failed for {path}: Could not open")
        return {"format": fmt, "virtual-size": 1 << 20, "actual-size": 4096}

    def compare(self, *args, **kwargs):
        return self.identical

    def check(self, path, fmt, force_share=False, backing=()):
        self.calls.append(("check", path, fmt, force_share))
        self.checked.append(path)
        return {"status": self.check_status, "corruptions": 2 if self.check_status == "corrupt" else 0}

    def measure(self, path, fmt, target, force_share=False, backing=(), options=None):
        self.calls.append(("measure", path, fmt, target))
        return {"required": self.required, "fully_allocated": self.required}

    def create(self, dest, fmt, capacity, options=None):
        with open(dest, "wb") as image:
            image.truncate(capacity)


class FakeConnection:
    """A libvirt connection (virConnect): the daemon's versions - libvirt 9.0.0 and QEMU 7.2.0, as in the lab,
    unless told - and defineXML, which gives ``dom`` the definition."""

    def __init__(self, dom=None, libvirt_version=9_000_000, qemu_version=7_002_000):
        self.dom = dom
        self.libvirt_version = libvirt_version
        self.qemu_version = qemu_version

    def getLibVersion(self):
        return self.libvirt_version

    def getVersion(self):
        return self.qemu_version

    def defineXML(self, xml):
        self.dom.defined.append(xml)
        self.dom.xml = xml


class FakeDomain:
    """A libvirt domain (virDomain), running unless told.

    ``calls`` names what it was asked to do, in order (``record``). suspend() pauses it until resume(), which fails
    with ``resume_fails``. Its definition: XMLDesc gives ``answers`` one by one, then ``xml``; the connection that
    connect() gives defines into ``defined``. Asked to shut down, it is off ``off_after`` seconds of ``clock`` later
    (never when None); destroy() turns it off at once, create() starts it again.
    """

    def __init__(self, name="web01", *, active=True, persistent=True, xml=None, answers=(), connection=None,
                 clock=None, off_after=None):
        self.domain_name = name
        self.active = active
        self.persistent = persistent
        self.paused = False
        self.resume_fails = False
        self.answers = list(answers)
        self.xml = self.answers[-1] if xml is None and self.answers else xml
        self.defined = []
        self.connection = FakeConnection(self) if connection is None else connection
        self.clock = clock
        self.off_after = off_after
        self.requested_at = None
        self.destroyed = False
        self.calls = []

    def record(self, call, *args):
        """Note a call by its name; a fake that wants its arguments too overrides this."""
        self.calls.append(call)

    def name(self):
        return self.domain_name

    def isActive(self):
        if self.destroyed:
            return False
        if self.requested_at is not None and self.off_after is not None:
            return self.clock() - self.requested_at < self.off_after
        return self.active

    def isPersistent(self):
        return int(self.persistent)

    def state(self):
        return [PAUSED if self.paused else RUNNING if self.isActive() else SHUT_OFF, 1]

    def suspend(self):
        self.record("suspend")
        self.paused = True

    def resume(self):
        import libvirt

        self.record("resume")
        if self.resume_fails:
            raise libvirt.libvirtError("Timed out during operation: cannot acquire state change lock")
        self.paused = False

    def shutdown(self):
        self.record("shutdown")
        self.requested_at = self.clock()

    def destroy(self):
        self.record("destroy")
        self.destroyed = True

    def create(self):
        self.record("create")
        self.destroyed, self.requested_at, self.active = False, None, True

    def XMLDesc(self, flags):
        return self.answers.pop(0) if self.answers else self.xml

    def connect(self):
        return self.connection


class MirroringDomain(FakeDomain):
    """A running transient domain whose disk vda a block job (blockCopy) mirrors from ``source`` into ``mirror_to``
    (None: no job). The job has copied all ``size`` bytes at once and is READY unless ``ready`` is False; a
    write-blocking one runs ``end`` ahead of ``cur`` by ``in_flight`` bytes, the guest's writes on their way.
    Aborted, the guest stays on ``source``; pivoted, it runs on the copy. ``copy_flags`` are each copy's flags.
    """

    ready = True

    def __init__(self, mirror_to=None, *, source="/d/a.raw", write_blocking=False, size=1 << 20, in_flight=4096,
                 **kwargs):
        kwargs.setdefault("persistent", False)
        super().__init__(**kwargs)
        self.source = source
        self.mirror_to = mirror_to
        self.write_blocking = write_blocking
        self.size = size
        self.in_flight = in_flight
        self.copy_flags = []

    def record(self, call, *args):
        """A block job's calls are noted as their steps: copy, abort, pivot."""
        if call == "blockJobAbort":
            call = "pivot" if args[-1] == BLOCK_JOB_ABORT_PIVOT else "abort"
        super().record("copy" if call == "blockCopy" else call)

    def blockInfo(self, target):
        return [self.size, self.size, self.size]

    def blockCopy(self, target, xml, params, flags):
        self.record("blockCopy", target, xml, params, flags)
        self.copy_flags.append(flags)
        self.write_blocking = bool(flags & BLOCK_COPY_SYNCHRONOUS_WRITES)
        self.mirror_to = domain_xml.parse(xml).find("source").get("file")

    def blockJobInfo(self, target, flags):
        if not self.mirror_to:
            return {}
        return {"type": 2, "cur": self.size, "end": self.size + (self.in_flight if self.write_blocking else 0)}

    def blockJobAbort(self, target, flags):
        self.record("blockJobAbort", target, flags)
        if flags == BLOCK_JOB_ABORT_PIVOT:
            self.source = self.mirror_to
        self.mirror_to = None

    def mirror_ready(self):
        return self.mirror_to is not None and self.ready

    def live_disk(self, target):
        """What block_copy.live_disk reads from the live XML, from this fake's state."""
        return {"source": self.source, "driver_type": "qcow2" if self.source.endswith(".qcow2") else "raw",
                "device": "disk", "type": "file", "shareable": False, "readonly": False,
                "mirror": self.mirror_to is not None, "mirror_ready": self.mirror_ready(),
                "mirror_source": self.mirror_to}


class Hypervisor:
    """A libvirt connection as module_utils hold it: ``domain(name)`` finds one of its domains - given as domains,
    or as names for domains with nothing but a name - and fails for any other as LibvirtConnection does (NO_DOMAIN);
    ``domains()`` lists them all."""

    def __init__(self, *doms):
        self.doms = {dom.name(): dom for dom in (FakeDomain(dom) if isinstance(dom, str) else dom for dom in doms)}

    def domain(self, name):
        if name not in self.doms:
            raise KvmImagesError(f"domain {name} not found on test:///", libvirt_code=NO_DOMAIN)
        return self.doms[name]

    def domains(self):
        return list(self.doms.values())
