"""P3.dualpipe_bubbles: DualPipe against 1F1B, executed on logical devices and simulated from measured costs.

Three pieces, each usable alone:

* ``gradient_check``: run one training step of the bench model under a schedule on logical CPU devices
  (``tf_impl.pipeline.execute``) and compare its loss and every gradient with the unpipelined step
  (``forward_aux`` + ``compute_loss`` on the whole batch), in units of the one tolerance table
  (``harness.interop.tolerances.TOLERANCES``: ``loss``, ``gradients``). Logical devices must exist before TF
  initialises, so callers run it in a fresh process: ``python -m experiments.pipeline grads ...``.
* ``stage_costs``: per-stage seconds of a forward chunk F, a full backward chunk B and its weight part W,
  measured on the bench model cut into PP stages (graph-mode ``tf.function`` per stage, interleaved
  rounds, medians): ``F = t(fwd)``, ``B = t(fwd + full backward) - F``, ``W = B - (t(fwd + input-gradient
  backward) - F)``. Stage 0's input is token ids, so its input-gradient half does no work (W = B there).
* ``bubbles``: the simulated bubble of both schedules with those costs (``tf_impl.pipeline.simulate``), at
  the same PP and micro-batch count, and the reduction ``1 - bubble_DualPipe / bubble_1F1B``.

Bubble here is the simulated step time beyond the busiest rank's own compute (``Timeline.bubble``): what
the pipeline adds to the bottleneck rank, the quantity the published formulas give for uniform stages.
An overlapped F&B pair is charged F + B: the overlap hides communication, and this CPU has none to hide,
so DualPipe gets no credit for it here (its published bubble uses F&B <= F + B).

What it cannot say: timings are of a 6-layer bench model on a shared 2-core CPU, not H800s; PP is at most
6 (one layer per stage); communication is zero in the simulation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Sequence

import numpy as np

from harness.config import ModelConfig

SEQ_LEN = 128        # tokens per sequence of a cost-measurement micro-batch
MICRO_BATCH = 2      # sequences per micro-batch when measuring costs (256 tokens: matmuls dominate)
N_MICRO = 20         # micro-batches per step in the bubble comparison (the DualPipe README's figure)


def bench_config(balance_alpha: float = 1e-2) -> ModelConfig:
    """The bench model with the sequence-balance loss switched on, so its per-stage terms are exercised."""
    return ModelConfig.bench(balance_alpha=balance_alpha)


def _max_over_tolerance(a: np.ndarray, b: np.ndarray, key: str) -> float:
    """max|a - b| / allowed, allowed per the tolerance table's row ``key`` (b is the unpipelined reference)."""
    from harness.interop.tolerances import TOLERANCES

    tol = TOLERANCES[key]
    scale = np.max(np.abs(b)) if tol.per == "tensor" else np.abs(b)
    allowed = tol.atol + tol.rtol * scale
    return float(np.max(np.abs(a - b) / allowed))


