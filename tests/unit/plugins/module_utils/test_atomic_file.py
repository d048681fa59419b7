# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A new file appears whole or not at all; markers tell a live process from a dead one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.kvm.images.plugins.module_utils import atomic_file
from ansible_collections.kvm.images.tests.unit.plugins.module_utils.fakes import FakeModule


def test_temp_files_sit_beside_their_destination_and_are_found_again(tmp_path):
    dest = str(tmp_path / "web01.qcow2")
    first, second = atomic_file.make_temp(dest), atomic_file.make_temp(dest)
    assert os.path.dirname(first) == str(tmp_path)
    assert os.path.basename(first).startswith(".web01.qcow2" + atomic_file.TEMP_MARK)
    (tmp_path / ".other.qcow2.kvm-images-tmp-x").write_bytes(b"")
    os.mkdir(tmp_path / (".web01.qcow2" + atomic_file.TEMP_MARK + "dir"))
    os.symlink("/etc/hostname", tmp_path / (".web01.qcow2" + atomic_file.TEMP_MARK + "link"))
    # Only this destination's regular files: never a directory or a link someone planted.
    assert atomic_file.leftovers(dest) == sorted([first, second])
    assert atomic_file.leftovers(str(tmp_path / "gone" / "x.qcow2")) == []


def test_commit_renames_into_place(tmp_path):
    dest = tmp_path / "a.qcow2"
    dest.write_bytes(b"old")
    temp = atomic_file.make_temp(str(dest))
    with open(temp, "wb") as handle:
        handle.write(b"new")
    atomic_file.fsync_path(temp)
    atomic_file.commit(temp, str(dest))
    assert dest.read_bytes() == b"new"
    assert not os.path.exists(temp)


def test_identity_changes_when_the_path_names_another_file(tmp_path):
    path = tmp_path / "a"
    assert atomic_file.identity(str(path)) is None
    path.write_bytes(b"1")
    before = atomic_file.identity(str(path))
    assert atomic_file.identity(str(path)) == before
    replacement = tmp_path / "b"
    replacement.write_bytes(b"1")
    os.replace(replacement, path)
    assert atomic_file.identity(str(path)) != before


def test_same_file_sees_through_hard_links_and_dots(tmp_path):
    (tmp_path / "d").mkdir()
    source = tmp_path / "a.raw"
    source.write_bytes(b"x")
    os.link(source, tmp_path / "hard.raw")
    assert atomic_file.same_file(str(source), str(tmp_path / "hard.raw"))
    assert atomic_file.same_file(str(source), str(tmp_path / "d" / ".." / "a.raw"))
    assert not atomic_file.same_file(str(source), str(tmp_path / "missing.raw"))


def test_remove_quietly_ignores_what_is_gone(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(b"")
    atomic_file.remove_quietly(str(path))
    atomic_file.remove_quietly(str(path))
    assert not path.exists()


def test_live_copy_marker_names_its_destination(tmp_path):
    assert atomic_file.live_copy_marker("/i/web01.qcow2") == "/i/.web01.qcow2" + atomic_file.LIVE_COPY_MARK


HOLDER = textwrap.dedent("""
    import sys, time
    from ansible_collections.kvm.images.plugins.module_utils.atomic_file import claim_marker
    claim_marker(sys.argv[1], "4242 web01 vda\\n")
    print("claimed", flush=True)
    time.sleep(60)
""")


def test_a_marker_held_by_a_live_process_is_busy_and_free_once_it_dies(tmp_path):
    marker = str(tmp_path / ".a.qcow2.kvm-images-copy")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, marker], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        assert atomic_file.marker_holder(marker) == "4242 web01 vda"
        with pytest.raises(BlockingIOError):
            atomic_file.claim_marker(marker, "mine\n")
    finally:
        holder.kill()
        holder.wait()
    # Killed: its flock went with it, the file stays, and it is free to take over.
    assert os.path.exists(marker)
    assert atomic_file.marker_holder(marker) is None
    fd = atomic_file.claim_marker(marker, "mine\n")
    try:
        with open(marker, encoding="utf-8") as handle:
            assert handle.read() == "mine\n"
    finally:
        os.close(fd)
    assert atomic_file.marker_holder(str(tmp_path / "none")) is None


def test_new_files_take_the_source_s_attributes_unless_given(tmp_path):
    source, new = tmp_path / "a.raw", tmp_path / "a.qcow2"
    source.write_bytes(b"")
    new.write_bytes(b"")
    os.chmod(source, 0o640)
    module = FakeModule()
    atomic_file.copy_attributes(module, str(source), str(new), None, None, None)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o640
    assert module.calls == []
    atomic_file.copy_attributes(module, str(source), str(new), "qemu", "kvm", "0600")
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600
    assert module.calls == [("owner", "qemu"), ("group", "kvm"), ("mode", "0600")]
