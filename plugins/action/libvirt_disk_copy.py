# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the libvirt_disk_copy module; with progress_interval, in the background with progress lines in the play's
output."""

from __future__ import annotations

from ansible_collections.kvm.images.plugins.plugin_utils.progress_action import ProgressAction


class ActionModule(ProgressAction):
    pass
