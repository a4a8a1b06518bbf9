"""Expert parallelism for the Flax reference with ``jax.sharding`` and ``shard_map``.

The mesh has the axes ``("data", "expert")`` (``harness.config.MeshConfig``'s sizes). Under
``shard_map`` every device sees its 1/R of the batch and its 1/X of the routed experts (the stacked
weights, stored [E, D, F] and [E, F, D], sharded on E over "expert"); everything else is replicated
(``P()``), and JAX sums those gradients over the devices. The routed experts of a MoE layer run through
``dispatch_all_to_all``: each (token, expert) pair's row goes to its expert's device with
``jax.lax.all_to_all``, is run through the same blocked SwiGLU as the single-device reference
(``reference.moe.grouped_swiglu``), and comes back the same way. Capacity P = X * min(K, J) rows per
peer: nothing is dropped, so the result equals the unsharded model.

Axis letters (docs/internals.md): X tokens of one device, K activated experts, A = X*K assignments,
D model width, M devices on the expert axis; declared here: P capacity (rows one device sends
another), J local experts (E / M), as in tf_impl/parallel/expert_parallel.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from numpy.typing import ArrayLike

from harness.config import MeshConfig, ModelConfig, TrainConfig
from reference import moe as ref_moe
from reference.model import Transformer, to_canonical
from reference.losses import bias_update, compute_loss
from reference.optim import adamw_step, learning_rate
from reference.train import moe_bias_paths

AXES = ("data", "expert")


def make_mesh(mesh: MeshConfig, devices: list[jax.Device] | None = None) -> Mesh:
    """A ``jax.sharding.Mesh`` of ``mesh.data_parallel`` x ``mesh.expert_parallel`` devices (expert axis fastest).

    On CPU, start the process with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to get N devices.

    Args:
        mesh: the layout: data-parallel x expert-parallel ranks.
        devices: the devices to place it on, the first ``mesh.n_devices`` used; None uses ``jax.devices()``.

    Returns:
        a Mesh with axes ``("data", "expert")``; ValueError (naming the XLA flag) when devices are too few.
    """
    devices = jax.devices() if devices is None else devices
    if len(devices) < mesh.n_devices:
        raise ValueError(f"the mesh needs data_parallel={mesh.data_parallel} x expert_parallel="
                         f"{mesh.expert_parallel} = {mesh.n_devices} devices, but JAX sees {len(devices)}; on CPU "
                         f"set XLA_FLAGS=--xla_force_host_platform_device_count={mesh.n_devices} before importing jax")
    grid = np.array(devices[: mesh.n_devices]).reshape(mesh.data_parallel, mesh.expert_parallel)
    return Mesh(grid, AXES)


def dispatch_all_to_all(x: jax.Array, weights: jax.Array, indices: jax.Array, w1: jax.Array, w2: jax.Array,
                        w3: jax.Array, *, fp8: bool, axis: str = "expert") -> jax.Array:
    """Inside ``shard_map``: ``sum_k weights[:, k] * expert_{indices[:, k]}(x)`` for ``x`` [X, D] with the
    experts spread over ``axis``; ``w1``/``w3`` [J, D, F] and ``w2`` [J, F, D] (stored [in, out]) are this
    device's shard."""
    n, d = x.shape
    k, n_local = indices.shape[1], w1.shape[0]
    n_ranks = jax.lax.axis_size(axis)
    a, cap = n * k, n * min(k, n_local)
    flat = indices.reshape(a)                                                    # [A]
    dest, local = flat // n_local, flat % n_local                                # [A], [A]
    to = jax.nn.one_hot(dest, n_ranks, dtype=jnp.int32)                          # [A, M]
    pos = jnp.sum((jnp.cumsum(to, axis=0) - to) * to, axis=-1)                   # [A] order among those to dest
    slot = dest * cap + pos                                                      # [A]
    rows = x[jnp.arange(a) // k]                                                 # [A, D]
    payload = jnp.concatenate([rows, (local + 1).astype(x.dtype)[:, None]], -1)  # [A, D+1]; id 0 = padding
    send = jnp.zeros((n_ranks * cap, d + 1), x.dtype).at[slot].set(payload)      # [M*P, D+1]
    recv = jax.lax.all_to_all(send, axis, 0, 0, tiled=True)                      # [M*P, D+1]
    ids = recv[:, d].astype(jnp.int32) - 1                                       # [M*P]; -1 = padding
    valid = (ids >= 0).astype(jnp.float32)[:, None]                              # [M*P, 1]
    y = ref_moe.grouped_swiglu(recv[:, :d], valid, jnp.maximum(ids, 0)[:, None], w1, w2, w3, fp8=fp8)  # [M*P, D]
    back = jax.lax.all_to_all(y, axis, 0, 0, tiled=True)                         # [M*P, D]
    y_assigned = back[slot].reshape(n, k, d)                                     # [X, K, D]
    return jnp.einsum("XKD,XK->XD", y_assigned, weights)


class ShardedExperts(ref_moe.Experts):
    """``reference.moe.Experts`` holding one device's shard, exchanging rows with the others by all-to-all."""

    def __call__(self, x, weights, indices):
        return dispatch_all_to_all(x, weights, indices, self.w1[...], self.w2[...], self.w3[...], fp8=self.fp8)


def _expert_parallel_graphdef(model: Transformer):
    """The model's graph with every ``Experts`` module swapped for ``ShardedExperts`` (same variables)."""
    module = model.module
    for _, node in nnx.iter_graph(module):
        if isinstance(node, ref_moe.MoE):
            node.experts.__class__ = ShardedExperts
    graphdef, _, _ = nnx.split(module, nnx.Param, ref_moe.GateBias)
    return graphdef


def _spec(path, _value) -> P:
    """Expert weights are split on their leading E axis over "expert"; everything else is replicated."""
    names = [str(getattr(k, "key", k)) for k in path]
    return P("expert") if len(names) >= 2 and names[-2] == "experts" else P()


class ExpertParallel:
    """A ``reference.Transformer``'s weights placed on a mesh; forward, gradients and AdamW steps under ``shard_map``.

    Args:
        model: the single-device model to lay out (its weights are copied onto the mesh).
        mesh: the ``jax.sharding.Mesh`` (``make_mesh``).
        tc: the optimizer settings.
    """

    def __init__(self, model: Transformer, mesh: Mesh, tc: TrainConfig = TrainConfig()):
        cfg = model.cfg
        ep = mesh.shape["expert"]
        MeshConfig(data_parallel=mesh.shape["data"], expert_parallel=ep).check_layout(cfg)
        self.cfg, self.mesh, self.tc, self.model = cfg, mesh, tc, model
        self.graphdef = _expert_parallel_graphdef(model)
        self.param_specs = jax.tree_util.tree_map_with_path(_spec, model.params)
        self.bias_specs = jax.tree.map(lambda _: P(), model.biases)
        place = lambda tree, specs: jax.tree.map(lambda v, s: jax.device_put(v, NamedSharding(mesh, s)), tree, specs)
        self.params = place(model.params, self.param_specs)
        self.biases = place(model.biases, self.bias_specs)
        self.opt_state = None
        self.count = 0
        batch = P(AXES)
        graphdef = self.graphdef

        def local_loss(params, biases, tokens):
            logits, aux = nnx.merge(graphdef, params, biases).forward_aux(tokens)
            loss, parts = compute_loss(logits, aux, tokens, self.cfg)
            load = aux["expert_load"]
            n = jax.lax.psum(1, AXES)
            return (jax.lax.psum(loss, AXES) / n,
                    (jax.tree.map(lambda v: jax.lax.psum(v, AXES) / n, parts), jax.lax.psum(load, AXES)))

        def local_logits(params, biases, tokens):
            return nnx.merge(graphdef, params, biases)(tokens)

        shard = functools.partial(jax.shard_map, mesh=mesh)
        self._loss = shard(local_loss, in_specs=(self.param_specs, self.bias_specs, batch), out_specs=(P(), (P(), P())))
        self._logits = jax.jit(shard(local_logits, in_specs=(self.param_specs, self.bias_specs, batch),
                                     out_specs=batch))
        self._grads = jax.jit(jax.value_and_grad(lambda p, b, t: self._loss(p, b, t)[0]))
        self._value_and_grads = jax.jit(jax.value_and_grad(self._loss, has_aux=True))

    def _tokens(self, tokens) -> jax.Array:
        tokens = jnp.asarray(tokens, jnp.int32)
        MeshConfig(data_parallel=self.mesh.shape["data"], expert_parallel=self.mesh.shape["expert"]).check_layout(
            self.cfg, batch_size=int(tokens.shape[0]))
        return jax.device_put(tokens, NamedSharding(self.mesh, P(AXES)))

    def __call__(self, tokens: ArrayLike) -> jax.Array:
        """Logits [B, T, V] of the global batch ``tokens`` [B, T]."""
        return self._logits(self.params, self.biases, self._tokens(tokens))

    def gradients(self, tokens: ArrayLike) -> tuple[dict[str, np.ndarray], float]:
        """Canonically named gradients of the global mean loss, and the loss."""
        
        loss, grads = self._grads(self.params, self.biases, self._tokens(tokens))
        return to_canonical(grads, self.cfg.n_routed_experts), float(loss)

    def train_step(self, tokens: ArrayLike) -> float:
        """One AdamW step (the reference's optax chain, run on the sharded arrays) and the bias update; the loss."""
        (loss, (_, load)), grads = self._value_and_grads(self.params, self.biases, self._tokens(tokens))
        self.params, self.opt_state = adamw_step(self.tc, self.params, self.opt_state, grads,
                                                 learning_rate(self.count, self.tc))
        flat = dict(nnx.to_flat_state(self.biases))
        for layer, path in enumerate(moe_bias_paths(self.cfg)):
            flat[path] = flat[path].replace(bias_update(flat[path][...], load[layer], self.cfg.bias_update_speed))
        self.biases = nnx.from_flat_state(list(flat.items()))
        self.count += 1
        return float(loss)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state, gathered from the mesh."""
        
        e = self.cfg.n_routed_experts
        return {**to_canonical(self.params, e), **to_canonical(self.biases, e)}
