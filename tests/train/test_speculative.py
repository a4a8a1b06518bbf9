"""Self-speculative decoding gives exactly greedy decoding's tokens, on untrained and trained models.

The models run uncompiled (graph mode, no XLA) here: XLA compiles of the inference path cost tens of
seconds each, and identity does not depend on the compiler (the benchmarks time the XLA paths).
"""

import numpy as np
import pytest

from harness.config import ModelConfig
from tf_impl import Transformer
from tf_impl.data import DataConfig, make_dataset
from experiments.mtp_speedup import compare_with_greedy
from tf_impl.speculative import SpeculativeDecoder
from tf_impl.train import TrainConfig, Trainer

CFG = ModelConfig.tiny(max_seq_len=48)


def val_prompts(batch, length):
    return next(iter(make_dataset(DataConfig(batch_size=batch, seq_len=48), split="val"))).numpy()[:, :length]


@pytest.mark.parametrize("mode", ["absorb", "naive"])
def test_untrained_model_matches_greedy(mode):
    model = Transformer(CFG, seed=0, compiled=False)
    prompt = np.random.default_rng(0).integers(0, 256, (2, 7)).astype(np.int32)
    tokens, stats = SpeculativeDecoder(model, mode, jit_compile=False).generate(prompt, 40)  # runs up to max_seq_len
    assert np.array_equal(tokens, model.generate(prompt, 40, temperature=0.0, mode=mode))
    assert tokens.shape == (2, 40) and stats.drafts > 0


@pytest.fixture(scope="module")
def trained():
    model = Transformer(CFG, seed=0, compiled=False)
    Trainer(model, CFG, TrainConfig(lr=3e-3, warmup_steps=5, total_steps=40), DataConfig(batch_size=8, seq_len=48),
            progress=False).fit(40)
    return model


def test_trained_model_matches_greedy_and_accepts_drafts(trained):
    prompt = val_prompts(1, 12)
    tokens, stats = SpeculativeDecoder(trained, jit_compile=False).generate(prompt, 30)
    assert np.array_equal(tokens, trained.generate(prompt, 30, temperature=0.0))
    assert stats.accepted > 0


@pytest.mark.parametrize("mode", ["absorb", "naive"])
def test_a_batch_accepts_per_row_as_each_row_alone(trained, mode):
    """Rows accept or reject their own drafts: the batch's counts are the sum of each row decoded alone,
    and it takes as many rounds as its slowest row (all-or-nothing acceptance would fail both)."""
    prompts = val_prompts(4, 12)
    dec = SpeculativeDecoder(trained, mode, jit_compile=False)
    tokens, stats = dec.generate(prompts, 30)
    assert np.array_equal(tokens, trained.generate(prompts, 30, temperature=0.0, mode=mode))
    alone = [dec.generate(prompts[i:i + 1], 30)[1] for i in range(4)]
    assert len({s.accepted for s in alone}) > 1, "the rows should differ in acceptance for this test to mean much"
    assert stats.accepted == sum(s.accepted for s in alone)
    assert stats.drafts == sum(s.drafts for s in alone)
    assert stats.rounds == max(s.rounds for s in alone)


def test_no_mtp_module_is_refused():
    with pytest.raises(ValueError, match="n_mtp_modules=0"):
        SpeculativeDecoder(Transformer(ModelConfig.tiny(n_mtp_modules=0), seed=0, compiled=False))


def test_compare_with_greedy_reports_numbers():
    r = compare_with_greedy(Transformer(CFG, seed=0, compiled=False), val_prompts(1, 8), 8, repeats=3, jit_compile=False)
    assert r["identical"] == 1.0 and 0.0 <= r["acceptance_rate"] <= 1.0
    assert r["greedy_tokens_per_s"] > 0 and r["speculative_tokens_per_s"] > 0
    # one speed-up sample per alternating greedy/speculative pair; the speed-up is their median
    assert len(r["speedup_samples"]) == 3 and r["speedup"] == sorted(r["speedup_samples"])[1]


@pytest.mark.slow  # the 32-layer proxy: minutes per mode on 2 cores (naive > 25 min under load)
@pytest.mark.parametrize("mode", ["absorb", "naive"])
def test_deep_thin_proxy_matches_greedy_across_read_buckets(mode):
    """The mtp_proxy preset (32 layers, DeepSeek-V3's drafter/trunk cost ratio), untrained: every round
    verifies [next token, draft] in one length-2 forward, rejected drafts are rolled back with
    KVCache.truncate, and the compiled steps read only the filled cache bucket (16, 24, 32 slots here):
    the tokens are still greedy decoding's."""
    cfg = ModelConfig.mtp_proxy(max_seq_len=32)
    model = Transformer(cfg, seed=0, compiled=False)
    prompt = np.random.default_rng(1).integers(0, 256, (2, 5)).astype(np.int32)
    tokens, stats = SpeculativeDecoder(model, mode, jit_compile=False).generate(prompt, 27)  # up to max_seq_len
    assert np.array_equal(tokens, model.generate(prompt, 27, temperature=0.0, mode=mode))
    assert stats.rounds > 0 and stats.drafts == stats.rounds
