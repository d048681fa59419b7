# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The progress file a module writes for its action plugin."""

from __future__ import annotations

import json

from ansible_collections.kvm.images.plugins.module_utils.progress import Progress


def test_without_a_file_nothing_samples_in_the_background():
    progress = Progress(None)
    progress.run_sampler()
    assert progress.thread is None
    progress.close()


def test_with_a_file_the_sampler_writes_what_it_sampled(tmp_path):
    path = tmp_path / "progress.json"
    progress = Progress(str(path), every=0)
    progress.start("a", "web01 vda", 100, "offline", sampler=lambda: 40)
    progress.run_sampler(interval=0.01)
    try:
        for _attempt in range(500):
            if path.exists() and json.loads(path.read_text())["items"][0]["done"] == 40:
                break
            progress.stopped.wait(0.01)
        assert json.loads(path.read_text())["items"][0]["done"] == 40
    finally:
        progress.close()
    assert not path.exists() and not progress.thread.is_alive()
