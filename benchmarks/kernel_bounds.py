"""What this host's GEMM libraries allow for the two speed rows of issue 13 that miss.

PX.decode_roofline asks a bench decode step for at most 2x its memory-bandwidth floor, and
PX.moe_sparsity asks a bench-width MoE layer with 64 routed experts for at most 1.1x the time of one
with 8. Both are set by the routed experts' products: a few rows per expert in decode, ~128 rows per
expert at 64 experts. ``tf_impl`` runs them as XLA:CPU products on a copy of each expert's slice of
the stacked weights (``tf_impl.moe.expert_slice``). This module times the same products through
TensorFlow's other CPU path, which reads each expert's weights in place, so a miss can be blamed on the
product under test or on the host:

* ``xla``: ``tf_impl.moe.MoE.experts`` (the loop scheme) under ``tf.function(jit_compile=True)``;
* ``onednn``: TensorFlow's graph runtime without XLA. ``w[e]`` is a strided slice along the leading
  axis, which TF hands out as a view of the variable's buffer, and ``tf.linalg.matmul`` runs oneDNN
  on it; the rows are split by expert with ``tf.dynamic_partition``.

numpy's OpenBLAS is left out: its worker threads spin after a call and slowed the XLA calls timed
after them by 1.5-1.8x in one process (8.2 -> 12-15 ms), so it cannot alternate fairly with the others.

Each variant computes ``MoE.experts``' values (tests/benchmarks/test_kernel_bounds.py checks it), from
the same routing. The variants alternate round by round and each reports its median.

Run ``python -m benchmarks.kernel_bounds`` (about 15 s on 2 cores). The numbers behind
docs/performance.md's "What the host allows" come from it. Not a benchmark: it explains two
verdicts, and the asv suite measures them.

Axis letters (the repository's one alphabet, docs/internals.md): X tokens, K experts per token,
E routed experts, D model width, F expert hidden width.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import numpy as np

from harness.config import ModelConfig

DECODE_TOKENS = 8          # the bench decode step: B=8, one token each
PREFILL_TOKENS = 8 * 256   # the MoE layer benchmark: B=8 x T=256
SPARSITY_EXPERTS = (8, 64)


def moe_layer(cfg: ModelConfig, n_experts: int, seed: int = 1):
    """A ``tf_impl.moe.MoE`` of ``cfg``'s width with ``n_experts`` routed experts and its K, fp32."""
    from tf_impl.moe import MoE

    return MoE(dim=cfg.dim, moe_inter_dim=cfg.moe_inter_dim, n_routed_experts=n_experts,
               n_shared_experts=cfg.n_shared_experts, n_activated_experts=cfg.n_activated_experts,
               n_expert_groups=cfg.n_expert_groups, n_limited_groups=cfg.n_limited_groups,
               score_func=cfg.score_func, route_scale=cfg.route_scale, fp8=False, rng=np.random.default_rng(seed))


def routing(layer, x):
    """``(weights [X, K], indices [X, K])`` of ``layer``'s gate for ``x`` [X, D], as numpy."""
    import tensorflow as tf

    from tf_impl.moe import route

    route_fn = tf.function(lambda v: route(v, layer.gate_weight, layer.gate_bias, **layer.route_args)[:2],
                           jit_compile=True)
    weights, indices = route_fn(tf.constant(x))
    return weights.numpy(), indices.numpy()


def xla_experts(routed: list) -> Callable:
    """``x`` [X, D] -> one [X, D] per layer: the product under test, ``MoE.experts``' loop scheme, XLA-compiled.

    ``routed`` holds ``(layer, weights [X, K], indices [X, K])`` per layer; one compiled program runs them all.
    """
    import tensorflow as tf

    consts = [(layer, tf.constant(w), tf.constant(idx)) for layer, w, idx in routed]
    fn = tf.function(lambda v: [layer.experts(v, w, idx, differentiable=False) for layer, w, idx in consts],
                     jit_compile=True)
    return lambda x: [y.numpy() for y in fn(x)]


