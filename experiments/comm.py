"""P3.comm_overhead by proxy: the share of a data-parallel training step spent in its gradient all-reduce,
on logical CPU devices under ``tf.distribute.MirroredStrategy`` (TF's own engine and its own collective).

Stated plainly: this is the data-parallel all-reduce step of the bench model, not DeepSeek-V3's training
step, whose communication is dominated by the expert-parallel all-to-all (which DualPipe overlaps; see
``experiments.comm_model`` for the stated 64-GPU cost model). The expert-parallel step of issue 14's other
half was not on main when this was written.

What the proxy keeps: the ratio of work to communication per step. Communication per step is one
all-reduce of every gradient (fixed by the parameter count); work grows with the tokens each replica
processes per step. DeepSeek-V3 processes about 18 tokens per thousand parameters a GPU holds per step
(``TOKENS_PER_PARAM``: a 15360 x 4096-token batch over 2048 GPUs, about 1.7B parameters held per GPU under
PP16 x EP64), so each replica here processes ``tokens_per_replica`` tokens (gradient accumulation over
micro-batches of 2 x 128) before the one all-reduce: 1.8e-5 x the bench model's 90.7M parameters ~ 1,600,
rounded to 1,536 (six micro-batches).

Measured in interleaved rounds (medians), each call a ``tf.function`` over ``strategy.run``: ``compute``, the
replicas' forward and backward over their micro-batches, one call per micro-batch (one graph of all of them
would run their forwards at once and hold every activation: 12 GB here); ``allreduce``, the one
``ReplicaContext.all_reduce`` (SUM) of the gradients. The step runs them one after the other, as a plain
data-parallel step without overlap does: ``collective_share = allreduce / (compute + allreduce)``.
Two physical cores run all logical devices: the replicas compete for them, as the all-reduce's copies do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Sequence

import numpy as np

MICRO_SHAPE = (2, 128)          # sequences x tokens of one accumulation micro-batch per replica
TOKENS_PER_PARAM = 1.8e-5       # DeepSeek-V3: tokens per step per GPU / parameters held per GPU (see doc)


def micro_batches(n_params: int) -> int:
    """Accumulation micro-batches per replica so tokens per replica ~ TOKENS_PER_PARAM x parameters."""
    per_micro = MICRO_SHAPE[0] * MICRO_SHAPE[1]
    return max(1, round(TOKENS_PER_PARAM * n_params / per_micro))


def collective_share(n_devices: int = 2, rounds: int = 5, seed: int = 0) -> dict[str, float]:
    """Time a data-parallel step of the bench model on ``n_devices`` logical CPUs (configured here: call it
    first thing in a fresh process). Returns the shares and the seconds behind them."""
    from tf_impl.pipeline.execute import logical_cpus

    devices = logical_cpus(n_devices)
    import tensorflow as tf

    from harness.config import ModelConfig
    from tf_impl import Transformer
    from tf_impl.losses import compute_loss

    cfg = ModelConfig.bench()
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = Transformer(cfg, seed=seed, compiled=False)
    variables = model.trainable_variables
    n_micro = micro_batches(model.num_params())
    rng = np.random.default_rng(seed)
    data = tf.constant(rng.integers(0, cfg.vocab_size, (n_devices, n_micro) + MICRO_SHAPE), tf.int32)
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda ctx: data[ctx.replica_id_in_sync_group])                          # [n_micro, b, T] per replica

    def grads_of(tokens):
        with tf.GradientTape() as tape:
            logits, aux = model.forward_aux(tokens)
            loss, _ = compute_loss(logits, aux, tokens, cfg)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    def all_reduce(grads):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)

    # One micro-batch per call (a graph of several would run their forwards at once and hold them all).
    grad_fn = tf.function(lambda i: strategy.run(lambda t: grads_of(t[i]), args=(per_replica,)), autograph=False)
    grads = grad_fn(tf.constant(0))
    reduce_fn = tf.function(lambda: strategy.run(all_reduce, args=(grads,)), autograph=False)

    def done(out) -> None:
        for value in strategy.experimental_local_results(out):
            value[-1].numpy()  # eager CPU execution is synchronous; this only makes sure the call returned

    done(reduce_fn())                                                             # trace and warm up
    compute, reduce = [], []
    for _ in range(rounds):                                                       # interleaved: one step each
        start = time.perf_counter()
        for i in range(n_micro):
            done(grad_fn(tf.constant(i)))
        compute.append(time.perf_counter() - start)
        start = time.perf_counter()
        done(reduce_fn())
        reduce.append(time.perf_counter() - start)
    t_compute, t_reduce = statistics.median(compute), statistics.median(reduce)
    grad_bytes = sum(int(np.prod(v.shape)) * 4 for v in variables)
    return {"collective_share": t_reduce / (t_compute + t_reduce), "step_s": t_compute + t_reduce,
            "allreduce_s": t_reduce, "compute_s": t_compute,
            "tokens_per_replica": float(n_micro * MICRO_SHAPE[0] * MICRO_SHAPE[1]), "gradient_bytes": float(grad_bytes),
            "devices": float(n_devices)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.comm --devices N``: the timed all-reduce share on N logical CPUs, one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m experiments.comm", description=main.__doc__)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(collective_share(args.devices, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
