# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The progress lines the action plugins print."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.images.plugins.plugin_utils.progress_action import (
    human_bytes,
    human_duration,
    progress_line,
    progress_lines,
)


@pytest.mark.parametrize("count, text", [(512, "512 B"), (1536, "1.5 KiB"), (20 << 30, "20.0 GiB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text


@pytest.mark.parametrize("seconds, text", [(7, "7 s"), (72, "1 min 12 s"), (7322, "2 h 02 min")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_a_line_says_how_far_how_fast_and_how_long_still():
    item = {"label": "web01 vda", "done": 4 << 30, "total": 10 << 30, "started": 100.0, "updated": 120.0,
            "phase": "copying", "mode": "offline"}
    assert progress_line(item) == "web01 vda: 40 % of 10.0 GiB at 204.8 MiB/s, 30 s left (offline)"


def test_only_disks_in_progress_get_a_line():
    progress = {"items": [
        {"label": "web01 vda", "done": 1 << 30, "total": 2 << 30, "started": 0.0, "updated": 10.0,
         "phase": "copying", "mode": "live, write_blocking"},
        {"label": "web01 vdb", "done": 2, "total": 2, "started": 0.0, "phase": "done"},
        {"label": "db01 vda", "done": 2 << 30, "total": 2 << 30, "started": 0.0, "updated": 10.0,
         "phase": "verifying", "mode": "offline"},
    ]}
    lines = progress_lines("hv1", progress)
    assert lines == ["[hv1] web01 vda: 50 % of 2.0 GiB at 102.4 MiB/s, 10 s left (live, write_blocking)",
                     "[hv1] db01 vda: 100 % of 2.0 GiB at 204.8 MiB/s, verifying (offline)"]
    assert progress_lines("hv1", None) == []
