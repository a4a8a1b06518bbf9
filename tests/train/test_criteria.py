"""The roadmap criterion functions (slow: each trains a tiny model for a minute or more)."""

import math

import pytest

from tf_impl.checkpoint import checkpoint_criterion
from tf_impl.speculative import mtp_criterion
from tf_impl.train import context_extension_criterion, expert_balance_criterion, fp8_criterion, loss_spike_criterion

pytestmark = pytest.mark.slow


def test_bias_balancing_lowers_load_cv():
    r = expert_balance_criterion()
    assert r["cv_with_bias"] < r["cv_without_bias"]


def test_mtp_drafts_are_accepted_and_output_is_greedy():
    r = mtp_criterion()
    assert r["identical"] == 1.0 and r["acceptance_rate"] > 0.5


def test_fp8_training_tracks_fp32():
    r = fp8_criterion()
    assert r["relative_gap"] < 0.05


def test_context_extension_numbers_are_finite():
    r = context_extension_criterion()
    assert all(math.isfinite(v) and v > 0 for v in r.values())


def test_loss_spikes_and_checkpoint_numbers():
    assert loss_spike_criterion()["steps"] == 150
    r = checkpoint_criterion(repeats=1)
    assert r["save_gb_s"] > 0 and r["extrapolated_671b_save_s"] > r["save_s"]
