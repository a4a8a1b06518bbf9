"""DeepSeek-V3 Transformer in TensorFlow: blocks, the model, caching and generation.

Reading order: Block (attention + FFN with pre-norms) -> Transformer (embed -> blocks -> norm -> head,
plus the MTP modules) -> caching (prefill, decode_step) -> generation.

Compiled vs eager: ``Transformer(cfg, compiled=True)`` (the default) runs ``model(tokens)``,
``forward_aux``, ``prefill`` and ``decode_step`` through ``tf.function(jit_compile=True)``; set
``model.compiled = False`` (or pass ``compiled=False``) to run the same code eagerly. Inside an outer
``tf.function`` (e.g. a training step) the model's code is inlined into that function instead.
The decode step is one compiled call whose shapes do not depend on the exact position (the position is
a tensor and the caches have static shape); it reads the cache's first ``cache_read_length`` slots (a
bucket: at most 1.5x the filled ones), so it is traced once per (batch, cache mode, bucket).

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, S key
length, D model width, R rope dim, V vocab, E routed experts, K experts activated per token.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from harness.config import Dtype, ModelConfig
from harness.state import check_loadable
from tf_impl.attention import CACHE_MODES, MLA, CacheMode, KVCache, cache_read_length, token_positions
from tf_impl.linear import Linear, Slot
from tf_impl.moe import MLP, MoE
from tf_impl.mtp import MTPModule
from tf_impl.norm import RMSNorm
from tf_impl.rope import rope_tables


class InputError(ValueError):
    """Bad input to the model (token ids, lengths, batch sizes, cache misuse). The message says which."""


class Block(tf.Module):
    """``h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h))`` with a dense or MoE FFN."""

    def __init__(self, dim: int, attn: MLA, ffn: MLP | MoE, *, eps: float, name=None):
        super().__init__(name=name)
        self.attn_norm = RMSNorm(dim, eps=eps)
        self.attn = attn
        self.ffn_norm = RMSNorm(dim, eps=eps)
        self.ffn = ffn

    def __call__(self, x, cos, sin, cache=None, start=0, mode: str = "naive", differentiable: bool = True,
                 read_len: int | None = None):
        """``x`` [B, T, D] -> ``(out [B, T, D], router info)``; the info is None for a dense FFN.

        ``cache``, ``start``, ``mode``, ``read_len`` are the attention's (``MLA.__call__``);
        ``differentiable`` picks the MoE dispatch scheme (tiled for training, looped for inference).
        """
        h = x + self.attn(self.attn_norm(x), cos, sin, cache, start, mode, read_len)
        if isinstance(self.ffn, MoE):
            y, info = self.ffn(self.ffn_norm(h), differentiable)
            return h + y, info
        return h + self.ffn(self.ffn_norm(h)), None

    def params(self, prefix: str) -> dict:
        """The block's tensors under ``prefix``: ``attn_norm``, ``attn.*``, ``ffn_norm``, ``ffn.*``."""
        out = {}
        for name in ("attn_norm", "attn", "ffn_norm", "ffn"):
            out.update(getattr(self, name).params(f"{prefix}.{name}"))
        return out


