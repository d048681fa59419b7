# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.module_utils.destination import destination_path


@pytest.mark.parametrize("source, fmt, expected", [
    ("/i/web.raw", "qcow2", "/i/web.qcow2"),
    ("/i/web.img", "qcow2", "/i/web.qcow2"),
    ("/i/web.qcow2", "raw", "/i/web.raw"),
    ("/i/web", "qcow2", "/i/web.qcow2"),
    ("/i/web.disk0", "qcow2", "/i/web.disk0.qcow2"),
    ("/i/web.qcow2", "qcow2", "/i/web-qcow2.qcow2"),
    ("/i/a b é.raw", "qcow2", "/i/a b é.qcow2"),
], ids=["raw", "img", "to-raw", "no-ext", "unknown-ext", "same-name", "unicode"])
def test_destination_path(source, fmt, expected):
    assert destination_path(source, fmt) == expected


def test_destination_never_equals_source():
    for source in ("/i/x.qcow2", "/i/x.raw"):
        for fmt in ("raw", "qcow2"):
            assert destination_path(source, fmt) != source
