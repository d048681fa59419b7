# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An append-only record of disk switches and of shutdowns, each written before it happens (private to kvm.images).

A run killed right after a definition changed, or right after a pivot, still leaves
on disk which image each disk had before; one killed while it had a guest shut down
to convert leaves the word that the guest is to be started again. A line for a
switch that then failed is harmless: a reader compares the lines with what the
domain uses now.
"""

from __future__ import annotations

import json
import os
import time
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.atomic_file import fsync_dir
from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError


def switch_entry(domain: str, target: str, before: dict[str, t.Any], dest: str | None,
                 target_format: str | None) -> dict[str, t.Any]:
    """A disk going from ``before`` (its source and driver type) to ``dest`` in ``target_format``."""
    return {"event": "switch", "domain": domain, "target": target, "source": before.get("source"),
            "source_format": before.get("driver_type"), "dest": dest or before.get("source"),
            "target_format": target_format or before.get("driver_type"), "time": round(time.time(), 3)}


def power_entry(domain: str, event: str) -> dict[str, t.Any]:
    """``shutdown``: the domain is shut down to be started again; ``start``: it runs again."""
    return {"event": event, "domain": domain, "time": round(time.time(), 3)}


def append_entries(path: str, entries: list[dict[str, t.Any]]) -> None:
    """Append one JSON line per entry in one write, and flush it to the disk before returning."""
    if not entries:
        return
    data = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries).encode("utf-8")
    created = not os.path.lexists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def record_before(journal: str | None, entries: list[dict[str, t.Any]], name: str, action: str) -> None:
    """No record, no action: a run killed right after it must still know what was done."""
    if not journal:
        return
    try:
        append_entries(journal, entries)
    except OSError as exc:
        raise KvmImagesError(f"cannot record the {action} of {name} in {journal}: {exc.strerror or exc};"
                             f" {name} was not changed", domain=name) from exc


def parse_entries(text: str) -> list[dict[str, t.Any]]:
    """The journal's disk switches, oldest first; a last line cut short by a kill is not an entry."""
    return [entry for entry in read_lines(text) if entry.get("event", "switch") == "switch"
            and all(isinstance(entry.get(key), str) for key in ("target", "dest"))]


def pending_restarts(text: str) -> list[str]:
    """The domains whose last power line is a shutdown: a run shut them down and did not start them again."""
    last: dict[str, str] = {}
    for entry in read_lines(text):
        if entry.get("event") in ("shutdown", "start"):
            last[entry["domain"]] = entry["event"]
    return [domain for domain, event in last.items() if event == "shutdown"]


def read_journal(path: str | None) -> str:
    """The journal's text; empty when there is none yet."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise KvmImagesError(f"cannot read the journal {path}: {exc.strerror}", journal=path) from exc


def journal_facts(text: str, domains: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """What a run needs of the journal: its switches (for the plan and rollback), and the guests an interrupted
    run shut down and did not start again that are still defined and not paused (to start them again; a running
    one was started by hand since, and starting it only closes its shutdown line)."""
    present = {domain["name"] for domain in domains if domain.get("state") in ("shut off", "running")}
    return {"switches": parse_entries(text),
            "pending_restarts": [name for name in pending_restarts(text) if name in present]}


def read_lines(text: str) -> list[dict[str, t.Any]]:
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("domain"), str):
            entries.append(entry)
    return entries
