"""Training stability under load balancing. Criterion: P2.balance_stability (no loss spikes).

Two short runs of the tiny MoE model (``experiments.balance.train_model``, same seed, data and
``balance_alpha = 1e-4``), with aux-loss-free bias updates (balancing=bias) and without
(balancing=none), done once in ``setup_cache``. A spike is what ``harness.qa.signals.loss_spike_count``
says it is (a loss above the median of the previous 20 steps by more than 6 robust standard
deviations, or a non-finite loss): the one definition the diagnosis and the checkpoint-health rule use too.
"""

from __future__ import annotations

TRAIN_STEPS = 100


class Training:
    """Loss-spike rate of a short MoE training run with and without aux-loss-free balancing."""

    params = [("bias", "none")]
    param_names = ["balancing"]

    def setup_cache(self):
        from experiments.balance import train_model
        from harness.config import ModelConfig
        from harness.qa.signals import loss_spike_count

        cfg = ModelConfig.tiny(balance_alpha=1e-4)
        rates = {}
        for balancing in ("bias", "none"):
            _, trainer, _ = train_model(cfg, TRAIN_STEPS, update_bias=balancing == "bias")
            losses = [r["loss"] for r in trainer.history]
            rates[balancing] = loss_spike_count(losses) / len(losses)
        return rates

    setup_cache.timeout = 400

    def track_loss_spike_rate(self, rates, balancing):
        """P2.balance_stability: fraction of training steps that are loss spikes (``loss_spike_count``)."""
        return rates[balancing]

    track_loss_spike_rate.unit = "fraction"
    track_loss_spike_rate.pretty_name = "Loss-spike rate, short MoE training run"
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    track_loss_spike_rate.version = "b42d457d2f8a55be2de16329408b45a825212f49d810e83f861560aef9d331ba"
