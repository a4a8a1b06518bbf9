"""DeepSeek-V3's feed-forward layers: SwiGLU MLP, the routing gate, and the sparse MoE.

Sparse dispatch: the (token, expert) assignments are sorted by expert and laid out in fixed-size row
tiles, each tile holding rows of a single expert (an expert's segment is padded up to a whole
number of tiles with zero rows). A ``lax.scan`` over the tiles runs one small SwiGLU per tile
with that tile's expert weights. Compute grows with ``tokens * activated experts`` (plus at most one
partial tile per used expert), not with the number of routed experts, and every shape is static so
it jits once. ``jax.lax.ragged_dot`` would say the same thing in one call, but on CPU it lowers to a
dense masked product over all experts (E times the work; measured 40x slower), hence the tiles.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, D model
width, E routed experts, F expert hidden width, K experts activated per token, G expert groups,
X tokens flattened (B*T), A (token, expert) assignments (X*K), U dispatch tiles (each holds rows of
one expert), W rows inside a tile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness.config import ScoreFunc
from reference.linear import Linear, init_kernel, init_weight, linear
from reference.norm import widen


class GateBias(nnx.Variable):
    """The gate's selection bias: a state variable moved by the balancing rule, never by gradients."""


def route(x: jax.Array, weight: jax.Array, bias: jax.Array | None, *, n_activated_experts: int,
          n_expert_groups: int, n_limited_groups: int, score_func: ScoreFunc, route_scale: float
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """DeepSeek-V3's gate for ``x`` [X, D], ``weight`` [E, D], ``bias`` [E] or None.

    Returns ``(weights [X, K] fp32, indices [X, K] int32, scores [X, E] fp32)``:
    1. scores = sigmoid (or softmax) of the router logits, in fp32;
    2. selection scores = scores + bias: the bias steers *which* experts win, never their weight;
    3. with groups, a group's score is the sum of its top-2 selection scores (the max when there is
       no bias); only the best ``n_limited_groups`` groups stay, the rest are masked with -inf;
    4. the top-k selection scores give the indices; the weights are the *original* scores there,
       divided by their sum for sigmoid, then times ``route_scale``.
    """
    n, e = x.shape[0], weight.shape[0]
    logits = jnp.einsum("XD,ED->XE", widen(x), widen(weight))  # [X, E]
    scores = jax.nn.sigmoid(logits) if score_func is ScoreFunc.SIGMOID else jax.nn.softmax(logits, axis=-1)
    select = scores if bias is None else scores + bias
    if n_expert_groups > 1:
        grouped = select.reshape(n, n_expert_groups, e // n_expert_groups)  # [X, G, E/G]
        if bias is None:
            group_score = jnp.max(grouped, axis=-1)  # [X, G]
        else:
            group_score = jnp.sum(jax.lax.top_k(grouped, 2)[0], axis=-1)  # [X, G]
        kept = jax.lax.top_k(group_score, n_limited_groups)[1]  # [X, n_limited_groups]
        keep = jnp.any(jax.nn.one_hot(kept, n_expert_groups, dtype=jnp.bool_), axis=1)  # [X, G]
        select = jnp.where(keep[:, :, None], grouped, -jnp.inf).reshape(n, e)  # [X, E]
    indices = jax.lax.top_k(select, n_activated_experts)[1]  # [X, K]
    weights = jnp.take_along_axis(scores, indices, axis=-1)  # [X, K]: original scores, bias-free
    if score_func is ScoreFunc.SIGMOID:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    return weights * route_scale, indices.astype(jnp.int32), scores


def expert_load(indices: jax.Array, n_experts: int) -> jax.Array:
    """Tokens routed to each expert: ``indices`` [..., K] -> float32 counts [E]."""
    return jnp.bincount(indices.reshape(-1), length=n_experts).astype(jnp.float32)


def swiglu(x: jax.Array, w1: jax.Array, w2: jax.Array, w3: jax.Array, fp8: bool) -> jax.Array:
    """``w2(silu(w1 x) * w3 x)`` for ``x`` [..., D] with weights stored [D, F], [F, D], [D, F] (see ``Linear``)."""
    return linear(jax.nn.silu(linear(x, w1, fp8)) * linear(x, w3, fp8), w2, fp8)


def dispatch_tile_rows(n_assignments: int, n_experts: int) -> int:
    """Rows per tile: a power of two near half an expert's mean load, in [1, 32].

    Small tiles waste little on padding (decode: 1 row per assignment); larger ones amortise the
    per-tile loop overhead (prefill). 32 was the knee on CPU at the bench size.
    """
    target = min(32, n_assignments // (2 * n_experts))
    size = 1
    while size * 2 <= target:
        size *= 2
    return size


def grouped_swiglu(x: jax.Array, weights: jax.Array, indices: jax.Array, w1: jax.Array, w2: jax.Array,
                   w3: jax.Array, *, fp8: bool) -> jax.Array:
    """``sum_k weights[:, k] * expert_{indices[:, k]}(x)`` for ``x`` [X, D], running each expert on its tokens only.

    ``w1``/``w3`` are [E, D, F] and ``w2`` is [E, F, D]: expert ``j``'s weights stacked in the stored
    [in, out] layout of ``reference.linear.Kernel``.
    """
    n, d = x.shape
    k = indices.shape[1]
    n_experts = w1.shape[0]
    a = n * k  # number of (token, expert) assignments
    tile_rows = dispatch_tile_rows(a, n_experts)
    # Each used expert wastes less than one tile, so this many tiles always suffice.
    n_tiles = (a + min(n_experts, a) * (tile_rows - 1)) // tile_rows
    expert = indices.reshape(a)  # [A]
    token = jnp.arange(a) // k  # [A]: the token of each assignment
    order = jnp.argsort(expert, stable=True)  # [A]: assignments grouped by expert
    sorted_expert = expert[order]
    count = jnp.bincount(expert, length=n_experts)  # [E]
    padded = (count + tile_rows - 1) // tile_rows * tile_rows  # [E]: segment length rounded up to whole tiles
    padded_end = jnp.cumsum(padded)
    padded_start = padded_end - padded
    start = jnp.cumsum(count) - count
    slot = padded_start[sorted_expert] + jnp.arange(a) - start[sorted_expert]  # [A]: row in the tile layout
    rows = n_tiles * tile_rows
    row_token = jnp.full((rows,), n).at[slot].set(token[order])  # [U*W]: padding rows read token n = zeros
    row_weight = jnp.zeros((rows,), widen(weights).dtype).at[slot].set(weights.reshape(a)[order])  # [U*W]
    tile_expert = jnp.minimum(jnp.searchsorted(padded_end, jnp.arange(n_tiles) * tile_rows, side="right"),
                              n_experts - 1)  # [U]; unused tail tiles are all padding
    x_rows = jnp.concatenate([widen(x), jnp.zeros((1, d), widen(x).dtype)])[row_token]  # [U*W, D]

    def one_tile(carry, tile):
        xt, e = tile  # [W, D], ()
        return carry, swiglu(xt, w1[e], w2[e], w3[e], fp8)  # [W, D]

    _, y = jax.lax.scan(one_tile, None, (x_rows.reshape(n_tiles, tile_rows, d), tile_expert))  # [U, W, D]
    y = y.reshape(rows, d) * row_weight[:, None]  # [U*W, D]
    return jnp.zeros((n + 1, d), y.dtype).at[row_token].add(y)[:n]  # [X, D]; row n collects padding


class MLP(nnx.Module):
    """Dense SwiGLU feed-forward ``w2(silu(w1 x) * w3 x)``; also the MoE's shared experts."""

    def __init__(self, dim: int, hidden: int, *, fp8: bool, rng: np.random.Generator):
        self.w1 = Linear(dim, hidden, fp8=fp8, rng=rng)
        self.w2 = Linear(hidden, dim, fp8=fp8, rng=rng)
        self.w3 = Linear(dim, hidden, fp8=fp8, rng=rng)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.w2(jax.nn.silu(self.w1(x)) * self.w3(x))


class Gate(nnx.Module):
    """Router weight [E, D] (trained) and selection bias [E] (balanced, not trained); see :func:`route`."""

    def __init__(self, dim: int, n_routed_experts: int, *, n_activated_experts: int, n_expert_groups: int,
                 n_limited_groups: int, score_func: ScoreFunc, route_scale: float, rng: np.random.Generator):
        self.n_activated_experts, self.n_expert_groups = n_activated_experts, n_expert_groups
        self.n_limited_groups, self.score_func, self.route_scale = n_limited_groups, score_func, route_scale
        self.weight = init_weight(rng, (n_routed_experts, dim), dim)
        self.bias = GateBias(jnp.zeros((n_routed_experts,), jnp.float32))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return route(x, self.weight[...], self.bias[...], n_activated_experts=self.n_activated_experts,
                     n_expert_groups=self.n_expert_groups, n_limited_groups=self.n_limited_groups,
                     score_func=self.score_func, route_scale=self.route_scale)


class Experts(nnx.Module):
    """The routed experts' weights stacked on a leading E axis, so one scan can index them.

    Each is a ``reference.linear.Kernel``, stored [in, out] per expert. The canonical state names them
    one by one in [out, in] layout (``experts.{j}.w1.weight`` [F, D]); the model's state conversion
    stacks, unstacks and transposes them.
    """

    def __init__(self, dim: int, hidden: int, n_experts: int, *, fp8: bool, rng: np.random.Generator):
        self.fp8 = fp8
        self.w1 = init_kernel(rng, (n_experts, hidden, dim), dim)  # [E, D, F]
        self.w2 = init_kernel(rng, (n_experts, dim, hidden), hidden)  # [E, F, D]
        self.w3 = init_kernel(rng, (n_experts, hidden, dim), dim)  # [E, D, F]

    def __call__(self, x: jax.Array, weights: jax.Array, indices: jax.Array) -> jax.Array:
        return grouped_swiglu(x, weights, indices, self.w1[...], self.w2[...], self.w3[...], fp8=self.fp8)


class MoE(nnx.Module):
    """``out = sum_k w_k * expert_k(x) + shared(x)`` with DeepSeek-V3's gate."""

    def __init__(self, dim: int, moe_inter_dim: int, n_routed_experts: int, n_shared_experts: int,
                 n_activated_experts: int, n_expert_groups: int, n_limited_groups: int, score_func: ScoreFunc,
                 route_scale: float, *, fp8: bool, rng: np.random.Generator):
        self.gate = Gate(dim, n_routed_experts, n_activated_experts=n_activated_experts,
                         n_expert_groups=n_expert_groups, n_limited_groups=n_limited_groups,
                         score_func=score_func, route_scale=route_scale, rng=rng)
        self.experts = Experts(dim, moe_inter_dim, n_routed_experts, fp8=fp8, rng=rng)
        self.shared_experts = (MLP(dim, n_shared_experts * moe_inter_dim, fp8=fp8, rng=rng)
                               if n_shared_experts else None)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``x`` [B, T, D] -> (out [B, T, D], original scores [B, T, E], indices [B, T, K])."""
        b, t, d = x.shape
        flat = x.reshape(b * t, d)  # [X, D]
        weights, indices, scores = self.gate(flat)  # [X, K], [X, K], [X, E]
        out = self.experts(flat, weights, indices)  # [X, D]
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        return (out.reshape(b, t, d),  # [B, T, D]
                scores.reshape(b, t, -1), indices.reshape(b, t, -1))  # [B, T, E], [B, T, K]
