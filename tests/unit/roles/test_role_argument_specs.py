# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role default is documented in its argument spec, with the same value."""

from __future__ import annotations

import pathlib

import pytest
import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[3] / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if (path / "defaults" / "main.yml").exists())


def load(path: pathlib.Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_argument_spec(role):
    defaults = load(ROLES_DIR / role / "defaults" / "main.yml")
    options = load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults and argument spec list different variables"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: default differs from the argument spec"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix(role):
    defaults = load(ROLES_DIR / role / "defaults" / "main.yml")
    assert all(name.startswith(role + "_") for name in defaults)


def test_roles_found():
    assert {"disk_format", "demo_lab"} <= set(ROLES)
