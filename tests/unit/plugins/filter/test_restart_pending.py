# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

from ansible_collections.kvm.images.plugins.filter.disk_format import disk_format_restart_pending


def lines(*events):
    return "".join(json.dumps({"event": event, "domain": domain}) + "\n" for domain, event in events)


def test_only_guests_still_defined_and_not_paused_are_started_again():
    journal = lines(("web01", "shutdown"), ("db01", "shutdown"), ("app01", "shutdown"), ("gone", "shutdown"),
                    ("ok01", "shutdown"), ("ok01", "start"))
    domains = [{"name": "web01", "state": "shut off"}, {"name": "db01", "state": "running"},
               {"name": "app01", "state": "paused"}, {"name": "ok01", "state": "shut off"}]
    assert disk_format_restart_pending(journal, domains) == ["web01", "db01"]
