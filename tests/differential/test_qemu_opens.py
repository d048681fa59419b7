# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The inspector against qemu itself.

For every image of a seeded corpus (honest images of every format, hand-made headers,
hostile backing references, mutations) and every declaration (its true format, raw,
none), the inspector judges; whenever it says safe, qemu-img runs as the modules run it
under strace, and every file it tried to open must be the image, a file of the predicted
backing chain or the output. qemu's virtual size and chain must be the inspector's.
"""

from __future__ import annotations

import os
import subprocess

from ansible_collections.kvm.images.plugins.module_utils import confinement, qemu_img
from ansible_collections.kvm.images.plugins.module_utils.image_safety import (
    ACCEPTED_FORMATS,
    REFUSED_FORMATS,
    inspect_path,
    vet_image,
)
from ansible_collections.kvm.images.tests.differential.harness import Job, Results, execute, unpredicted_accesses
from ansible_collections.kvm.images.tests.differential.tracing import ENVIRONMENT, qemu_command

SHOWN = 40


def listing(found: list[str]) -> str:
    more = f"\n... and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "\n".join(found[:SHOWN]) + more


def test_every_honest_image_is_recognised(corpus):
    wrong = [f"{case.name} [{case.recipe}]: detected {inspect_path(case.path).detected_format}"
             for case in corpus if case.honest and inspect_path(case.path).detected_format != case.true_format]
    assert not wrong, listing(wrong)


def test_accepted_formats_are_safe_and_the_others_refused_by_name(corpus, builder):
    wrong = []
    for case in (case for case in corpus if case.honest):
        vetting = vet_image(case.path, case.true_format, [builder.allowed])
        if case.true_format in ACCEPTED_FORMATS and not vetting.safe:
            wrong.append(f"{case.name} [{case.recipe}] refused: {vetting.problems}")
        if case.true_format in REFUSED_FORMATS and not any(
                problem.startswith(f"{case.true_format} images are refused") for problem in vetting.problems):
            wrong.append(f"{case.name} [{case.recipe}] not refused by name: {vetting.problems}")
    assert not wrong, listing(wrong)


def test_handmade_headers_are_images_qemu_reads(corpus):
    """The hand-made Bochs and cloop headers are real: qemu-img opens them with their format."""
    handmade = [case for case in corpus if case.recipe.startswith("hand-made")]
    assert {case.true_format for case in handmade} == {"bochs", "cloop"}
    for case in handmade:
        done = subprocess.run(qemu_command(qemu_img.info_argv(case.path, case.true_format), [case.path]),
                              capture_output=True, text=True, check=False,
                              env=dict(os.environ, **ENVIRONMENT, **confinement.launcher_environment()))
        assert done.returncode == 0, f"{case.recipe}: {done.stderr}"


def test_safe_images_have_formats_qemu_knows(results: Results):
    assert not results.unknown_formats, listing(results.unknown_formats)


def test_qemu_img_opens_only_what_the_inspector_predicted(results: Results):
    assert not results.unpredicted, listing(results.unpredicted)


def test_virtual_sizes_are_qemus(results: Results):
    assert not results.size_mismatches, listing(results.size_mismatches)


def test_backing_chains_are_qemus(results: Results):
    assert not results.chain_mismatches, listing(results.chain_mismatches)


def test_qemu_img_finishes_on_every_safe_image(results: Results):
    """An image that keeps qemu-img busy past the modules' CPU limit should have been refused."""
    assert not results.timeouts, listing(results.timeouts)


def test_the_run_compared_what_qemu_opened(results: Results):
    """Every qemu-img run opens its image at least once: fewer compared opens means the trace was lost."""
    assert results.runs > 100
    assert results.opens >= results.runs
    assert results.sizes_compared > 50 and results.chains_compared > 50


def test_a_leak_is_caught(builder, workspace):
    """The oracle itself: qemu-img on an image the inspector refuses opens the planted secret,
    and the comparison reports exactly that open."""
    case = next(case for case in builder.cases if "qemu reads only the secret" in case.recipe)
    vetting = vet_image(case.path, "qcow2", [builder.allowed])
    assert not vetting.safe
    job = Job(case, "qcow2", "qcow2", "info --backing-chain",
              qemu_img.info_argv(case.path, "qcow2", backing_chain=True), vetting,
              frozenset({os.path.realpath(case.path)}))
    results = Results(seed=builder.seed)
    trace_dir = os.path.join(workspace, "self-test")
    os.makedirs(trace_dir, exist_ok=True)
    found = unpredicted_accesses(job, execute(job, trace_dir, 0), results)
    assert any(f"({builder.shadow!r})" in message for message in found), found
