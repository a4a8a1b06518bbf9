"""P2.moe_balance and P2.balance_stability: short tiny-MoE training runs with and without balancing.

``train_model`` is the shared run (a fixed seed, the shipped corpus, ``Trainer`` through its public
API, the expert counts of every step kept); ``expert_balance_criterion`` and ``loss_spike_criterion``
turn runs into the criteria's numbers. A spike is what ``harness.qa.signals.loss_spike_count`` says it
is, the one definition the checkpoint-health rule and the diagnosis use too.

Axis letters (the repository's one alphabet, docs/internals.md): D model width, E routed experts,
L MoE layers, and S training steps (a leading axis of stacked per-step loads).
"""

from __future__ import annotations

import numpy as np

from harness.config import ModelConfig, TrainConfig
from harness.qa.signals import loss_spike_count


def criterion_data(batch_size: int = 8, seq_len: int = 64):
    """The shipped corpus cut into ``batch_size`` x ``seq_len`` batches, data order seed 0."""
    from tf_impl.data import DataConfig

    return DataConfig(batch_size=batch_size, seq_len=seq_len, seed=0)


def train_model(cfg: ModelConfig, steps: int, tc: TrainConfig | None = None, data=None, seed: int = 0,
                update_bias: bool = True, model_hook=None):
    """Build ``Transformer(cfg, seed)`` (``model_hook(model)`` may edit it first) and train ``steps`` steps.

    Returns ``(model, trainer, loads)``; ``loads`` [S, L, E] holds each step's expert counts.
    """
    from tf_impl import Transformer
    from tf_impl.train import Trainer

    model = Transformer(cfg, seed=seed)
    if model_hook is not None:
        model_hook(model)
    tc = tc or TrainConfig(lr=3e-3, warmup_steps=20, total_steps=steps)
    trainer = Trainer(model, cfg, tc, data or criterion_data(), progress=False, update_bias=update_bias)
    loads = []
    trainer.fit(steps, on_step=lambda step, record, seconds: loads.append(trainer.last_expert_load))
    return model, trainer, np.stack(loads)


def load_cv(loads: np.ndarray) -> float:
    """Coefficient of variation (std / mean) of per-expert load, loads [..., E] summed over leading steps.

    ``loads`` [S, L, E] -> the CV of each layer's total over the S steps, averaged over the L layers.
    """
    total = loads.sum(0)  # [L, E]
    return float(np.mean(total.std(-1) / np.maximum(total.mean(-1), 1e-9)))


def skew_router(strength: float):
    """Model hook: push every gate's weights towards the mean direction of the embeddings for experts 0-1.

    A router that starts (and, without balancing, stays) biased towards two experts, so the
    benchmark shows what balancing fixes even in runs too short for natural collapse.
    """
    import tensorflow as tf

    def hook(model):
        direction = tf.reduce_mean(model.embed, 0)
        direction = direction / tf.norm(direction)  # [D]
        for layer in list(model.layers) + [m.block for m in model.mtp]:
            gate = getattr(layer.ffn, "gate_weight", None)
            if gate is not None:
                boost = np.zeros(gate.shape, np.float32)  # [E, D]
                boost[:2] = strength * direction.numpy()
                gate.assign_add(boost)

    return hook


def expert_balance_criterion(steps: int = 120, skew: float = 4.0, gamma: float = 0.01, seed: int = 0) -> dict[str, float]:
    """Expert-load CV after training a tiny MoE with vs without aux-loss-free bias balancing.

    Setup: ``ModelConfig.tiny`` (8 experts, top-2, 2 groups, one main MoE layer + the MTP block),
    the shipped corpus, ``steps`` AdamW steps, a router skewed at init towards experts 0 and 1
    (``skew_router(skew)``), ``bias_update_speed = gamma`` (0.01, 10x DeepSeek's 0.001, because the run
    is ~100x shorter). Both runs are identical except for the bias update. The CV is of the
    expert counts summed over the last quarter of the steps, averaged over the MoE layers.

    Args:
        steps: training steps of each run.
        skew: strength of the initial router skew (``skew_router``).
        gamma: the bias update speed of the balanced run.
        seed: seed of the model init and data order, shared by both runs.

    Returns:
        ``{"cv_with_bias", "cv_without_bias", "max_load_ratio_with_bias", "max_load_ratio_without_bias",
        "final_loss_with_bias", "final_loss_without_bias"}`` (max_load_ratio = max / mean load;
        final loss = mean of the last 10 steps).
    """
    cfg = ModelConfig.tiny(bias_update_speed=gamma)
    out = {}
    for name, update in (("with_bias", True), ("without_bias", False)):
        _, trainer, loads = train_model(cfg, steps, seed=seed, update_bias=update, model_hook=skew_router(skew))
        tail = loads[-max(1, steps // 4):]
        total = tail.sum(0)  # [L, E]
        out[f"cv_{name}"] = load_cv(tail)
        out[f"max_load_ratio_{name}"] = float(np.mean(total.max(-1) / total.mean(-1)))
        out[f"final_loss_{name}"] = float(np.mean([r["loss"] for r in trainer.history[-10:]]))
    return out


def loss_spike_criterion(steps: int = 150, seed: int = 0, window: int = 20, threshold: float = 6.0) -> dict[str, float]:
    """Loss spikes in a tiny MoE run with balancing on (bias updates + balance_alpha = 1e-4).

    A spike is a step whose loss exceeds the median of the previous ``window`` steps by ``threshold``
    robust standard deviations (``harness.qa.signals.loss_spike_count``, the one definition of a spike).

    Args:
        steps: training steps of the run.
        seed: seed of the model init and data order.
        window: the trailing steps a loss is compared against.
        threshold: how many robust standard deviations above the median count as a spike.

    Returns:
        ``{"spikes", "steps", "spikes_per_1k_steps", "final_loss"}`` (final loss = mean of the last 10 steps).
    """
    cfg = ModelConfig.tiny(balance_alpha=1e-4)
    _, trainer, _ = train_model(cfg, steps, seed=seed)
    losses = [r["loss"] for r in trainer.history]
    spikes = loss_spike_count(losses, window, threshold)
    return {"spikes": float(spikes), "steps": float(steps), "spikes_per_1k_steps": 1000.0 * spikes / steps,
            "final_loss": float(np.mean(losses[-10:]))}
