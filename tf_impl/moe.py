"""DeepSeekMoE: SwiGLU experts, the sigmoid/softmax gate with group-limited routing, sparse dispatch.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, D model
width, E routed experts, F expert hidden width, K experts activated per token, G expert groups,
X tokens flattened (B*T), A (token, expert) assignments (X*K), U dispatch tiles (each holds rows of
one expert), W rows inside a tile, O/I output/input features of a tile's matmul.

Routed experts are stored stacked in the kernel layout of ``tf_impl.linear`` ([I, O] per expert:
``w1``/``w3`` [E, D, F], ``w2`` [E, F, D]), so a decode tile of a few rows is a cheap ``x @ W``.

Sparse dispatch (static shapes, so it compiles under ``tf.function(jit_compile=True)``):
1. The gate picks K experts per token: A = X*K (token, expert) assignments.
2. The assignments are sorted by expert (stable argsort). Each expert's run is padded up to a
   multiple of ``tile_rows`` rows, so every tile of ``tile_rows`` rows belongs to exactly one expert,
   in a row buffer of static size ``n_rows = A + min(E, A) * (tile_rows - 1)`` (``dispatch_plan``):
   each non-empty expert wastes less than one tile. Padding rows read a zero row.
3. The expert SwiGLU runs on that buffer only, in one of two ways that give the same values:
   * tiled (``differentiable=True``, used by ``forward_aux`` and so by training): every tile gathers
     its expert's w1/w3/w2 and one grouped matmul runs all tiles (``[U, W, D] @ [U, D, F]``);
   * looped (inference: forward, prefill, decode): an XLA while loop over the non-empty experts
     (dynamic trip count) reads each expert's weights once (a dynamic slice, ``expert_slice``), and
     inner loops run its rows in tiles of 4, 2 and 1 times ``tile_rows`` (``MoE._looped``).
   Either way the expert-row evaluations are bounded by ``n_rows``, which grows with X*K and not
   with X*E (``MoE.rows_evaluated`` records it at trace time; tests/tf_impl/test_moe.py checks it).
4. Each assignment reads its output row back (a gather, no scatter-add) and the K rows of a token
   are summed with the gate weights.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from harness.config import ScoreFunc
from tf_impl.fp8 import fp8_matmul
from tf_impl.linear import Linear, Slot, init_weight

_MAX_TILE_ROWS = 64
# The loop scheme's smallest tile once experts hold a row each on average (A >= E): with kernel-layout
# weights a 2-row product costs about what a 1-row one does on XLA:CPU (28 vs 24 µs at 512x512), so an
# expert holding 2 rows runs one product, not two (bench decode, B=8 and A = E = 32: 17 -> 14 ms).
# Below that load nearly every non-empty expert holds one row, and a 2-row tile only turns its matvec
# into a padded GEMM call (the mtp_proxy decode step, A = 2 and E = 8: 3.8 -> 5.3 ms).
_LOOP_MIN_TILE_ROWS = 2
# Once experts hold _MIN_ROWS_FOR_BIG rows or more on average (prefill), the loop scheme cuts each
# expert's run into tiles of _BIG_TILE_ROWS, half that, ..., down to _PIECE_ROWS rows (``loop_tiles``):
# the GEMMs are big where an expert has many rows, and its padding stays under _PIECE_ROWS rows. With
# 64-row pieces an expert wasted ~32 rows on average: 25% more expert rows than assignments with 64
# experts of ~128 rows each, 12.5% at 32 experts of ~256 (the bench prefill), 3% at 8 experts.
_BIG_TILE_ROWS = 256
_PIECE_ROWS = 16
_MIN_ROWS_FOR_BIG = 16  # below this many rows per expert (decode) the loop scheme keeps one tile size


class MLP(tf.Module):
    """Dense SwiGLU feed-forward ``w2(silu(w1 x) * w3 x)``; also the MoE's shared experts."""

    def __init__(self, dim: int, hidden: int, *, fp8: bool, rng: np.random.Generator, name=None):
        super().__init__(name=name)
        self.w1 = Linear(dim, hidden, fp8=fp8, rng=rng)
        self.w2 = Linear(hidden, dim, fp8=fp8, rng=rng)
        self.w3 = Linear(dim, hidden, fp8=fp8, rng=rng)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.w2(tf.nn.silu(self.w1(x)) * self.w3(x))

    def params(self, prefix: str) -> dict:
        """``w1`` (gate), ``w2`` (down) and ``w3`` (up) projections under ``prefix``, each a ``Slot``."""
        return {k: v for n in ("w1", "w2", "w3") for k, v in getattr(self, n).params(f"{prefix}.{n}").items()}