def onednn_experts(routed: list) -> Callable:
    """``x`` [X, D] -> one [X, D] per layer in TF's graph runtime: in-place expert slices, oneDNN, no XLA."""
    import tensorflow as tf

    def layer_experts(x, layer, weights, indices):
        n, k = indices.shape
        parts = tf.dynamic_partition(tf.range(n * k), tf.reshape(indices, [n * k]), layer.n_experts)  # E x [rows]
        outs = []
        for e in range(layer.n_experts):
            xe = tf.gather(x, parts[e] // k)                                   # [rows, D]
            h = tf.nn.silu(tf.linalg.matmul(xe, layer.w1[e])) * tf.linalg.matmul(xe, layer.w3[e])  # [rows, F]
            outs.append(tf.linalg.matmul(h, layer.w2[e]))                      # [rows, D]
        y = tf.reshape(tf.dynamic_stitch(parts, outs), [n, k, -1])             # [A, D] -> [X, K, D]
        return tf.einsum("XKD,XK->XD", y, weights)

    consts = [(layer, tf.constant(w), tf.constant(idx)) for layer, w, idx in routed]
    fn = tf.function(lambda x: [layer_experts(x, *c) for c in consts])
    return lambda x: [y.numpy() for y in fn(x)]


def expert_bytes(routed: list) -> int:
    """Bytes of routed-expert weights the tokens need: ``w1``, ``w2``, ``w3`` of each used expert, every layer."""
    total = 0
    for (layer, _, _), used in zip(routed, experts_used(routed)):
        per_expert = sum(int(np.prod(v.shape[1:])) * 4 for v in (layer.w1, layer.w2, layer.w3))
        total += per_expert * used
    return total


def experts_used(routed: list) -> list[int]:
    """Per layer, how many routed experts at least one token went to (``roofline.distinct_experts``)."""
    from benchmarks.roofline import distinct_experts

    return distinct_experts(np.stack([indices for _, _, indices in routed]))   # [L, X, K] -> L counts


def alternate(calls: dict[str, Callable[[], object]], rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each of ``calls``, timed ``repeats`` times per round, variants alternating."""
    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds and repeats must be >= 1, got {rounds} and {repeats}")
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: float(np.median(v)) for name, v in times.items()}


def routed_layers(cfg: ModelConfig, n_experts: int, x: np.ndarray, n_layers: int) -> list:
    """``n_layers`` MoE layers of distinct weights (seeds 1, 2, ...), each with its gate's routing of ``x``."""
    routed = []
    for i in range(n_layers):
        layer = moe_layer(cfg, n_experts, seed=1 + i)
        routed.append((layer, *routing(layer, x)))
    return routed


def decode_bound(cfg: ModelConfig, rounds: int = 15, repeats: int = 5, tokens: int = DECODE_TOKENS) -> dict:
    """Routed-expert read rates of a decode step's MoE layers (``tokens`` rows each) per library, and the copy's.

    All of ``cfg``'s MoE layers run per call, each with its own weights, as in a decode step: together
    they exceed the host's 32 MB L3, so no call finds the previous one's experts in cache (one layer's
    used experts, ~30 MB at bench, would mostly fit). ``need_gbs`` is the read rate a whole decode step
    must average to stay within 2x its floor: half the copy bandwidth (read + write bytes,
    ``benchmarks.common.stream_copy_call``, the floor's own measure), timed in the same rounds.
    """
    from benchmarks.common import stream_copy_call

    x = np.random.default_rng(0).standard_normal((tokens, cfg.dim), dtype=np.float32)
    routed = routed_layers(cfg, cfg.n_routed_experts, x, cfg.n_layers - cfg.n_dense_layers)
    copy, copy_bytes = stream_copy_call()
    calls = {
        "xla": xla_experts(routed),
        "onednn": onednn_experts(routed),
    }
    seconds = alternate({**{n: (lambda c=c: c(x)) for n, c in calls.items()}, "copy": copy}, rounds, repeats)
    nbytes = expert_bytes(routed)
    copy_gbs = copy_bytes / seconds.pop("copy") / 1e9
    return {
        "tokens": tokens, "layers": len(routed), "experts_used": experts_used(routed),
        "expert_bytes": nbytes, "ms": {n: 1e3 * s for n, s in seconds.items()},
        "read_gbs": {n: nbytes / s / 1e9 for n, s in seconds.items()},
        "copy_gbs": copy_gbs, "need_gbs": copy_gbs / 2.0,
    }


def sparsity_bound(cfg: ModelConfig, rounds: int = 7, repeats: int = 3, tokens: int = PREFILL_TOKENS,
                   experts: tuple[int, int] = SPARSITY_EXPERTS) -> dict:
    """The routed experts' time with ``experts[1]`` over ``experts[0]`` routed experts, per library.

    The same ``tokens`` rows and K, so the FLOPs are equal; the 64-expert layer reads 8x the weights in
    ~128-row products instead of ~1,024-row ones. Routing is not timed (it is the same in every library).
    """
    x = np.random.default_rng(0).standard_normal((tokens, cfg.dim), dtype=np.float32)
    calls = {}
    for e in experts:
        routed = routed_layers(cfg, e, x, 1)
        calls[f"xla_{e}"] = xla_experts(routed)
        calls[f"onednn_{e}"] = onednn_experts(routed)
    seconds = alternate({n: (lambda c=c: c(x)) for n, c in calls.items()}, rounds, repeats)
    few, many = experts
    return {
        "tokens": tokens, "experts": list(experts), "ms": {n: 1e3 * s for n, s in seconds.items()},
        "ratio": {lib: seconds[f"{lib}_{many}"] / seconds[f"{lib}_{few}"] for lib in ("xla", "onednn")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_bounds", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="bench", choices=("tiny", "bench"), help="model preset (default bench)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds for the decode layer")
    parser.add_argument("--json", help="also write the numbers to this file (refuses to overwrite)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.json:
        from pathlib import Path

        if Path(args.json).exists():
            parser.error(f"{args.json} exists; pass a new path (nothing was overwritten)")
    cfg = getattr(ModelConfig, args.config)()
    out = {"config": args.config, "decode": decode_bound(cfg, rounds=args.rounds),
           "sparsity": sparsity_bound(cfg, rounds=max(3, args.rounds // 2))}
    d, s = out["decode"], out["sparsity"]
    print(f"decode, {d['layers']} MoE layers ({d['tokens']} tokens; experts used {d['experts_used']}, "
          f"{d['expert_bytes'] / 1e6:.1f} MB of expert weights):")
    for name, ms in d["ms"].items():
        print(f"  {name:15s} {ms:6.3f} ms  {d['read_gbs'][name]:5.1f} GB/s")
    print(f"  copy {d['copy_gbs']:.1f} GB/s: 2x the floor needs {d['need_gbs']:.1f} GB/s over the whole step")
    print(f"MoE experts, {s['experts'][1]} vs {s['experts'][0]} routed ({s['tokens']} tokens):")
    for lib, ratio in s["ratio"].items():
        few, many = (s["ms"][f"{lib}_{e}"] for e in s["experts"])
        print(f"  {lib:7s} {few:6.2f} -> {many:6.2f} ms  ratio {ratio:.3f}")
    if args.json:
        with open(args.json, "x") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
