# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one entry point of every module: results, the collection's errors, OS errors, SIGTERM, missing libraries."""

from __future__ import annotations

import os
import signal

import pytest

from ansible_collections.kvm.images.plugins.module_utils import module_run
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import Exited, FakeModule


def run(behaviour):
    module = FakeModule()
    with pytest.raises(Exited):
        module_run.run_module(module, behaviour, on_os_error=lambda exc: f"cannot read it: {exc.strerror}",
                              on_interrupt="nothing was left")
    return module


def test_a_result_is_returned():
    module = run(lambda module: {"changed": True, "dest": "/i/a.qcow2"})
    assert module.exited == {"changed": True, "dest": "/i/a.qcow2"}


def test_the_collection_s_error_becomes_msg_and_details():
    def fail(module):
        raise KvmImagesError("domain web01 not found", domain="web01")
    assert run(fail).failed == {"msg": "domain web01 not found", "domain": "web01"}


def test_an_os_error_gets_the_module_s_words():
    def fail(module):
        raise PermissionError(13, "Permission denied", "/i/a.raw")
    assert run(fail).failed == {"msg": "cannot read it: Permission denied"}


def test_sigterm_interrupts_the_work_so_that_its_cleanup_runs():
    cleaned = []

    def work(module):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt")
        finally:
            cleaned.append(True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        module = run(work)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert cleaned == [True]
    assert module.failed == {"msg": f"interrupted by signal {int(signal.SIGTERM)}; nothing was left"}


def test_a_missing_library_fails_before_running():
    module = FakeModule()
    libraries = [("libvirt-python", True, None), ("lxml", False, "Traceback: No module named 'lxml'")]
    with pytest.raises(Exited):
        module_run.run_module(module, lambda module: pytest.fail("ran"), libraries=libraries)
    assert "Failed to import the required Python library (lxml)" in module.failed["msg"]
    assert module.failed["exception"] == "Traceback: No module named 'lxml'"
