# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError
from ansible_collections.kvm.images.plugins.module_utils.journal import append_entries, parse_entries, switch_entry

BEFORE = {"source": "/images/web 01.raw", "driver_type": "raw"}


def test_entries_are_appended_in_order_and_read_back(tmp_path):
    journal = tmp_path / "journal.jsonl"
    append_entries(str(journal), [switch_entry("web01", "vda", BEFORE, "/images/web 01.qcow2", "qcow2")])
    append_entries(str(journal), [switch_entry("web01", "vdb", BEFORE, None, "qcow2"),
                                  switch_entry("db\n01", "vda", BEFORE, "/images/db.qcow2", None)])
    entries = parse_entries(journal.read_text())
    assert [(e["domain"], e["target"], e["dest"], e["target_format"]) for e in entries] == [
        ("web01", "vda", "/images/web 01.qcow2", "qcow2"),
        ("web01", "vdb", "/images/web 01.raw", "qcow2"),
        ("db\n01", "vda", "/images/db.qcow2", "raw")]
    assert all((e["source"], e["source_format"]) == ("/images/web 01.raw", "raw") for e in entries)


def test_a_line_cut_short_by_a_kill_is_not_an_entry(tmp_path):
    journal = tmp_path / "journal.jsonl"
    append_entries(str(journal), [switch_entry("web01", "vda", BEFORE, "/images/a.qcow2", "qcow2")])
    whole = journal.read_text()
    text = whole + whole[:len(whole) // 2]
    assert [e["dest"] for e in parse_entries(text)] == ["/images/a.qcow2"]
    assert parse_entries('[1]\n{"domain": "x"}\nnot json\n') == []


def test_nothing_to_append_creates_nothing(tmp_path):
    append_entries(str(tmp_path / "journal.jsonl"), [])
    assert not (tmp_path / "journal.jsonl").exists()


def test_a_domain_shut_down_and_not_started_again_is_pending(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.journal import pending_restarts, power_entry
    journal = tmp_path / "journal.jsonl"
    append_entries(str(journal), [power_entry("web01", "shutdown"), power_entry("db01", "shutdown"),
                                  switch_entry("web01", "vda", BEFORE, "/images/a.qcow2", "qcow2"),
                                  power_entry("web01", "start"), power_entry("app01", "shutdown")])
    text = journal.read_text()
    assert pending_restarts(text) == ["db01", "app01"]
    assert [e["domain"] for e in parse_entries(text)] == ["web01"], "power lines are not switches"
    append_entries(str(journal), [power_entry("db01", "start")])
    assert pending_restarts(journal.read_text()) == ["app01"]


def test_journal_facts_give_switches_and_the_guests_to_start_again_that_still_exist():
    from ansible_collections.kvm.images.plugins.module_utils.journal import journal_facts
    lines = "".join(json.dumps(entry) + "\n" for entry in [
        {"event": "shutdown", "domain": name} for name in ("web01", "db01", "app01", "gone", "ok01")] + [
        {"event": "start", "domain": "ok01"},
        {"event": "switch", "domain": "web01", "target": "vda", "source": "/i/a.raw", "source_format": "raw",
         "dest": "/i/a.qcow2", "target_format": "qcow2"}])
    domains = [{"name": "web01", "state": "shut off"}, {"name": "db01", "state": "running"},
               {"name": "app01", "state": "paused"}, {"name": "ok01", "state": "shut off"}]
    facts = journal_facts(lines, domains)
    # A running one was started by hand since: starting it only closes its shutdown line.
    assert facts["pending_restarts"] == ["web01", "db01"]
    assert [(e["domain"], e["dest"]) for e in facts["switches"]] == [("web01", "/i/a.qcow2")]


def test_a_missing_journal_reads_as_empty_and_an_unreadable_one_fails(tmp_path):
    from ansible_collections.kvm.images.plugins.module_utils.journal import read_journal
    assert read_journal(str(tmp_path / "none.jsonl")) == ""
    assert read_journal(None) == ""
    with pytest.raises(KvmImagesError, match="cannot read the journal"):
        read_journal(str(tmp_path))
