"""P2.mtp_speedup: self-speculative decoding with MTP module 0 against plain greedy decoding.

``compare_with_greedy`` times the two decoders (``tf_impl.speculative.SpeculativeDecoder`` and
``Transformer.generate``) alternating in one process and checks that their tokens are identical;
``mtp_criterion`` trains the tiny model first, so that the drafter has learned something, then
compares on held-out prompts.
"""

from __future__ import annotations

import time

import numpy as np


def compare_with_greedy(model, prompts, max_new_tokens: int, mode: str = "absorb", repeats: int = 2,
                        jit_compile: bool = True) -> dict[str, float]:
    """Speculative vs plain greedy (``model.generate``, same cache mode) on ``prompts`` [B, n].

    Both are warmed up (compiled) first, then timed ``repeats`` times, alternating greedy and speculative
    so that both see the same machine state; each pair gives one speed-up sample. ``jit_compile`` is for
    the speculative decoder; greedy follows ``model.compiled``. Returns ``{"acceptance_rate",
    "identical" (1.0 if the tokens are equal), "greedy_tokens_per_s", "speculative_tokens_per_s"
    (best of the repeats), "speedup" (median of the pairs), "speedup_samples" (list, one per pair),
    "tokens_per_round"}``.
    """
    from tf_impl.speculative import SpeculativeDecoder

    prompts = np.asarray(prompts, np.int32)
    dec = SpeculativeDecoder(model, mode, jit_compile)
    new_tokens = prompts.shape[0] * max_new_tokens

    def greedy_call():
        return model.generate(prompts, max_new_tokens, temperature=0.0, mode=mode)

    def timed(fn):
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result

    greedy_call(), dec.generate(prompts, max_new_tokens)  # compile both
    t_greedy, t_spec = [], []
    for _ in range(repeats):
        t, greedy = timed(greedy_call)
        t_greedy.append(t)
        t, (spec, stats) = timed(lambda: dec.generate(prompts, max_new_tokens))
        t_spec.append(t)
    samples = [g / s for g, s in zip(t_greedy, t_spec)]
    return {
        "acceptance_rate": stats.acceptance_rate,
        "identical": float(np.array_equal(greedy, spec)),
        "greedy_tokens_per_s": new_tokens / min(t_greedy),
        "speculative_tokens_per_s": new_tokens / min(t_spec),
        "speedup": float(np.median(samples)),
        "speedup_samples": samples,
        "tokens_per_round": max_new_tokens / max(1, stats.rounds + 1),
    }


def mtp_criterion(steps: int = 300, seed: int = 0, n_prompts: int = 4, prompt_len: int = 16,
                  max_new_tokens: int = 40, repeats: int = 2) -> dict[str, float]:
    """Train ``ModelConfig.tiny`` (one MTP module) on the shipped corpus, then decode validation prompts.

    Each of ``n_prompts`` prompts (batch 1, so acceptance is per sequence) is continued by plain greedy
    decoding and by self-speculative decoding, both XLA-compiled with the absorbed cache.

    Args:
        steps: training steps before decoding; the drafter must learn something for acceptance to mean much.
        seed: seed of the model init and the data order.
        n_prompts: validation prompts decoded, each on its own (batch 1).
        prompt_len: tokens of each prompt.
        max_new_tokens: tokens generated per prompt.
        repeats: alternating greedy/speculative timing pairs per prompt.

    Returns:
        ``{"acceptance_rate", "speedup", "greedy_tokens_per_s", "speculative_tokens_per_s"}`` averaged over
        the prompts; ``"speedup_samples"``, every prompt's per-pair speed-ups (n_prompts * repeats);
        ``"identical"``, 1.0 only if every prompt matched greedy; ``"final_ce"`` and ``"final_mtp_loss"``,
        means over the last 10 training steps.
    """
    from experiments.balance import train_model
    from harness.config import ModelConfig
    from tf_impl.data import DataConfig, make_dataset

    cfg = ModelConfig.tiny()
    model, trainer, _ = train_model(cfg, steps, seed=seed)
    prompts = next(iter(make_dataset(DataConfig(batch_size=n_prompts, seq_len=cfg.max_seq_len), split="val"))).numpy()
    runs = [compare_with_greedy(model, prompts[i:i + 1, :prompt_len], max_new_tokens, repeats=repeats)
            for i in range(n_prompts)]
    out = {k: float(np.mean([r[k] for r in runs])) for k in
           ("acceptance_rate", "speedup", "greedy_tokens_per_s", "speculative_tokens_per_s")}
    out["speedup_samples"] = [x for r in runs for x in r["speedup_samples"]]
    out["identical"] = float(min(r["identical"] for r in runs))
    tail = trainer.history[-10:]
    out["final_ce"] = float(np.mean([r["ce"] for r in tail]))
    out["final_mtp_loss"] = float(np.mean([r["mtp"] for r in tail]))
    return out