def gradient_check(names: Sequence[str], pp: int, n_micro: int, seq_len: int = 16,
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """Pipelined vs unpipelined loss and gradients of the bench model, per schedule in ``names``, on one
    batch of ``n_micro`` sequences (one per micro-batch); needs ``pp`` logical devices.

    Returns per schedule ``loss_over_tolerance`` and ``worst_gradient_over_tolerance`` (<= 1 passes),
    ``tensors`` compared and ``seconds`` the pipelined step took.
    """
    import tensorflow as tf

    from tf_impl import Transformer
    from tf_impl.pipeline import execute, schedules
    from tf_impl.losses import compute_loss

    cfg = bench_config()
    plans = [schedules.build(name, pp, n_micro) for name in names]
    for plan in plans:
        schedules.validate(plan)
    model = Transformer(cfg, seed=seed, compiled=False)
    tokens = np.random.default_rng(seed).integers(0, cfg.vocab_size, (n_micro, seq_len)).astype(np.int32)
    with tf.GradientTape() as tape:
        logits, aux = model.forward_aux(tokens)
        loss, _ = compute_loss(logits, aux, tf.constant(tokens), cfg)
    ref = dict(zip([v.ref() for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    out = {}
    for plan in plans:
        start = time.perf_counter()
        got = execute.run(model, plan, tokens)
        seconds = time.perf_counter() - start
        worst, missing = 0.0, []
        for key, g in ref.items():
            mine = got.grads.get(key)
            if (g is None) != (mine is None):
                missing.append(key.deref().name)
            elif g is not None:
                worst = max(worst, _max_over_tolerance(mine.numpy(), tf.convert_to_tensor(g).numpy(), "gradients"))
        if missing:
            raise AssertionError(f"{plan.name}: pipelined and unpipelined steps disagree on which tensors get a "
                                 f"gradient: {missing}")
        out[plan.name] = {"loss_over_tolerance": _max_over_tolerance(np.float32(got.loss), np.float32(float(loss)), "loss"),
                          "worst_gradient_over_tolerance": worst, "tensors": float(len(ref)), "seconds": seconds}
    return out


def _median_times(fns: Sequence, rounds: int) -> list[float]:
    """Median seconds per call of each function, rounds interleaved so that load drifts hit all alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def stage_costs(pp: int, rounds: int = 5, seed: int = 0, cfg: ModelConfig | None = None):
    """``simulate.Costs`` of the bench model cut into ``pp`` stages, measured on this host (see module doc)."""
    import tensorflow as tf

    from tf_impl import Transformer
    from tf_impl.pipeline.execute import Stage
    from tf_impl.pipeline.simulate import Costs

    cfg = cfg or bench_config()
    model = Transformer(cfg, seed=seed, compiled=False)
    tokens = tf.constant(np.random.default_rng(seed).integers(0, cfg.vocab_size, (MICRO_BATCH, SEQ_LEN)), tf.int32)
    x = tf.constant(np.random.default_rng(seed + 1).standard_normal((MICRO_BATCH, SEQ_LEN, cfg.dim)), tf.float32)
    f, b, w = [], [], []
    for index in range(pp):
        stage = Stage(model, index, pp, "/device:CPU:0")
        weights = stage.weights()

        def outputs(stage=stage):
            h, extra = stage(x, tokens)
            return [h, extra] if not stage.last else [h]

        def grads_of(wrt, stage=stage):
            with tf.GradientTape() as tape:
                tape.watch(x)
                outs = outputs(stage)
            seeds = [tf.ones_like(o) for o in outs]
            return [tf.convert_to_tensor(g) for g in tape.gradient(outs, wrt, output_gradients=seeds) if g is not None]

        fwd = tf.function(lambda: outputs(), autograph=False)
        full = tf.function(lambda: grads_of([x] + weights if not stage.first else weights), autograph=False)
        inp = tf.function(lambda: grads_of([x]) if not stage.first else outputs(), autograph=False)
        calls = [lambda fn=fn: [t.numpy() for t in fn()] for fn in (fwd, full, inp)]
        for call in calls:
            call()  # trace and warm up
        t_f, t_full, t_inp = _median_times(calls, rounds)
        back = max(t_full - t_f, 0.0)
        f.append(t_f)
        b.append(back)
        w.append(min(max(t_full - t_inp, 0.0), back))  # the weight part: full backward less the input part
    return Costs(tuple(f), tuple(b), tuple(w))


def bubbles(costs, pp: int, n_micro: int = N_MICRO) -> dict[str, float]:
    """Simulated bubbles of 1F1B and DualPipe with ``costs`` at the same PP and micro-batch count."""
    from tf_impl.pipeline import schedules
    from tf_impl.pipeline.simulate import simulate

    out: dict[str, float] = {}
    for name in ("1f1b", "dualpipe"):
        plan = schedules.build(name, pp, n_micro)
        timeline = simulate(plan, costs)
        timeline.check()
        out[f"{name}_bubble"] = timeline.bubble()
        out[f"{name}_makespan"] = timeline.makespan
        out[f"{name}_max_idle"] = max(timeline.bubbles())
        out[f"{name}_param_copies"] = float(max(plan.param_copies(r) for r in range(pp)))
        out[f"{name}_peak_activations"] = float(max(plan.peak_activations(r) for r in range(pp)))
    out["bubble_reduction"] = 1.0 - out["dualpipe_bubble"] / out["1f1b_bubble"]
    out["max_idle_reduction"] = 1.0 - out["dualpipe_max_idle"] / out["1f1b_max_idle"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``grads --schedules S,S --pp N --micro M``: the gradient check on N logical CPUs, one JSON line.
    ``bubbles --pp N``: measured stage costs and the simulated bubbles, one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m experiments.pipeline", description=main.__doc__)
    parser.add_argument("what", choices=("grads", "bubbles"))
    parser.add_argument("--schedules", default="1f1b,dualpipe", help="comma-separated: 1f1b, dualpipe")
    parser.add_argument("--pp", type=int, default=4)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.what == "grads":
        from tf_impl.pipeline.execute import logical_cpus

        logical_cpus(args.pp)  # before anything initialises TF
        print(json.dumps(gradient_check(args.schedules.split(","), args.pp, args.micro)))
    else:
        costs = stage_costs(args.pp, args.rounds)
        print(json.dumps({"f": costs.f, "b": costs.b, "w": costs.w, **bubbles(costs, args.pp)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