def route(x: tf.Tensor, weight: tf.Tensor | tf.Variable, bias: tf.Tensor | tf.Variable | None, *,
          n_activated_experts: int, n_expert_groups: int, n_limited_groups: int, score_func: ScoreFunc | str,
          route_scale: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """DeepSeek-V3's gate: route tokens ``x`` [X, D] with ``weight`` [E, D] and selection ``bias`` [E] (or None).

    Returns ``(weights [X, K] fp32, indices [X, K] int32, scores [X, E] fp32)``:
    scores = sigmoid/softmax of ``x @ W.T`` in fp32; the bias shifts selection only; with groups, a
    group's score is the sum of its top-2 selection scores (the max when there is no bias, as in
    DeepSeek's code), the best ``n_limited_groups`` groups are kept and the rest masked with -inf;
    weights are the original scores at the top-K indices, divided by their sum for sigmoid, times
    ``route_scale``.
    """
    x = tf.cast(x, tf.float32)
    logits = tf.einsum("XD,ED->XE", x, tf.cast(weight, tf.float32))            # [X, E]
    score_func = ScoreFunc(score_func)
    scores = tf.sigmoid(logits) if score_func == ScoreFunc.SIGMOID else tf.nn.softmax(logits, -1)
    select = scores if bias is None else scores + tf.cast(bias, tf.float32)   # [X, E]
    e = select.shape[1]
    if n_expert_groups > 1:
        grouped = tf.reshape(select, [-1, n_expert_groups, e // n_expert_groups])  # [X, G, E/G]
        if bias is None:
            group_scores = tf.reduce_max(grouped, -1)                          # [X, G]
        else:
            group_scores = tf.reduce_sum(tf.math.top_k(grouped, 2).values, -1)  # [X, G]
        top_groups = tf.math.top_k(group_scores, n_limited_groups).indices    # [X, n_limited_groups]
        keep = tf.reduce_max(tf.one_hot(top_groups, n_expert_groups), 1) > 0   # [X, G]
        grouped = tf.where(keep[:, :, None], grouped, float("-inf"))
        select = tf.reshape(grouped, [-1, e])                                  # [X, E]
    indices = tf.math.top_k(select, n_activated_experts).indices               # [X, K]
    weights = tf.gather(scores, indices, batch_dims=1)                         # [X, K]: original scores, bias-free
    if score_func == ScoreFunc.SIGMOID:
        weights = weights / tf.reduce_sum(weights, -1, keepdims=True)
    return weights * route_scale, tf.cast(indices, tf.int32), scores


def expert_load(indices: tf.Tensor, n_experts: int) -> tf.Tensor:
    """Token count per expert, float32 [E], from ``indices`` of any shape (entries < 0 are ignored)."""
    flat = tf.reshape(indices, [-1])
    return tf.math.unsorted_segment_sum(tf.cast(flat >= 0, tf.float32), tf.maximum(flat, 0), n_experts)


def loop_tiles(n_assignments: int, n_experts: int) -> tuple[int, ...]:
    """The tile sizes (rows, biggest first) the loop scheme cuts each expert's run of rows into.

    With at least ``_MIN_ROWS_FOR_BIG`` rows per expert on average: ``_BIG_TILE_ROWS``, half that, ...,
    ``_PIECE_ROWS`` (a binary decomposition, so each size below the biggest runs at most once per expert).
    Below that (decode): one size, the power of two <= the mean rows per expert, but at least
    ``_LOOP_MIN_TILE_ROWS`` once A >= E, and at most ``_MAX_TILE_ROWS``.
    """
    a, e = n_assignments, n_experts
    if a / e >= _MIN_ROWS_FOR_BIG:
        sizes = [_BIG_TILE_ROWS]
        while sizes[-1] > _PIECE_ROWS:
            sizes.append(sizes[-1] // 2)
        return tuple(sizes)
    return (_tile_rows_for(max(a / e, _LOOP_MIN_TILE_ROWS if a >= e else 1)),)


def _tile_rows_for(target: float) -> int:
    """The largest power of two <= ``target``, at least 1 and at most ``_MAX_TILE_ROWS``."""
    tile_rows = 1
    while tile_rows * 2 <= min(target, _MAX_TILE_ROWS):
        tile_rows *= 2
    return tile_rows


def dispatch_plan(n_assignments: int, n_experts: int, loop: bool) -> tuple[int, int]:
    """Static plan ``(tile_rows, n_rows)``: rows per tile and the size of the padded row buffer.

    At most ``nz = min(E, A)`` experts are non-empty and each wastes < tile_rows rows of padding, so
    ``n_rows = A + nz * (tile_rows - 1)`` (a multiple of tile_rows) always suffices.
    Tiled scheme (``loop=False``): tile_rows is the power of two <= ``sqrt(30 * (A - nz) / nz)``,
    which balances padding rows against gathering one expert's weights per tile (about 30 flops'
    worth per weight element on CPU), and <= A / nz, so ``n_rows < 2 * A``. Loop scheme: the smallest of
    ``loop_tiles`` (each non-empty expert's weights are read once whatever the tile size); ``n_rows <= 2 * A``.

    Args:
        n_assignments: A, the (token, expert) assignments routed, X * K; static.
        n_experts: E, the routed experts.
        loop: True for the loop scheme (inference), False for the tiled scheme (training).

    Returns:
        ``(tile_rows, n_rows)``: a power of two (at most ``_MAX_TILE_ROWS``) and a multiple of it.
    """
    a = n_assignments
    nz = min(n_experts, a)
    if loop:
        tile_rows = loop_tiles(a, n_experts)[-1]
    else:
        tile_rows = _tile_rows_for(min(math.sqrt(30.0 * (a - nz) / nz), a / nz))
    return tile_rows, (a + nz * (tile_rows - 1)) // tile_rows * tile_rows


def sparse_dispatch(indices: tf.Tensor, n_experts: int, tile_rows: int, n_rows: int
                    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where each (token, expert) assignment goes in the padded, expert-sorted row buffer.

    ``indices`` [X, K] -> ``(slot_of_assignment [A], assignment_of_slot [n_rows] (A marks padding),
    counts [E], row_start [E])``; expert e owns rows ``row_start[e] .. row_start[e] + ceil(counts[e]/W)*W``
    (W = tile_rows).
    """
    a = indices.shape[0] * indices.shape[1]
    flat = tf.reshape(indices, [a])                                            # [A]
    order = tf.argsort(flat, stable=True)                                      # [A] assignment ids by expert
    sorted_e = tf.gather(flat, order)                                          # [A]
    counts = tf.math.unsorted_segment_sum(tf.ones([a], tf.int32), flat, n_experts)  # [E]
    row_start = tf.cumsum((counts + tile_rows - 1) // tile_rows, exclusive=True) * tile_rows  # [E]
    rank = tf.range(a) - tf.gather(tf.cumsum(counts, exclusive=True), sorted_e)  # [A] rank inside its expert
    slot_sorted = tf.gather(row_start, sorted_e) + rank                        # [A]
    slot_of_assignment = tf.scatter_nd(order[:, None], slot_sorted, [a])       # [A]
    assignment_of_slot = tf.tensor_scatter_nd_update(tf.fill([n_rows], a), slot_sorted[:, None], order)  # [n_rows]
    return slot_of_assignment, assignment_of_slot, counts, row_start


def gather_rows(x: tf.Tensor, assignment_of_slot: tf.Tensor, n_assignments: int, k: int) -> tf.Tensor:
    """The row buffer: slot ``s`` holds token ``assignment_of_slot[s] // k`` of ``x`` [X, D], padding slots zero.

    Padding is a select on a clipped gather, not a gather from ``concat([x, zero row])``: the
    gradient of a concat that receives an IndexedSlices splits it with a dynamic-shape ``tf.where``,
    and XLA's bridge then runs value inference back through the routing, evaluating every upstream
    matmul on the host (200 s of the bench train step's compile; issue 13).
    """
    valid = assignment_of_slot < n_assignments                                  # [n_rows]
    rows = tf.gather(x, tf.where(valid, assignment_of_slot // k, 0))            # [n_rows, D]
    return tf.where(valid[:, None], rows, tf.zeros_like(rows))


def expert_slice(w: tf.Tensor | tf.Variable, e: tf.Tensor) -> tf.Tensor:
    """Expert ``e``'s matrix [I, O] of the stacked ``w`` [E, I, O], for a matmul inside a compiled loop.

    A dynamic slice, not ``tf.gather``: XLA on CPU copies a gathered [O, I] row element by element, which
    cost more than the 64 experts' matmuls themselves in a bench-sized layer (51 vs 36 ms, issue 13).
    """
    return tf.reshape(xla.dynamic_slice(w, [e, 0, 0], [1, *w.shape[1:]]), w.shape[1:])  # [1, I, O] -> [I, O]


def tiled_swiglu(xs: tf.Tensor, counts: tf.Tensor, row_start: tf.Tensor, tile_rows: int, w1: tf.Variable,
                 w2: tf.Variable, w3: tf.Variable, matmul: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """SwiGLU of the expert-sorted row buffer ``xs`` [n_rows, D] (``sparse_dispatch``'s layout). [n_rows, D].

    Every tile of ``tile_rows`` rows gathers its expert's ``w1`` [E, D, F], ``w2`` [E, F, D] and ``w3``
    [E, D, F]; one grouped ``matmul`` (``x`` [U, W, I] times ``w`` [U, I, O]) runs all tiles.
    Shared by ``MoE`` and the expert-parallel dispatch (``tf_impl.parallel.expert_parallel``), whose
    ``w*`` hold only a rank's experts.
    """
    n_rows, d = xs.shape
    n_tiles, n_experts = n_rows // tile_rows, w1.shape[0]
    row_end = row_start + (counts + tile_rows - 1) // tile_rows * tile_rows  # [E]
    tile_first_row = tf.range(n_tiles) * tile_rows                           # [U]
    tile_expert = tf.reduce_sum(tf.cast(row_end[None, :] <= tile_first_row[:, None], tf.int32), -1)  # [U]
    tile_expert = tf.minimum(tile_expert, n_experts - 1)                     # unused tiles: any expert
    xt = tf.reshape(xs, [n_tiles, tile_rows, d])                             # [U, W, D]
    w1, w2, w3 = (tf.gather(w, tile_expert) for w in (w1, w2, w3))           # [U,D,F],[U,F,D],[U,D,F]
    h = tf.nn.silu(matmul(xt, w1)) * matmul(xt, w3)                          # [U, W, F]
    return tf.reshape(matmul(h, w2), [n_rows, d])                            # [U, W, D] -> [n_rows, D]


class MoE(tf.Module):
    """``out = sum_k w_k * expert_k(x) + shared(x)`` with DeepSeek-V3's gate and a sparse dispatch.

    ``x`` [B, T, D] -> ``([B, T, D], router info)``.
    """

    def __init__(self, dim: int, moe_inter_dim: int, n_routed_experts: int, n_shared_experts: int,
                 n_activated_experts: int, n_expert_groups: int, n_limited_groups: int, score_func: ScoreFunc,
                 route_scale: float, *, fp8: bool, rng: np.random.Generator, name=None):
        super().__init__(name=name)
        e, f, d = n_routed_experts, moe_inter_dim, dim
        self.n_experts, self.n_activated_experts, self.fp8 = e, n_activated_experts, fp8
        self.route_args = dict(n_activated_experts=n_activated_experts, n_expert_groups=n_expert_groups,
                               n_limited_groups=n_limited_groups, score_func=score_func, route_scale=route_scale)
        self.gate_weight = tf.Variable(init_weight(rng, (e, d), d), name="gate_weight")      # [E, D]
        # The selection bias is moved by aux-loss-free balancing, never by gradient.
        self.gate_bias = tf.Variable(np.zeros([e], np.float32), trainable=False, name="gate_bias")  # [E]
        # Drawn per expert [O, I] as the canonical state is, stored [I, O] (kernel layout, module doc).
        kernel = lambda shape, fan_in: np.ascontiguousarray(np.swapaxes(init_weight(rng, shape, fan_in), 1, 2))
        self.w1 = tf.Variable(kernel((e, f, d), d), name="w1")                               # [E, D, F]
        self.w2 = tf.Variable(kernel((e, d, f), f), name="w2")                               # [E, F, D]
        self.w3 = tf.Variable(kernel((e, f, d), d), name="w3")                               # [E, D, F]
        self.shared_experts = MLP(d, n_shared_experts * f, fp8=fp8, rng=rng) if n_shared_experts else None
        self.rows_evaluated: int | None = None  # expert-row evaluations of the last traced call
        # Set by tf_impl.parallel.expert_parallel on a rank that holds only a shard of the experts:
        # a callable (x [X, D], weights [X, K], indices [X, K]) -> [X, D] that sends the rows to their
        # experts' ranks and back. None: every expert is local.
        self.dispatch = None

    def params(self, prefix: str) -> dict:
        """The gate, every routed expert and the shared experts under ``prefix``, in canonical names.

        Routed expert ``j``'s ``w1``/``w2``/``w3`` map to ``Slot(stack, j, transposed=True)``: slice j of
        the [E, I, O] stacked variable, so the canonical per-expert [O, I] names survive the stacked layout.
        """
        out = {f"{prefix}.gate.weight": Slot(self.gate_weight), f"{prefix}.gate.bias": Slot(self.gate_bias)}
        for j in range(self.n_experts):
            for n in ("w1", "w2", "w3"):
                out[f"{prefix}.experts.{j}.{n}.weight"] = Slot(getattr(self, n), j, transposed=True)
        if self.shared_experts is not None:
            out.update(self.shared_experts.params(f"{prefix}.shared_experts"))
        return out

    def _matmul(self, x, w):
        """Per-tile ``x`` [U, W, I] times ``w`` [U, I, O] -> [U, W, O] (FP8 on the canonical [U, O, I] view).

        A batched ``tf.matmul``, not ``einsum("UWI,UIO->UWO")``: in graph mode (the Trainer's default) the
        einsum's gradient made a bench-sized MoE layer's forward + backward 1.5x slower (139 vs 95 ms).
        """
        return fp8_matmul(x, tf.transpose(w, [0, 2, 1])) if self.fp8 else tf.matmul(x, w)

    def experts(self, x: tf.Tensor, weights: tf.Tensor, indices: tf.Tensor, differentiable: bool = True) -> tf.Tensor:
        """``sum_k weights[:, k] * expert_{indices[:, k]}(x)`` for ``x`` [X, D], sparse. Returns [X, D].

        ``differentiable=True`` runs the tiled scheme (one batched matmul over the tiles; what
        training differentiates), ``False`` the loop scheme (inference: each non-empty expert's
        weights are read once). Both compute the same values.
        """
        n, d = x.shape
        k = self.n_activated_experts
        a = n * k
        tile_rows, n_rows = dispatch_plan(a, self.n_experts, loop=not differentiable)
        self.rows_evaluated = n_rows
        slot_of_assignment, assignment_of_slot, counts, row_start = sparse_dispatch(
            indices, self.n_experts, tile_rows, n_rows)
        xs = gather_rows(x, assignment_of_slot, a, k)                            # [n_rows, D]
        if differentiable:
            y = self._tiled(xs, counts, row_start, tile_rows, n_rows)
        else:
            y = self._looped(xs, counts, row_start, loop_tiles(a, self.n_experts), n_rows)  # [n_rows, D]
        y_assigned = tf.reshape(tf.gather(y, slot_of_assignment), [n, k, d])     # [X, K, D]
        return tf.einsum("XKD,XK->XD", y_assigned, weights)

    def _tiled(self, xs, counts, row_start, tile_rows, n_rows):
        """Every tile gathers its expert's weights; one grouped SwiGLU over all tiles. [n_rows, D]."""
        return tiled_swiglu(xs, counts, row_start, tile_rows, self.w1, self.w2, self.w3, self._matmul)

    def _looped(self, xs, counts, row_start, tiles, n_rows):
        """A while loop over the non-empty experts, inner ones over each expert's tiles. [n_rows, D].

        Each expert's weights are read once, straight into its matmuls (no concatenated copy). Its
        run of rows (padded to a multiple of the smallest tile) is cut greedily into ``tiles`` rows
        (``loop_tiles``: 256, 128, ..., 16 in a prefill; one size in decode), each size in its own loop
        of static shape: the GEMMs are big where an expert has many rows (prefill: 0.41 -> 0.51 MFU at
        bench, B=8 x T=256) and the padding stays below the smallest tile per expert.
        """
        d = xs.shape[1]
        tile_rows = tiles[-1]
        sizes = [t // tile_rows for t in tiles]                                  # in small tiles, biggest first
        used = tf.argsort(tf.cast(counts == 0, tf.int32), stable=True)           # [E] non-empty experts first
        n_used = tf.reduce_sum(tf.cast(counts > 0, tf.int32))
        n_tiles = (counts + tile_rows - 1) // tile_rows                          # [E] small tiles per expert

        def expert_body(i, y):
            e = tf.gather(used, i)  # gather, not used[i]: XLA would demand a constant index
            w1, w3, w2 = (expert_slice(w, e) for w in (self.w1, self.w3, self.w2))  # [D, F], [D, F], [F, D]
            first = tf.gather(row_start, e)

            def swiglu(xt):                                                      # [W, D] -> [W, D]
                if self.fp8:
                    # w1 and w3 are quantised separately, as stored: one [2F, D] matrix would let a
                    # 128x128 block straddle both and share one scale when F % 128 != 0.
                    canon = lambda w: tf.transpose(w)[None]                      # [1, O, I]
                    h = tf.nn.silu(fp8_matmul(xt[None], canon(w1))[0]) * fp8_matmul(xt[None], canon(w3))[0]
                    return fp8_matmul(h[None], canon(w2))[0]
                h = tf.nn.silu(tf.matmul(xt, w1)) * tf.matmul(xt, w3)          # [W, F]
                return tf.matmul(h, w2)

            def run_tiles(y, rows, first_tile, n):                               # n tiles of `rows` rows
                def body(j, y):
                    r = first + first_tile * tile_rows + j * rows
                    return j + 1, xla.dynamic_update_slice(y, swiglu(xla.dynamic_slice(xs, [r, 0], [rows, d])), [r, 0])
                return tf.while_loop(lambda j, y: j < n, body, (0, y))[1]

            left, done = tf.gather(n_tiles, e), 0                                # in small tiles
            for units in sizes:                                                  # greedy: biggest first
                n = left // units
                y = run_tiles(y, units * tile_rows, done, n)
                left, done = left - n * units, done + n * units
            return i + 1, y

        return tf.while_loop(lambda i, y: i < n_used, expert_body, (0, tf.zeros([n_rows, d], xs.dtype)))[1]

    def __call__(self, x: tf.Tensor, differentiable: bool = True):
        """``x`` [B, T, D] -> ``(y [B, T, D], (scores [B, T, E], indices [B, T, K], load [E]))``.

        ``differentiable`` picks the dispatch scheme (see ``experts``).
        """
        b, t, d = x.shape
        flat = tf.reshape(x, [b * t, d])                                          # [X, D]
        weights, indices, scores = route(flat, self.gate_weight, self.gate_bias, **self.route_args)  # [X,K], [X,K], [X,E]
        if self.dispatch is None:
            y = self.experts(flat, weights, indices, differentiable)             # [X, D]
        else:
            y = self.dispatch(flat, weights, indices)                            # [X, D]
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        info = (tf.reshape(scores, [b, t, self.n_experts]), tf.reshape(indices, [b, t, self.n_activated_experts]),
                expert_load(indices, self.n_experts))
        return tf.reshape(y, [b, t, d]), info
