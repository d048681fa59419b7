# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one exception type (private to kvm.images)."""

from __future__ import annotations

import typing as t


class KvmImagesError(Exception):
    """A failure to report with ``fail_json(msg=..., **details)``.

    ``details`` carries what a user needs to act: the command, its rc and
    output, the domain, disk and path, and what was left untouched.
    """

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def fail_json_kwargs(self) -> dict[str, t.Any]:
        return {"msg": self.msg, **self.details}
