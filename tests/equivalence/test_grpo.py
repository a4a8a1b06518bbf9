"""The GRPO rows (harness.equivalence_align): the canonical batch exercises every branch, the rows pass on
equal models (also part of tests/equivalence/test_equivalence.py's tiny run) and fail on a real difference."""

import numpy as np
import pytest

from harness.interop import equivalence as eq
from harness.interop import equivalence_align as ea


@pytest.fixture(scope="module")
def pair():
    from harness.interop.bridge import build_model

    cfg = eq.named_config("tiny")
    state = eq.reference_state(cfg)
    return eq._Pair(cfg, build_model("tf", cfg, state, compiled=False), build_model("flax", cfg, state),
                    np.zeros((1, 1), np.int32), np.random.default_rng(0))


def test_canonical_batch_clips_on_both_sides_and_keeps_off_the_clip_edges(pair):
    batch = ea.canonical_batch(pair.cfg, pair.flax, np.random.default_rng(0))
    from reference.alignment import next_token_log_probs

    m = batch["mask"] > 0

    logits, _ = pair.flax.forward_aux(batch["tokens"])
    rho = np.exp(np.asarray(next_token_log_probs(logits, batch["tokens"])) - batch["old_logp"])[m]
    assert (rho > 1 + ea.CLIP_EPS).any() and (rho < 1 - ea.CLIP_EPS).any() and (np.abs(rho - 1) < ea.CLIP_EPS).any()
    assert np.abs(np.abs(rho - 1) - ea.CLIP_EPS).min() > 0.05
    assert (batch["advantages"] > 0).any() and (batch["advantages"] < 0).any()
    assert not m[:, :ea.PROMPT - 1].any() and not m[-1, -1]


def test_grpo_rows_pass_on_equal_models_and_fail_on_a_different_kl_weight(pair, monkeypatch):
    rows = ea.grpo_rows(pair)
    assert [r.verdict for r in rows] == ["PASS"] * 3, eq.format_table(rows)
    from reference import alignment as flax_alignment

    real = flax_alignment.grpo_loss_and_gradients
    monkeypatch.setattr(flax_alignment, "grpo_loss_and_gradients",
                        lambda *a, clip_eps, beta: real(*a, clip_eps=clip_eps, beta=beta * 1.5))
    bad = ea.grpo_rows(pair)
    assert [r.verdict for r in bad[1:]] == ["FAIL", "FAIL"], eq.format_table(bad)