def _to_tokens(tokens: Any, rank: int, what: str) -> np.ndarray:
    """Host-side check of a token array's type and rank; returns int32 numpy."""
    try:
        arr = np.asarray(tokens.numpy() if isinstance(tokens, tf.Tensor) else tokens)
    except ValueError:  # numpy refuses nested lists of unequal lengths
        lengths = [len(row) if hasattr(row, "__len__") else 1 for row in tokens]
        raise InputError(f"{what} is ragged: its rows have lengths {lengths}; pad them to one length "
                         "(batch sequences of equal length, or call the model once per sequence)") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise InputError(f"{what} must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim != rank:
        shape = "[B, T]" if rank == 2 else "[B]"
        raise InputError(f"{what} must have rank {rank} (shape {shape}), got shape {list(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{what} is empty (shape {list(arr.shape)}); give at least one token per sequence")
    return arr


class Transformer(tf.Module):
    """DeepSeek-V3: embedding, ``n_layers`` MLA blocks (the first ``n_dense_layers`` dense, then MoE),
    final RMSNorm, output head, and ``n_mtp_modules`` MTP modules used by ``forward_aux``."""

    def __init__(self, cfg: ModelConfig, seed: int = 0, compiled: bool = True, name=None):
        super().__init__(name=name)
        self.cfg = cfg
        self.compiled = compiled
        fp8 = cfg.dtype == Dtype.FP8
        rng = np.random.default_rng(seed)
        self.embed = tf.Variable(rng.standard_normal((cfg.vocab_size, cfg.dim), dtype=np.float32), name="embed")
        self.layers = [self._block(i, rng, fp8) for i in range(cfg.n_layers)]
        self.norm = RMSNorm(cfg.dim, eps=cfg.rms_eps)
        self.head = Linear(cfg.dim, cfg.vocab_size, fp8=False, rng=rng)  # the head stays fp32 in FP8 mode
        self.mtp = [MTPModule(cfg.dim, self._block(cfg.n_layers + k, rng, fp8), eps=cfg.rms_eps, fp8=fp8, rng=rng)
                    for k in range(cfg.n_mtp_modules)]
        self._cos, self._sin = rope_tables(cfg)                                  # [S, R/2] each
        self._params = self._collect_params()
        self._forward_xla = tf.function(self._forward_impl, jit_compile=True, autograph=False)
        self._aux_xla = tf.function(self._forward_aux_impl, jit_compile=True, autograph=False)
        self._prefill_xla = tf.function(self._prefill_impl, jit_compile=True, autograph=False)
        self._decode_xla = tf.function(self._decode_impl, jit_compile=True, autograph=False)

    def _block(self, layer_id: int, rng: np.random.Generator, fp8: bool) -> Block:
        """Block ``layer_id`` (main layers, then MTP blocks at ``n_layers + k``): MoE FFN where the config says so."""
        cfg = self.cfg
        attn = MLA(dim=cfg.dim, n_heads=cfg.n_heads, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
                   qk_nope_head_dim=cfg.qk_nope_head_dim, qk_rope_head_dim=cfg.qk_rope_head_dim,
                   v_head_dim=cfg.v_head_dim, softmax_scale=cfg.softmax_scale, eps=cfg.rms_eps, fp8=fp8, rng=rng)
        if cfg.is_moe_layer(layer_id):
            ffn = MoE(dim=cfg.dim, moe_inter_dim=cfg.moe_inter_dim, n_routed_experts=cfg.n_routed_experts,
                      n_shared_experts=cfg.n_shared_experts, n_activated_experts=cfg.n_activated_experts,
                      n_expert_groups=cfg.n_expert_groups, n_limited_groups=cfg.n_limited_groups,
                      score_func=cfg.score_func, route_scale=cfg.route_scale, fp8=fp8, rng=rng)
        else:
            ffn = MLP(cfg.dim, cfg.inter_dim, fp8=fp8, rng=rng)
        return Block(cfg.dim, attn, ffn, eps=cfg.rms_eps)

    # ------------------------------------------------------------------ state
    def _collect_params(self) -> dict:
        """{canonical name: Slot (variable, index into a stacked variable or None, stored transposed)}."""
        out = {"embed.weight": Slot(self.embed)}
        for i, layer in enumerate(self.layers):
            out.update(layer.params(f"layers.{i}"))
        out.update(self.norm.params("norm"))
        out.update(self.head.params("head"))
        for k, module in enumerate(self.mtp):
            out.update(module.params(f"mtp.{k}"))
        return out

    def named_variables(self) -> dict[str, Slot]:
        """``{canonical name: Slot(variable, index, transposed)}``: where each canonical tensor lives.

        Routed experts are stored stacked ([E, D, F]) for the sparse dispatch, so expert ``j``'s
        tensor is slice ``j`` of its variable (index ``j``); a tensor stored on its own has index None.
        Linear weights are stored [I, O] (``transposed``; ``tf_impl.linear`` says why). Gradient code
        uses ``Slot.canonical`` to name gradients canonically without copying weights.
        """
        return dict(self._params)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state: {DeepSeek tensor name: float32 np.ndarray}, linear weights [out, in]."""
        values: dict[int, np.ndarray] = {}
        out = {}
        for name, slot in self._params.items():
            arr = values.setdefault(id(slot.var), slot.var.numpy())
            out[name] = np.array(slot.canonical(arr), dtype=np.float32, copy=True)
        return out

    def load_state_dict(self, state: Mapping[str, ArrayLike], source: str = "state", *,
                        allow_non_finite: bool = False) -> None:
        """Load a canonical state strictly: every missing, unexpected or wrong-shaped tensor is listed.

        All problems are reported in one error rather than the first, so a converted checkpoint can be
        fixed in one pass. Per-expert tensors are stacked back into their [E, ...] variables. Nothing is
        assigned unless the whole state passes ``harness.state.check_loadable``: floating point, and
        no NaN/Inf or float32 overflow unless ``allow_non_finite``.

        Args:
            state: ``{canonical name: float array}``, linear weights [out, in] (see ``state_dict``).
            source: how the error messages name the state, e.g. a checkpoint path.
            allow_non_finite: load NaN/Inf weights on purpose (e.g. to reproduce a divergence).
        """
        check_loadable(state, self.cfg, source, allow_non_finite)
        slices: dict[int, tuple[tf.Variable, dict]] = {}
        for name, slot in self._params.items():
            slices.setdefault(id(slot.var), (slot.var, {}))[1][slot.index] = slot.stored(np.asarray(state[name], np.float32))
        for var, parts in slices.values():
            var.assign(parts[None] if None in parts else np.stack([parts[j] for j in range(len(parts))]))

    def num_params(self) -> int:
        """Number of scalars in the canonical state (gate biases included)."""
        return sum(int(np.prod(v.shape)) for v in {id(s.var): s.var for s in self._params.values()}.values())

    def gate_biases(self) -> list[tf.Variable]:
        """The [E] selection-bias variables of every MoE layer (main layers, then MTP blocks)."""
        blocks = self.layers + [m.block for m in self.mtp]
        return [b.ffn.gate_bias for b in blocks if isinstance(b.ffn, MoE)]

    # ------------------------------------------------------------------ forward
    def _run(self, compiled_fn, eager_fn, *args):
        if self.compiled and tf.executing_eagerly():
            return compiled_fn(*args)
        return eager_fn(*args)

    def _trunk(self, tokens, cos, sin, caches=None, start=0, mode="naive", differentiable=False, read_len=None):
        """Hidden state before the final norm, [B, T, D], and the MoE router infos.

        ``read_len``: the cache slots a compiled step (tensor ``start``) reads; see ``MLA.__call__``.
        """
        h = tf.gather(self.embed, tokens)                                       # [B, T, D]
        infos = []
        for i, layer in enumerate(self.layers):
            h, info = layer(h, cos, sin, None if caches is None else caches[i], start, mode, differentiable,
                            read_len)
            if info is not None:
                infos.append(info)
        return h, infos

    def _forward_impl(self, tokens, head: bool = True):
        h, _ = self._trunk(tokens, *self.rope_at(0, tokens.shape[1]))
        return self.logits(h) if head else h                                    # [B, T, V] or [B, T, D]

    def __call__(self, tokens) -> tf.Tensor:
        """Logits of shape [B, T, V] (fp32) for int token ids ``tokens`` of shape [B, T]."""
        if not tf.executing_eagerly() and isinstance(tokens, tf.Tensor):
            return self._forward_impl(tokens)                                   # inside a caller's tf.function
        return self._run(self._forward_xla, self._forward_impl, tf.constant(self.check_tokens(tokens)))

    def logits(self, h: tf.Tensor) -> tf.Tensor:
        """The final norm and the output head: hidden states [..., D] -> fp32 logits [..., V]."""
        return self.head(self.norm(h))

    def rope_at(self, start: int | tf.Tensor, t: int) -> tuple[tf.Tensor, tf.Tensor]:
        """RoPE ``(cos, sin)``, each fp32 [T, R/2], for positions ``start..start+T-1`` (YaRN included).

        ``start`` is a Python int, or a scalar tensor inside a compiled step (a cache position that
        changes from call to call without retracing), or a vector tensor [B] of per-row positions
        (then each is [B, T, R/2]: batched speculative decoding, whose rows advance unevenly).
        """
        if isinstance(start, (int, np.integer)):
            if not 0 <= start <= start + t <= self.cfg.max_seq_len:
                raise InputError(f"positions {start}..{start + t - 1} are outside "
                                 f"0..max_seq_len-1={self.cfg.max_seq_len - 1}")
            return self._cos[start:start + t], self._sin[start:start + t]      # [T, R/2] each
        positions = token_positions(start, t)                                   # [T] or [B, T]
        return tf.gather(self._cos, positions), tf.gather(self._sin, positions)

    def _forward_aux_impl(self, tokens):
        b, t = tokens.shape
        cos, sin = self.rope_at(0, t)
        h, infos = self._trunk(tokens, cos, sin, differentiable=True)
        logits = self.logits(h)                                                 # [B, T, V]
        mtp_logits = []
        for k, module in enumerate(self.mtp, start=1):
            n = t - k
            emb = tf.gather(self.embed, tokens[:, k:])                          # [B, T-k, D]
            h, info = module(emb, h[:, :n], cos[:n], sin[:n])                   # [B, T-k, D]
            mtp_logits.append(self.head(module.norm(h)))                        # [B, T-k, V]
            if info is not None:
                scores, indices, load = info                                    # pad T-k -> T
                infos.append((tf.pad(scores, [[0, 0], [0, k], [0, 0]]),
                              tf.pad(indices, [[0, 0], [0, k], [0, 0]], constant_values=-1), load))
        e, kk = self.cfg.n_routed_experts, self.cfg.n_activated_experts
        if infos:
            scores, indices, loads = (tf.stack(list(x)) for x in zip(*infos))
        else:
            scores, indices, loads = tf.zeros([0, b, t, e]), tf.zeros([0, b, t, kk], tf.int32), tf.zeros([0, e])
        aux = {"mtp_logits": mtp_logits, "expert_load": loads, "router_scores": scores, "router_indices": indices}
        return logits, aux

    def forward_aux(self, tokens: ArrayLike | tf.Tensor) -> tuple[tf.Tensor, dict[str, Any]]:
        """``(logits [B, T, V], aux)`` for training (see docs/internals.md, "MTP alignment").

        ``aux["mtp_logits"]``: list of [B, T-k, V], k = 1..n_mtp_modules (predicting tokens[:, t+k+1]);
        ``aux["expert_load"]``: [n_moe_layers, E] float32 token counts;
        ``aux["router_scores"]``: [n_moe_layers, B, T, E] original gate scores;
        ``aux["router_indices"]``: [n_moe_layers, B, T, K] int32.
        MoE layers in layer order, main layers first, then the MTP blocks. MTP block k routes only
        T-k positions: its last k positions are padding (scores 0, indices -1, not counted in the load).
        """
        if not tf.executing_eagerly() and isinstance(tokens, tf.Tensor):
            return self._forward_aux_impl(tokens)                               # inside a caller's tf.function
        arr = self.check_tokens(tokens)
        if arr.shape[1] <= self.cfg.n_mtp_modules:
            raise InputError(f"forward_aux needs T > n_mtp_modules={self.cfg.n_mtp_modules}, got T={arr.shape[1]}")
        return self._run(self._aux_xla, self._forward_aux_impl, tf.constant(arr))

    def hidden_states(self, tokens: ArrayLike | tf.Tensor, cache: KVCache | None = None,
                      start: int | tf.Tensor | None = None,
                      read_len: int | None = None) -> tuple[tf.Tensor, KVCache | None]:
        """The main blocks' output before the final norm, ``(h [B, T, D], cache)``; ``logits(h)`` finishes it.

        Without a cache the T tokens sit at positions 0..T-1 and attend causally to each other (what
        ``__call__`` runs). With one they sit at ``start..start+T-1`` (``start`` defaults to
        ``cache.length``; a smaller one rewrites those positions, as a rejected speculative draft
        needs), attend to every position before them, and are written into the cache, whose length
        becomes ``start + T``.

        Inside a caller's ``tf.function`` (tokens a symbolic tensor) the call is traced into that
        function: no host-side checks, ``start`` is required with a cache and may be a scalar tensor
        or a vector [B] of per-row positions (each row written, masked and rotated at its own; batched
        speculative decoding, ``tf_impl.speculative``), and the cache's length (a host value) is left
        to the caller. With a tensor ``start`` the call
        reads the cache's first ``read_len`` slots (a Python int >= start + T, e.g.
        ``tf_impl.attention.cache_read_length(length + T, max_seq_len)``; default all of them), so a
        step traced per read length reads only what is filled.

        Args:
            tokens: int token ids of shape [B, T].
            cache: a KVCache from ``new_cache``, or None.
            start: the position of ``tokens[:, 0]`` in the cache, in 0..``cache.length``.
            read_len: with a tensor ``start``, how many cache slots attention reads; None reads them all.

        Returns:
            ``(h, cache)``: h fp32 [B, T, D], and the cache (updated in place; None without one).
        """
        if not tf.executing_eagerly() and isinstance(tokens, tf.Tensor):      # inside a caller's tf.function
            if cache is None:
                return self._forward_impl(tokens, head=False), None
            if start is None:
                raise InputError("hidden_states inside a tf.function needs start= with a cache: the cache's "
                                 "length is a host value the compiled step cannot read")
            h, _ = self._trunk(tokens, *self.rope_at(start, tokens.shape[1]), cache.layers, start, cache.mode,
                               read_len=read_len)
            return h, cache
        arr = self.check_tokens(tokens)
        if cache is None:
            if start not in (None, 0):
                raise InputError(f"start={start} needs a cache: without one the tokens sit at positions 0..T-1")
            return self._run(self._forward_xla, self._forward_impl, tf.constant(arr), False), None
        if isinstance(start, tf.Tensor):  # a caller's tf.function running eagerly (tf.config.run_functions_eagerly)
            start = int(start.numpy())
        self._check_cache(cache, arr.shape[0], arr.shape[1], "tokens", start)
        start = cache.length if start is None else int(start)
        h = self._run(self._prefill_xla, self._prefill_impl, tf.constant(arr), start, cache.mode, cache.variables,
                      False)
        cache.length, cache.batch = start + arr.shape[1], arr.shape[0]
        return h, cache

    # ------------------------------------------------------------------ input checks
    def _check_length(self, t: int, what: str, already: int = 0) -> None:
        if already + t > self.cfg.max_seq_len:
            done = f" after the {already} cached positions" if already else ""
            raise InputError(f"{what} of length {t}{done} exceeds max_seq_len={self.cfg.max_seq_len}; "
                             "shorten it or build the model with a larger max_seq_len")

    def check_tokens(self, tokens: ArrayLike, what: str = "tokens", rank: int = 2) -> np.ndarray:
        """``tokens`` as int32 after the checks every entry point runs; InputError naming the problem otherwise.

        Args:
            tokens: token ids, any array-like (a tf.Tensor included).
            what: how the error messages name the argument (``"prompt"``, ``"next_tokens"``, ...).
            rank: 2 for [B, T] (also checked against ``max_seq_len``), 1 for [B].

        Returns:
            the ids, int32 numpy of shape [B, T] (or [B]): integer dtype, non-empty, in ``[0, vocab_size)``.
        """
        arr = _to_tokens(tokens, rank, what)
        if rank == 2:
            self._check_length(arr.shape[1], what)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            bad = lo if lo < 0 else hi
            raise InputError(f"{what} holds token id {bad}, outside [0, vocab_size={self.cfg.vocab_size})")
        return arr.astype(np.int32)

    # ------------------------------------------------------------------ caching
    def new_cache(self, batch_size: int, mode: str = "absorb") -> KVCache:
        """An empty cache for up to ``batch_size`` sequences of max_seq_len tokens.

        Args:
            batch_size: the most sequences decoded together, in 1..``cfg.max_batch_size``.
            mode: ``"absorb"`` (latent [B, S, C] and rope key [B, S, R] per layer: MLA's small cache)
                or ``"naive"`` (per-head keys [B, S, N, H+R] and values [B, S, N, H]).

        Returns:
            a KVCache of length 0; bad arguments raise InputError naming the valid range.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > self.cfg.max_batch_size:
            raise InputError(f"batch_size={batch_size} exceeds max_batch_size={self.cfg.max_batch_size}")
        if mode not in CACHE_MODES:
            raise InputError(f"cache mode {mode!r} is unknown; use one of {list(CACHE_MODES)}")
        return KVCache(self.cfg, int(batch_size), mode)

    def _check_cache(self, cache, batch: int, t: int, what: str, start: int | None = None) -> None:
        """Check ``cache`` fits this model and ``what`` [batch, t] at position ``start`` (default: its length)."""
        if not isinstance(cache, KVCache):
            raise InputError(f"cache must come from model.new_cache(...), got {type(cache).__name__}")
        start = cache.length if start is None else start
        expected = KVCache.buffer_shapes(self.cfg, cache.batch_size, cache.mode)
        got = [[v.shape.as_list() for v in layer] for layer in cache.layers]
        if len(got) != self.cfg.n_layers or any(shapes != expected for shapes in got):
            raise InputError(f"cache was built for another config: its {len(got)} layers hold buffers of shapes "
                             f"{got[0] if got else []}, this model needs {self.cfg.n_layers} layers of {expected} "
                             f"({cache.mode.value} mode); build the cache with this model's new_cache()")
        if batch > cache.batch_size:
            raise InputError(f"{what} has batch {batch}, larger than the cache's batch_size={cache.batch_size}; "
                             "build the cache with model.new_cache(batch)")
        if cache.length and batch != cache.batch:
            raise InputError(f"{what} has batch {batch} but the cache holds {cache.batch} sequences")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= cache.length:
            raise InputError(f"start={start!r} is outside 0..{cache.length}: the cache holds {cache.length} tokens, "
                             "and a position past them would leave a gap")
        self._check_length(t, what, start)

    def _prefill_impl(self, tokens, start: int, mode: str, cache_vars, head: bool = True):
        t = tokens.shape[1]
        caches = [tuple(cache_vars[2 * i: 2 * i + 2]) for i in range(self.cfg.n_layers)]
        h, _ = self._trunk(tokens, *self.rope_at(start, t), caches, start, mode)
        return self.logits(h) if head else h                                    # [B, T, V] or [B, T, D]

    def prefill(self, tokens: ArrayLike, cache: KVCache) -> tuple[tf.Tensor, KVCache]:
        """Run ``tokens`` [B, T] from the cache's current length, filling the cache; logits [B, T, V]."""
        arr = self.check_tokens(tokens)
        self._check_cache(cache, arr.shape[0], arr.shape[1], "tokens")
        logits = self._run(self._prefill_xla, self._prefill_impl, tf.constant(arr), cache.length, cache.mode,
                           cache.variables)
        cache.length += arr.shape[1]
        cache.batch = arr.shape[0]
        return logits, cache

    def _decode_impl(self, tokens, pos, mode: str, cache_vars, read_len: int):
        caches = [tuple(cache_vars[2 * i: 2 * i + 2]) for i in range(self.cfg.n_layers)]
        cos, sin = tf.gather(self._cos, pos[None]), tf.gather(self._sin, pos[None])  # [1, R/2]
        h, _ = self._trunk(tokens[:, None], cos, sin, caches, pos, mode, read_len=read_len)  # [B, 1, D]
        return self.logits(h[:, 0])                                             # [B, V]

    def _step(self, tokens: np.ndarray, cache: KVCache) -> tf.Tensor:
        # The position is a tensor (no retrace per position); the read length is a Python int, so the
        # step is traced once per bucket and reads only the filled part of the cache.
        read_len = cache_read_length(cache.length + 1, self.cfg.max_seq_len)
        logits = self._run(self._decode_xla, self._decode_impl, tf.constant(tokens),
                           tf.constant(cache.length, tf.int32), cache.mode, cache.variables, read_len)
        cache.length += 1
        cache.batch = tokens.shape[0]
        return logits

    def decode_step(self, next_tokens: ArrayLike, cache: KVCache) -> tuple[tf.Tensor, KVCache]:
        """One token per sequence, ``next_tokens`` [B], at the cache's current position; logits [B, V].

        The cache is updated in place and returned for convenience.
        """
        arr = self.check_tokens(next_tokens, "next_tokens", rank=1)
        self._check_cache(cache, arr.shape[0], 1, "next_tokens")
        return self._step(arr, cache), cache

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: ArrayLike, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0, mode: str = "absorb") -> np.ndarray:
        """Continue ``prompt`` [B, T]; returns only the new tokens, int32 [B, max_new_tokens] (as DeepSeek's own).

        ``temperature == 0`` is greedy (argmax). Otherwise tokens are sampled from
        ``softmax(logits / temperature)`` restricted to the smallest top-p nucleus, with a numpy
        generator seeded by ``seed``, so the same seed gives the same tokens.
        """
        arr = self.check_tokens(prompt, "prompt")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
                or not temperature >= 0.0:
            raise InputError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        if not 0.0 < top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        self._check_length(arr.shape[1] + max_new_tokens, "prompt + max_new_tokens")
        if max_new_tokens == 0:
            return np.zeros([arr.shape[0], 0], np.int32)
        rng = np.random.default_rng(seed)
        cache = self.new_cache(arr.shape[0], mode)
        logits, cache = self.prefill(arr, cache)
        nxt = _sample(logits[:, -1].numpy(), temperature, top_p, rng)
        out = [nxt]
        for _ in range(max_new_tokens - 1):
            nxt = _sample(self._step(nxt, cache).numpy(), temperature, top_p, rng)
            out.append(nxt)
        return np.stack(out, 1)  # [B, max_new_tokens]


def _sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """Next token ids [B] from ``logits`` [B, V]: argmax at temperature 0, else seeded top-p sampling."""
    if temperature == 0.0:
        return np.argmax(logits, -1).astype(np.int32)
    z = logits.astype(np.float64) / temperature
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    order = np.argsort(-probs, -1, kind="stable")                               # [B, V] most likely first
    sorted_p = np.take_along_axis(probs, order, -1)
    keep = np.cumsum(sorted_p, -1) - sorted_p < top_p                            # the nucleus (never empty)
    sorted_p = np.where(keep, sorted_p, 0.0)
    cdf = np.cumsum(sorted_p, -1)
    u = rng.random(len(logits)) * cdf[:, -1]
    pick = np.minimum((cdf <= u[:, None]).sum(-1), logits.shape[-1] - 1)
    return order[np.arange(len(logits)), pick].astype(np.int32)
