"""The MTP proxy keeps DeepSeek-V3's drafter/trunk cost ratio (counted from the configs, by hand for 671B)."""

import pytest

from harness.config import ModelConfig
from experiments.mtp_speedup import mtp_cost_ratio


def test_671b_ratio_is_the_hand_count():
    """V3 671B per token: a block activates 187.0M attention + 397.3M MoE weights (8 routed + 1 shared
    experts of 3 x 7168 x 2048, and the 7168 x 256 gate); 3 dense blocks 396.4M FFN; head 7168 x 129280.
    MTP: eh_proj 2 x 7168^2 + one MoE block + head, over 61 blocks + head: ~4.4%."""
    attn = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    moe = 7168 * 256 + 9 * 3 * 7168 * 2048
    dense = 3 * 7168 * 18432
    head = 7168 * 129280
    trunk = 3 * (attn + dense) + 58 * (attn + moe) + head
    mtp = 2 * 7168 * 7168 + attn + moe + head
    assert mtp_cost_ratio(ModelConfig.v3_671b()) == pytest.approx(mtp / trunk)
    assert mtp / trunk == pytest.approx(0.044, abs=0.001)


def test_mtp_proxy_keeps_the_671b_ratio_and_tiny_does_not():
    v3 = mtp_cost_ratio(ModelConfig.v3_671b())
    proxy = ModelConfig.named("mtp_proxy")
    assert proxy.n_mtp_modules == 1 and proxy.n_layers >= 30  # deep
    assert proxy.dim <= 128  # thin: trainable on two cores
    assert v3 / 1.25 < mtp_cost_ratio(proxy) < v3 * 1.25
    assert mtp_cost_ratio(ModelConfig.tiny()) > 0.5  # why tiny cannot show the claim
