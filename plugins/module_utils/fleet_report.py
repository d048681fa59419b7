# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report's records (private to kvm.images)."""

from __future__ import annotations

import typing as t


def report_records(results: list[dict[str, t.Any]], plan: list[dict[str, t.Any]], host: str) -> list[dict[str, t.Any]]:
    """What was done, then every other planned disk as planned (skipped, already there, or not reached)."""
    done = {(r["domain"], r["target"]) for r in results}
    rest = [dict(record, host=host) for record in plan if (record["domain"], record["target"]) not in done]
    return list(results) + rest
