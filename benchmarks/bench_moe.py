"""Mixture-of-Experts: sparsity (time vs expert count) and load balancing.

Criteria: P1.moe_functional, PX.moe_sparsity (time ratio) and P1.moe_functional, P2.moe_balance
(load CV). Both numbers are computed once in ``setup_cache`` (one process, one TF import) and read
by the ``track_`` methods.
"""

from __future__ import annotations

from . import common

TOKENS = (8, 256)         # [B, T] routed through the layer: the prefill workload of bench_throughput
RATIO_REPS = 9            # alternating timing pairs; their ratios are the samples asv records
BALANCE_STEPS = 120  # the criterion function's default: the bias needs ~100 steps at gamma=0.01 to settle


def _moe_time_ratios() -> list[float]:
    """Per alternating pair, time of a 64-expert / an 8-expert ``tf_impl`` MoE layer, same K, widths and
    tokens, XLA."""
    import numpy as np
    import tensorflow as tf

    from tf_impl.moe import MoE

    cfg = common.config("bench")
    x = tf.constant(np.random.default_rng(common.SEED).standard_normal((*TOKENS, cfg.dim), dtype=np.float32))
    calls = {}
    for n_experts in (64, 8):
        layer = MoE(dim=cfg.dim, moe_inter_dim=cfg.moe_inter_dim, n_routed_experts=n_experts,
                    n_shared_experts=cfg.n_shared_experts, n_activated_experts=cfg.n_activated_experts,
                    n_expert_groups=1, n_limited_groups=1, score_func=cfg.score_func,
                    route_scale=cfg.route_scale, fp8=False, rng=np.random.default_rng(common.SEED))
        fn = tf.function(lambda x, layer=layer: layer(x, differentiable=False)[0], jit_compile=True)
        calls[n_experts] = lambda fn=fn: fn(x).numpy()
        common.warm_up(calls[n_experts])
    return common.ratio_samples(calls[64], calls[8], RATIO_REPS)


class MoE:
    """MoE layer cost against expert count, and expert-load balance with and without bias updates."""

    def setup_cache(self):
        from experiments.balance import expert_balance_criterion

        balance = expert_balance_criterion(steps=BALANCE_STEPS)
        return {"time_ratio": _moe_time_ratios(),
                "cv": {"bias": balance["cv_with_bias"], "none": balance["cv_without_bias"]}}

    setup_cache.timeout = 400

    def track_time_ratio_64_vs_8_experts(self, numbers):
        """P1.moe_functional, PX.moe_sparsity: TF MoE layer time, 64 / 8 routed experts, same activated count.

        Bench widths (D=512, F=256, K=4, one shared expert), 8 x 256 tokens, inference dispatch under
        tf.function(jit_compile=True); asv records the median of the alternating pairs' ratios and their spread.
        """
        return common.sampled(numbers["time_ratio"])

    track_time_ratio_64_vs_8_experts.unit = "ratio"
    track_time_ratio_64_vs_8_experts.version = "2"  # 2: median of per-pair ratios (was: ratio of medians)
    track_time_ratio_64_vs_8_experts.pretty_name = "MoE layer time, 64 vs 8 routed experts (K=4)"

    def track_load_cv(self, numbers, balancing):
        """P1.moe_functional, P2.moe_balance: CV of per-expert token counts after training on a skewed router.

        ``experiments.balance.expert_balance_criterion``: tiny MoE, router skewed at init towards two
        experts, bias updates on (bias) or off (none), CV over the last quarter of the steps.
        """
        return numbers["cv"][balancing]

    track_load_cv.params = [("bias", "none")]
    track_load_cv.param_names = ["balancing"]
    track_load_cv.unit = "cv"
    track_load_cv.pretty_name = "Expert load CV after training, skewed router"
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    track_load_cv.version = "d4188d986aaed18aa59f2239a0f5da8781b4022ffde2159f6662202acb0026ab"
