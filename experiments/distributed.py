"""Phase 3 on logical devices: expert parallelism and ZeRO-1 checked against one device, and measured.

Run in a fresh process (logical devices must be configured before TensorFlow or JAX starts):

    python -m experiments.distributed tf --devices 8 --layouts 1x2,1x4,2x4
    python -m experiments.distributed jax --devices 8 --layouts 1x8,2x4
    python -m experiments.distributed memory --devices 8 --layouts 1x8,2x4   # ZeRO-1 bytes only
    python -m experiments.distributed steps --devices 8 --layouts 1x1,1x2,1x4,1x8   # step times, TF and Flax

On a multi-GPU host the same code runs on the GPUs present with ``--platform gpu`` (no logical split; the
run fails naming both numbers when fewer GPUs are visible than ``--devices``).

``run(...)`` does that in a subprocess and returns the JSON. A layout ``DxX`` is ``data_parallel`` x
``expert_parallel``; TF layouts run with ZeRO-1 on except ``1x2`` (the replicated-optimizer path).

Per layout the TF side reports, against the single-device ``tf_impl.Transformer`` on the same
global batch (tiny config, B=8, T=16): the forward logits, the loss, every gradient and the weights
after one AdamW step, each judged with ``harness.interop.tolerances.TOLERANCES``; the routed (token,
expert) pairs each expert rank receives; the all-to-all bytes per token (the rows that leave their
rank, and the padded static buffers this implementation exchanges); and the optimizer-state bytes
each device holds, from the allocated variables, with ZeRO-1 and replicated. The node-limited check
routes a batch with 8 expert groups on 8 nodes (one per device), M = 4 groups per token, and counts
the distinct nodes each token's experts live on. The JAX side reports the same equalities for the
Flax reference under ``shard_map`` against the single-device TF model (forward, loss, gradients) and
against its own single-device AdamW step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH, SEQ = 8, 16


def tf_devices(n: int, platform: str) -> list[str]:
    """TensorFlow's ``n`` devices: the host CPU split into ``n`` logical devices (``cpu``; must run before TF
    starts), or the first ``n`` GPUs TensorFlow sees (``gpu``: the same code on a multi-GPU host).

    Args:
        n: devices the run needs (the largest layout's data_parallel x expert_parallel).
        platform: ``cpu`` or ``gpu``.

    Returns:
        the device names, ``n`` of them.

    Raises:
        SystemExit: ``gpu`` with fewer than ``n`` GPUs visible, naming both numbers.
    """
    if platform == "cpu":
        from tf_impl.parallel import use_logical_devices

        return use_logical_devices(n)
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(gpus) < n:
        raise SystemExit(f"--platform gpu needs {n} GPUs, TensorFlow sees {len(gpus)} (a tensorflow-cpu install "
                         "sees none; install a CUDA build of TensorFlow 2.21 on the GPU host)")
    return gpus[:n]


def jax_devices(n: int, platform: str) -> None:
    """Make JAX see ``n`` devices of ``platform``: ``cpu`` forces ``n`` host-platform devices (before JAX
    starts); ``gpu`` uses the GPUs present and fails, naming both numbers, when there are fewer than ``n``.

    Args:
        n: devices the run needs.
        platform: ``cpu`` or ``gpu``.
    """
    if platform == "cpu":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        return
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")  # fp32 equality, not TF32 (see equivalence)
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if len(gpus) < n:
        raise SystemExit(f"--platform gpu needs {n} GPUs, JAX sees {len(gpus)} (install jax[cuda12] on the GPU host)")


def _layouts(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]


def _tokens(cfg, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, cfg.vocab_size, (BATCH, SEQ)).astype(np.int32)


def _worst(a: dict, b: dict, key: str) -> tuple[float, bool]:
    """Worst error over tolerance across named tensors, and whether all are within ``TOLERANCES[key]``."""
    from harness.interop.rows import over_tolerance, within

    return max(over_tolerance(a[n], b[n], key) for n in b), all(within(a[n], b[n], key) for n in b)


def _tf_reference(cfg, state, tokens):
    """Single-device TF: logits, loss, named gradients, state after one Trainer step."""
    import tensorflow as tf

    from harness.config import TrainConfig
    from tf_impl import Transformer
    from tf_impl.losses import compute_loss
    from tf_impl.train import Trainer

    model = Transformer(cfg, seed=0, compiled=False)
    model.load_state_dict(state)
    logits = model(tokens).numpy()
    named = model.named_variables()
    with tf.GradientTape() as tape:
        out, aux = model.forward_aux(tf.constant(tokens))
        loss, _ = compute_loss(out, aux, tokens, cfg)
    raw = tape.gradient(loss, [s.var for s in named.values()])
    grads = {}
    for (name, slot), g in zip(named.items(), raw):
        if not slot.var.trainable:
            continue
        grads[name] = slot.canonical(np.zeros(slot.var.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy())
    load = aux["expert_load"].numpy()                                            # [L, E]
    Trainer(model, cfg, TrainConfig(), progress=False).train_step(tokens)
    return logits, float(loss), grads, load, model.state_dict()


def tf_main(n_devices: int, layouts: list[tuple[int, int]], platform: str = "cpu") -> dict:
    devices = tf_devices(n_devices, platform)
    from harness.config import MeshConfig, ModelConfig, TrainConfig
    from harness.interop.rows import within
    from harness.interop.equivalence_train import step_rows as judge_step
    from tf_impl import Transformer
    from tf_impl.parallel import DeviceMesh
    from tf_impl.parallel.expert_parallel import ExpertParallel

    cfg = ModelConfig.tiny()
    state = Transformer(cfg, seed=0, compiled=False).state_dict()
    tokens = _tokens(cfg)
    logits, loss, grads, load, after = _tf_reference(cfg, state, tokens)
    out = {"devices": n_devices, "config": "tiny", "batch": [BATCH, SEQ], "layouts": {}}
    for dp, ep in layouts:
        zero = (dp, ep) != (1, 2)
        mesh = DeviceMesh(MeshConfig(data_parallel=dp, expert_parallel=ep, zero=zero), devices)
        t0 = time.perf_counter()
        model = ExpertParallel(cfg, mesh, state)
        d_logits = model.forward(tokens)
        d_grads, parts = model.gradients(tokens)
        d_rec = model.train_step(tokens)
        d_after = model.state_dict()
        step_rows = judge_step(state, d_after, after, d_grads, grads, TrainConfig())
        tokens_local = BATCH * SEQ // mesh.size
        n_moe = load.shape[0]
        d = cfg.dim
        pairs_per_rank = load.reshape(n_moe, ep, -1).sum(-1) / dp                # [L, X]: per expert rank, per data group
        cap = tokens_local * min(cfg.n_activated_experts, cfg.n_routed_experts // ep)
        replicated = ExpertParallel(cfg, DeviceMesh(MeshConfig(data_parallel=dp, expert_parallel=ep), devices), state)
        out["layouts"][f"{dp}x{ep}"] = {
            "zero": zero,
            "logits_max_abs": float(np.abs(d_logits - logits).max()),
            "logits_ok": within(d_logits, logits, "logits"),
            "loss": parts["loss"], "loss_ref": loss,
            "loss_ok": within(parts["loss"], loss, "loss"),
            "grads_over_tolerance": _worst(d_grads, grads, "gradients")[0],
            "grads_ok": _worst(d_grads, grads, "gradients")[1],
            "step_ok": all(r.passed for r in step_rows),
            "step_rows": [[r.component, r.max_abs_err, r.passed] for r in step_rows],
            "step_weights_max_abs": max(float(np.abs(d_after[n] - after[n]).max()) for n in after),
            "tokens_per_expert_rank": pairs_per_rank.tolist(),
            "a2a_payload_bytes_per_token": float(np.mean(d_rec["sent_rows"]) / n_moe * (2 * d + 1) * 4
                                                 / tokens_local),
            "a2a_buffer_bytes_per_token": (ep - 1) * cap * (2 * d + 1) * 4 / tokens_local if ep > 1 else 0.0,
            "optimizer_bytes_per_device": model.optimizer_bytes(),
            "optimizer_bytes_replicated": replicated.optimizer_bytes(),
            "parameter_bytes_per_device": model.parameter_bytes(),
            "seconds": time.perf_counter() - t0,
        }
    out["node_limited"] = node_limited_check(n_devices)
    if n_devices >= 8:
        out["checkpoint"] = checkpoint_check(cfg, state, tokens, devices)
    return out


def checkpoint_check(cfg, state, tokens, devices) -> dict:
    """Train one step on a 2x4 ZeRO-1 mesh, save it sharded, restore onto a 1x4 mesh: equal weights and
    moments, and the next step equal on both meshes."""
    import tempfile

    from harness.config import MeshConfig
    from harness.interop.rows import within
    from tf_impl.parallel import DeviceMesh
    from tf_impl.parallel.expert_parallel import ExpertParallel
    from tf_impl.parallel.sharded_checkpoint import load_sharded, save_sharded

    big = ExpertParallel(cfg, DeviceMesh(MeshConfig(data_parallel=2, expert_parallel=4, zero=True), devices), state)
    big.train_step(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt")
        written = save_sharded(path, big)
        t0 = time.perf_counter()
        loaded = load_sharded(path)
        read_s = time.perf_counter() - t0
    small = ExpertParallel(cfg, DeviceMesh(MeshConfig(data_parallel=1, expert_parallel=4, zero=True), devices),
                           loaded["state"])
    small.load_optimizer(loaded["m"], loaded["v"], loaded["count"])
    s_big, s_small = big.state_dict(), small.state_dict()
    (m_big, v_big), (m_small, v_small) = big.optimizer_slots(), small.optimizer_slots()
    restored = (all(np.array_equal(s_big[n], s_small[n]) for n in s_big)
                and all(np.array_equal(m_big[n], m_small[n]) and np.array_equal(v_big[n], v_small[n]) for n in m_big))
    big.train_step(tokens)
    small.train_step(tokens)
    a, b = big.state_dict(), small.state_dict()
    return {"from": "2x4", "to": "1x4", "files": written["files"], "bytes": written["bytes"],
            "write_s": written["seconds"], "read_s": read_s, "restored_exactly": restored,
            "next_step_ok": all(within(a[n], b[n], "step_weights") for n in a),
            "next_step_max_abs": max(float(np.abs(a[n] - b[n]).max()) for n in a)}


def node_limited_check(n_nodes: int) -> dict:
    """Route a batch with one expert group per node and M = 4 groups per token; count nodes per token."""
    from harness.config import MeshConfig, ModelConfig
    from tf_impl import Transformer

    cfg = ModelConfig.tiny(n_routed_experts=4 * n_nodes, n_expert_groups=n_nodes, n_limited_groups=min(4, n_nodes),
                           n_activated_experts=8)
    MeshConfig(expert_parallel=n_nodes, nodes=n_nodes).check_layout(cfg)
    model = Transformer(cfg, seed=0, compiled=False)
    _, aux = model.forward_aux(_tokens(cfg, seed=1))
    idx = aux["router_indices"].numpy()                                         # [L, B, T, K]
    valid = idx[..., 0] >= 0
    node = idx // (cfg.n_routed_experts // n_nodes)                             # [L, B, T, K]
    nodes_per_token = np.array([len(set(row)) for row in node[valid]])
    return {"nodes": n_nodes, "limit": cfg.n_limited_groups, "max_nodes_per_token": int(nodes_per_token.max()),
            "mean_nodes_per_token": float(nodes_per_token.mean()), "experts_per_token": cfg.n_activated_experts}


def jax_main(n_devices: int, layouts: list[tuple[int, int]], platform: str = "cpu") -> dict:
    jax_devices(n_devices, platform)
    import jax

    from harness.config import MeshConfig, ModelConfig, TrainConfig
    from harness.interop.equivalence_train import step_rows as judge_step
    from harness.interop.rows import within
    from reference import Transformer as Flax
    from reference import train as ref_train
    from reference.parallel import ExpertParallel, make_mesh
    from tf_impl import Transformer

    cfg = ModelConfig.tiny()
    state = Transformer(cfg, seed=0, compiled=False).state_dict()
    tokens = _tokens(cfg)
    tf_logits, tf_loss, tf_grads, _, _ = _tf_reference(cfg, state, tokens)
    single = Flax(cfg, seed=0)
    single.load_state_dict(state)
    single_grads = ref_train.gradients(single, tokens)
    ref_train.train_step(single, ref_train.init_optimizer(single), tokens, 0)
    after = single.state_dict()
    out = {"devices": len(jax.devices()), "layouts": {}}
    for dp, ep in layouts:
        t0 = time.perf_counter()
        flax = Flax(cfg, seed=0)
        flax.load_state_dict(state)
        model = ExpertParallel(flax, make_mesh(MeshConfig(data_parallel=dp, expert_parallel=ep)))
        logits = np.asarray(model(tokens))
        grads, loss = model.gradients(tokens)
        model.train_step(tokens)
        d_after = model.state_dict()
        # AdamW's first step moves a weight by ~lr*sign(g) wherever |g| >> eps, so entries whose gradient is
        # near eps amplify fp32 noise; judged as the TF side and the TF-vs-Flax step are (step_rows).
        step = judge_step(state, d_after, after, grads, single_grads, TrainConfig())
        out["layouts"][f"{dp}x{ep}"] = {
            "logits_max_abs": float(np.abs(logits - tf_logits).max()),
            "logits_ok": within(logits, tf_logits, "logits"),
            "loss": loss, "loss_ok": within(loss, tf_loss, "loss"),
            "grads_over_tolerance": _worst(grads, tf_grads, "gradients")[0],
            "grads_ok": _worst(grads, tf_grads, "gradients")[1],
            "step_weights_over_tolerance": max(r.error_over_tolerance for r in step),
            "step_ok": all(r.passed for r in step),
            "step_rows": [[r.component, r.max_abs_err, r.passed] for r in step],
            "seconds": time.perf_counter() - t0,
        }
    return out


def memory_main(n_devices: int, layouts: list[tuple[int, int]], platform: str = "cpu") -> dict:
    """Optimizer-state bytes per device from the allocated AdamW variables, ZeRO-1 on and off (no step run)."""
    devices = tf_devices(n_devices, platform)
    from harness.config import MeshConfig, ModelConfig
    from tf_impl import Transformer
    from tf_impl.parallel import DeviceMesh
    from tf_impl.parallel.expert_parallel import ExpertParallel

    cfg = ModelConfig.tiny()
    state = Transformer(cfg, seed=0, compiled=False).state_dict()
    out = {"devices": n_devices, "config": "tiny", "layouts": {}}
    for dp, ep in layouts:
        per = {}
        for zero in (True, False):
            mesh = DeviceMesh(MeshConfig(data_parallel=dp, expert_parallel=ep, zero=zero), devices)
            model = ExpertParallel(cfg, mesh, state)
            per["zero" if zero else "replicated"] = model.optimizer_bytes()
            per["parameter_bytes"] = model.parameter_bytes()
        per["reduction"] = 1.0 - max(per["zero"]) / max(per["replicated"])
        out["layouts"][f"{dp}x{ep}"] = per
    return out


def steps_main(n_devices: int, layouts: list[tuple[int, int]], platform: str = "cpu", repeats: int = 5) -> dict:
    """Seconds per training step of the TF and Flax expert-parallel models on each layout, interleaved.

    One process holds both: TF's logical devices and JAX's host-platform devices are configured before
    either starts, and each repeat times one TF step then one Flax step, so both see the same load.
    """
    devices = tf_devices(n_devices, platform)
    jax_devices(n_devices, platform)
    import jax

    from harness.config import MeshConfig, ModelConfig
    from reference import Transformer as Flax
    from reference.parallel import ExpertParallel as FlaxParallel, make_mesh
    from tf_impl import Transformer
    from tf_impl.parallel import DeviceMesh
    from tf_impl.parallel.expert_parallel import ExpertParallel

    cfg = ModelConfig.tiny()
    state = Transformer(cfg, seed=0, compiled=False).state_dict()
    tokens = _tokens(cfg)
    out = {"devices": n_devices, "config": "tiny", "batch": [BATCH, SEQ], "layouts": {}}
    for dp, ep in layouts:
        mesh_cfg = MeshConfig(data_parallel=dp, expert_parallel=ep)
        tf_model = ExpertParallel(cfg, DeviceMesh(mesh_cfg, devices), state)
        flax = Flax(cfg, seed=0)
        flax.load_state_dict(state)
        jax_model = FlaxParallel(flax, make_mesh(mesh_cfg))
        tf_model.train_step(tokens)       # trace and warm up both
        jax_model.train_step(tokens)
        tf_s, jax_s = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tf_model.train_step(tokens)   # returns host floats: the step has finished
            tf_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax_model.train_step(tokens)  # returns the loss, which is ready before the AdamW update ran:
            jax.block_until_ready((jax_model.params, jax_model.opt_state, jax_model.biases))  # wait for all of it
            jax_s.append(time.perf_counter() - t0)
        out["layouts"][f"{dp}x{ep}"] = {"tf_s": tf_s, "flax_s": jax_s,
                                         "tf_over_flax": [t / f for t, f in zip(tf_s, jax_s)]}
    return out


def run(kind: str, devices: int, layouts: str, timeout: float = 1800, platform: str = "cpu") -> dict:
    """``python -m experiments.distributed`` in a fresh process; its JSON, or a RuntimeError with its stderr tail."""
    cmd = [sys.executable, "-m", "experiments.distributed", kind, "--devices", str(devices), "--layouts", layouts,
           "--platform", platform]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["tf", "jax", "memory", "steps"])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--layouts", default="1x2,1x4,2x4")
    parser.add_argument("--platform", choices=["cpu", "gpu"], default="cpu",
                        help="cpu: split the host into --devices logical devices (default); gpu: the GPUs present")
    args = parser.parse_args(argv)
    fn = {"tf": tf_main, "jax": jax_main, "memory": memory_main, "steps": steps_main}[args.kind]
    print(json.dumps(fn(args.devices, _layouts(args.layouts), args.platform)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
