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


def test_expert_read_growth_is_the_hand_count():
    """Two tokens reach 1 - (1 - K/E)^2 of the experts where one reaches K/E: at batch 1 that is 1.75x for
    mtp_proxy (2 of 8) and ~1.97x for V3 (8 of 256); a batch of 8 sequences already reaches 7.2 of the
    proxy's 8 experts, and 16 tokens reach 7.92 (x1.10): why the criterion decodes a serving batch."""
    from experiments.mtp_speedup import expert_read_growth

    proxy, v3 = ModelConfig.named("mtp_proxy"), ModelConfig.v3_671b()
    assert expert_read_growth(proxy, 1) == pytest.approx(3.5 / 2)
    assert expert_read_growth(v3, 1) == pytest.approx(256 * (1 - (31 / 32) ** 2) / 8)
    assert expert_read_growth(proxy, 8) == pytest.approx((1 - 0.75 ** 16) / (1 - 0.75 ** 8))
    assert expert_read_growth(proxy, 8) < 1.25 < expert_read_growth(proxy, 1)
    assert proxy.max_batch_size >= 8  # the criterion's batch fits the preset


def test_mtp_criterion_refuses_a_batch_that_does_not_divide_the_prompts():
    from experiments.mtp_speedup import mtp_criterion

    with pytest.raises(ValueError, match="multiple of batch=8"):
        mtp_criterion(n_prompts=4, batch=8)
