"""DualPipe against 1F1B: simulated pipeline bubbles from measured stage costs. Criterion: P3.dualpipe_bubbles
("DualPipe reduces pipeline bubbles by > 40%"), SIMULATION evidence.

``setup_cache`` measures, once, the forward (F), full backward (B) and weight-gradient (W) seconds of each
of the bench model's six layers as its own stage (stage 0 with the embedding, the last with the norm, head,
MTP module and loss; ``experiments.pipeline.stage_costs``: graph-mode ``tf.function`` per stage, micro-batch
2 x 128 tokens, interleaved rounds, medians). A stage of a coarser cut runs its layers one after another,
so its costs are the sums of its layers' (``stage_layers``). Then both schedules are replayed on a clock
(``tf_impl.pipeline.simulate``) at the same PP and micro-batch count (20, the DualPipe README's figure), an
F&B pair charged the full F + B (no credit for overlap: this CPU has no communication to hide).
The schedules themselves are executed on logical devices, gradients equal to the unpipelined step's, in
``tests/experiments/test_pipeline.py``; the simulator matches the published formulas in
``tests/tf_impl/test_pipeline_schedules.py``.
Wall time: setup_cache 153 s on the 2-core host at load average ~20 (model build, six stages traced, five
rounds); an upper bound.
Memory per rank against the published table (DualPipe 2x parameters, PP + 1 activations) is read from the
generated schedules in the tests, not here: it is a property of the schedule, not of this host.
"""

from __future__ import annotations

PPS = (4, 6)


def _coarsen(costs, pp: int):
    """Stage costs of a ``pp``-stage cut from the per-layer costs (the six-stage cut)."""
    from tf_impl.pipeline.execute import stage_layers
    from tf_impl.pipeline.simulate import Costs

    ranges = stage_layers(len(costs.f), pp)
    return Costs(*(tuple(sum(part[i] for i in r) for r in ranges) for part in (costs.f, costs.b, costs.w)))


class PipelineBubbles:
    """Simulated 1F1B and DualPipe bubbles of the bench model's measured stage costs, PP = 4 and 6."""

    version = 1
    params = [PPS]
    param_names = ["pp"]

    def setup_cache(self):
        from experiments.pipeline import N_MICRO, bubbles, stage_costs

        per_layer = stage_costs(6, rounds=5)
        return {pp: bubbles(_coarsen(per_layer, pp), pp, N_MICRO) for pp in PPS}

    setup_cache.timeout = 600

    def track_bubble_reduction(self, numbers, pp):
        """P3.dualpipe_bubbles: 1 - DualPipe bubble / 1F1B bubble, simulated with measured per-stage costs."""
        return numbers[pp]["bubble_reduction"]

    track_bubble_reduction.unit = "fraction"
    track_bubble_reduction.pretty_name = "DualPipe vs 1F1B: bubble reduction (simulated, measured costs)"
