"""One ``compare`` run per config per session: model builds and XLA compiles dominate the cost on 2 cores."""

from __future__ import annotations

import functools

import pytest

from harness.interop import equivalence as eq
from harness.interop.rows import Row

# What the default run compares per config (the full set for every config runs under -m slow).
# tiny (dense + MoE with 2 groups + MTP) gets everything; the dense-only and YaRN configs get the checks
# their difference touches, so the suite stays under 3 minutes on 2 cores. bench-layer is one MoE block
# at the bench widths: multi-block FP8 weights and activations, 32 experts in 4 groups, in one layer.
DEFAULT_CHECKS = {
    "tiny": eq.ALL,
    "tiny-dense": ("mtp", "logits", "loss", "gradients"),  # its attention is tiny's: MLA is checked there
    "tiny-yarn": ("rope", "mla", "logits", "generation"),
    "bench-layer": ("mla", "gate", "moe", "logits", "fp8"),
}


@functools.lru_cache(maxsize=None)
def rows_for(config: str, checks: tuple[str, ...]) -> tuple[Row, ...]:
    return tuple(eq.compare(eq.named_config(config), checks=checks))


@pytest.fixture(scope="session")
def suite_rows():
    return rows_for
