# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The corpus and the differential run, made once per test run; the summary printed at the end.

KVM_IMAGES_DIFFERENTIAL_SEED picks the corpus (an integer, or "random"), and
KVM_IMAGES_DIFFERENTIAL_MUTANTS the number of mutations of each base image.
"""

from __future__ import annotations

import os
import random
import typing as t

import pytest

from ansible_collections.kvm.images.tests.differential.corpus import Case, CorpusBuilder
from ansible_collections.kvm.images.tests.differential.harness import Results, differential_run

DEFAULT_SEED = 1
DEFAULT_MUTANTS = 30
SUMMARY: list[str] = []


def corpus_seed() -> int:
    value = os.environ.get("KVM_IMAGES_DIFFERENTIAL_SEED", str(DEFAULT_SEED))
    return random.SystemRandom().randrange(1 << 32) if value == "random" else int(value)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("differential"))


@pytest.fixture(scope="session")
def builder(workspace: str) -> CorpusBuilder:
    mutants = int(os.environ.get("KVM_IMAGES_DIFFERENTIAL_MUTANTS", str(DEFAULT_MUTANTS)))
    corpus = CorpusBuilder(os.path.join(workspace, "corpus"), corpus_seed(), mutants)
    corpus.build()
    return corpus


@pytest.fixture(scope="session")
def corpus(builder: CorpusBuilder) -> list[Case]:
    return builder.cases


@pytest.fixture(scope="session")
def results(builder: CorpusBuilder, workspace: str) -> Results:
    found = differential_run(builder.cases, [builder.allowed], os.path.join(workspace, "run"), builder.seed)
    SUMMARY[:] = found.summary()
    return found


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)
