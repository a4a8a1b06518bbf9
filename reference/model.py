"""DeepSeek-V3 in Flax NNX: the block, the network, and the public ``Transformer`` wrapper.

Two layers of objects:
- ``DeepSeekV3`` is the NNX module tree (embed -> blocks -> norm -> head, plus MTP modules). Its
  methods are pure functions of its variables and are only ever called under ``jax.jit``.
- ``Transformer`` is the public API shared with ``tf_impl``. It holds the module split into a static
  ``graphdef`` and two variable states (trained ``nnx.Param`` and the gate biases), and calls
  module-level ``jax.jit`` functions that merge them back. Splitting once avoids walking the module
  graph on every call, which matters for single-token decoding. Anything that changes weights
  (``load_state_dict``, ``reference.train``) replaces those states.

Causal masking: DeepSeek masks only when more than one token is processed. Here every call masks
``key position <= query position``, which is the same thing for multi-token calls, a no-op for a
single new token, and also hides the not-yet-written tail of the fixed-size cache.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, S key
length, D model width, R rope dim, V vocab, E routed experts, K experts activated per token.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from numpy.typing import ArrayLike

from harness.config import Dtype, ModelConfig
from harness.state import check_loadable, expected_shapes
from reference.attention import MLA, CacheMode, KVCache, causal_mask, empty_layer_cache, read_length
from reference.linear import Linear, canonical_swap, init_weight
from reference.moe import MLP, GateBias, MoE, expert_load
from reference.mtp import MTPModule
from reference.norm import RMSNorm
from reference.rope import rope_at


class InputError(ValueError):
    """Bad input to the model (token ids, lengths, batch sizes, cache misuse). The message says which."""


class Embedding(nnx.Module):
    """Token embedding table [V, D]."""

    def __init__(self, vocab_size: int, dim: int, *, rng: np.random.Generator):
        self.weight = init_weight(rng, (vocab_size, dim), 1)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return jnp.take(self.weight[...], tokens, axis=0)  # [B, T, D]


class Block(nnx.Module):
    """``h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h))`` with a dense or MoE FFN."""

    def __init__(self, dim: int, attn: MLA, ffn: MLP | MoE, *, eps: float):
        self.attn_norm = RMSNorm(dim, eps=eps)
        self.attn = attn
        self.ffn_norm = RMSNorm(dim, eps=eps)
        self.ffn = ffn

    def __call__(self, x, cos, sin, mask, cache=None, start=0, mode=CacheMode.NAIVE):
        """``x`` [B, T, D] -> (out [B, T, D], updated cache, (scores, indices) for a MoE FFN else None)."""
        attn_out, cache = self.attn(self.attn_norm(x), cos, sin, mask, cache, start, mode)
        h = x + attn_out
        if isinstance(self.ffn, MoE):
            ffn_out, scores, indices = self.ffn(self.ffn_norm(h))
            return h + ffn_out, cache, (scores, indices)
        return h + self.ffn(self.ffn_norm(h)), cache, None


class DeepSeekV3(nnx.Module):
    """The module tree. Attribute paths spell the canonical state names (see ``_canonical_names``)."""

    def __init__(self, cfg: ModelConfig, *, rng: np.random.Generator):
        self.cfg = cfg
        self.embed = Embedding(cfg.vocab_size, cfg.dim, rng=rng)
        fp8 = cfg.dtype is Dtype.FP8
        self.layers = nnx.List([self._block(i, rng, fp8) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.dim, eps=cfg.rms_eps)
        self.head = Linear(cfg.dim, cfg.vocab_size, fp8=False, rng=rng)  # the head stays fp32 in FP8 mode
        self.mtp = nnx.List([MTPModule(cfg.dim, self._block(cfg.n_layers + k, rng, fp8), eps=cfg.rms_eps, fp8=fp8,
                                       rng=rng)
                             for k in range(cfg.n_mtp_modules)])

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

    def trunk(self, tokens: jax.Array, caches: list[dict[str, jax.Array]] | None = None, start: int | jax.Array = 0,
              key_len: int | None = None, mode: CacheMode = CacheMode.NAIVE
              ) -> tuple[jax.Array, list[dict[str, jax.Array]] | None, list[tuple[jax.Array, jax.Array]]]:
        """Embedding and main blocks: ``tokens`` [B, T] -> (h [B, T, D] before the final norm,
        updated caches or None, [(scores, indices)] per MoE layer).

        Without ``caches`` the T tokens attend causally to each other. With them, the tokens sit at
        positions ``start..start+T-1`` and attend to the first ``key_len`` cache slots.
        """
        t = tokens.shape[1]
        cos, sin = rope_at(self.cfg, start, t)  # [T, R/2] each
        mask = causal_mask(start, t, t if caches is None else key_len)  # [T, S]
        h = self.embed(tokens)  # [B, T, D]
        new_caches, routing = [], []
        for i, layer in enumerate(self.layers):
            h, cache, route = layer(h, cos, sin, mask, None if caches is None else caches[i], start, mode)
            new_caches.append(cache)
            if route is not None:
                routing.append(route)
        return h, (None if caches is None else new_caches), routing

    def logits(self, h: jax.Array) -> jax.Array:
        """Final norm and head: [B, T, D] -> fp32 logits [B, T, V]."""
        return self.head(self.norm(h))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.logits(self.trunk(tokens)[0])

    def forward_aux(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
        """Logits [B, T, V] and the training view of docs/internals.md (MTP logits and routing)."""
        h, _, routing = self.trunk(tokens)
        logits = self.logits(h)
        t = tokens.shape[1]
        mtp_logits = []
        for k, module in enumerate(self.mtp):
            tk = t - k - 1  # module k+1 predicts tokens[:, i+k+2] from position i; tk positions have an input token
            cos, sin = rope_at(self.cfg, 0, tk)  # [T-k-1, R/2] each
            emb = self.embed(tokens[:, k + 1:])  # [B, T-k-1, D]
            h, route = module(emb, h[:, :tk], cos, sin, causal_mask(0, tk, tk))  # [B, T-k-1, D]
            if route is not None:
                routing.append(route)
            mtp_logits.append(self.logits_mtp(module, h))
        scores = [s for s, _ in routing]
        indices = [i for _, i in routing]
        load = jnp.stack([expert_load(i, self.cfg.n_routed_experts) for i in indices]) if indices else \
            jnp.zeros((0, self.cfg.n_routed_experts), jnp.float32)  # [n_moe_layers, E]
        return logits, {"mtp_logits": mtp_logits, "expert_load": load, "router_scores": scores,
                        "router_indices": indices}

    def logits_mtp(self, module: MTPModule, h: jax.Array) -> jax.Array:
        """The MTP module's own norm, then the shared output head (MTP modules share the main head).

        Args:
            module: the MTP module whose final norm applies.
            h: its hidden states of shape [B, T - k - 1, D] for module k (0-based).

        Returns:
            logits of shape [B, T - k - 1, V].
        """
        return self.head(module.norm(h))


# ---------------------------------------------------------------------------- jitted entry points

@functools.partial(jax.jit, static_argnums=0, static_argnames=("head",))
def _forward(graphdef, params, biases, tokens, *, head=True):
    """Logits [B, T, V] of ``tokens`` [B, T] (or, with ``head=False``, the hidden states [B, T, D])."""
    model = nnx.merge(graphdef, params, biases)
    h = model.trunk(tokens)[0]
    return model.logits(h) if head else h


@functools.partial(jax.jit, static_argnums=0)
def _forward_aux(graphdef, params, biases, tokens):
    return nnx.merge(graphdef, params, biases).forward_aux(tokens)


@functools.partial(jax.jit, static_argnums=0, static_argnames=("key_len", "mode", "head"))
def _cached_forward(graphdef, params, biases, caches, tokens, start, *, key_len, mode, head=True):
    """Logits [B, T, V] (or, with ``head=False``, hidden states [B, T, D]) of ``tokens`` at positions
    ``start..`` and the caches with them written in."""
    model = nnx.merge(graphdef, params, biases)
    h, caches, _ = model.trunk(tokens, caches, start, key_len, mode)
    return (model.logits(h) if head else h), caches


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, params, biases, h):
    return nnx.merge(graphdef, params, biases).logits(h)


@functools.partial(jax.jit, static_argnames=("temperature", "top_p"))
def _sample(logits, key, *, temperature, top_p):
    """Next tokens [B] from ``logits`` [B, V]: greedy at temperature 0, else nucleus sampling."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    probs = jax.nn.softmax(logits, axis=-1)
    order = jnp.argsort(-probs, axis=-1)  # [B, V]: most likely first
    sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
    keep_sorted = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs < top_p  # mass before a token < top_p
    keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
    return jax.random.categorical(key, jnp.where(keep, logits, -jnp.inf), axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------- canonical state names

def _is_expert_path(path: tuple) -> bool:
    return len(path) >= 2 and path[-2] == "experts"


def _canonical_names(path: tuple, n_experts: int) -> list[str]:
    """Canonical tensor name(s) of one module variable.

    The MTP block's variables sit directly under ``mtp.{k}.`` in the canonical state, and the stacked
    expert weight ``...experts.w1`` (stored [E, D, F]) is the E tensors ``...experts.{j}.w1.weight`` [F, D].
    """
    parts = [str(p) for p in path]
    if parts[0] == "mtp" and parts[2] == "block":
        parts = parts[:2] + parts[3:]
    if _is_expert_path(path):
        prefix, w = ".".join(parts[:-1]), parts[-1]
        return [f"{prefix}.{j}.{w}.weight" for j in range(n_experts)]
    return [".".join(parts)]


def to_canonical(state: nnx.State, n_experts: int) -> dict[str, np.ndarray]:
    """A module state (or a gradient of one) as ``{canonical name: np.ndarray}`` with [out, in] layouts.

    Linear weights are stored [in, out] (``reference.linear.Kernel``); ``canonical_swap`` transposes them.
    """
    out: dict[str, np.ndarray] = {}
    for path, var in nnx.to_flat_state(state):
        value = canonical_swap(var, np.asarray(var[...]))
        names = _canonical_names(path, n_experts)
        if _is_expert_path(path):
            out.update(zip(names, value))
        else:
            out[names[0]] = value
    return out


def _from_canonical(state: nnx.State, canonical: dict[str, np.ndarray], n_experts: int) -> nnx.State:
    """``state`` with every value replaced from ``canonical`` (shapes already checked), as fp32 in the
    stored layout (linear weights transposed to [in, out] by ``canonical_swap``)."""
    new = []
    for path, var in nnx.to_flat_state(state):
        names = _canonical_names(path, n_experts)
        value = np.stack([canonical[n] for n in names]) if _is_expert_path(path) else canonical[names[0]]
        new.append((path, var.replace(jnp.asarray(canonical_swap(var, value), jnp.float32))))
    return nnx.from_flat_state(new)


# ---------------------------------------------------------------------------- public API

class Transformer:
    """DeepSeek-V3 with the project's public API (see ARCHITECTURE.md); the Flax twin of ``tf_impl.Transformer``."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        self.cfg = cfg
        module = DeepSeekV3(cfg, rng=np.random.default_rng(seed))
        self.graphdef, self.params, self.biases = nnx.split(module, nnx.Param, GateBias)

    # ------------------------------------------------------------------ state
    @property
    def module(self) -> DeepSeekV3:
        """A fresh NNX module holding the current weights (for inspection; edits do not flow back)."""
        return nnx.merge(self.graphdef, self.params, self.biases)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{DeepSeek tensor name: np.ndarray}`` in ``harness.state.expected_shapes`` order, [out, in] layouts."""
        e = self.cfg.n_routed_experts
        flat = {**to_canonical(self.params, e), **to_canonical(self.biases, e)}
        return {name: flat[name] for name in expected_shapes(self.cfg)}

    def load_state_dict(self, state: dict[str, Any], source: str = "state", *,
                        allow_non_finite: bool = False) -> None:
        """Replace every weight from ``state``; raises StateError listing every missing/extra/misshapen tensor.

        ``harness.state.check_loadable`` runs first, so nothing changes unless the whole state is
        floating point and finite in float32 (NaN/Inf only with ``allow_non_finite=True``).

        Args:
            state: ``{canonical name: float array}``, linear weights [out, in] (see ``state_dict``).
            source: how the error messages name the state, e.g. a checkpoint path.
            allow_non_finite: load NaN/Inf weights on purpose (e.g. to reproduce a divergence).
        """
        check_loadable(state, self.cfg, source, allow_non_finite)
        canonical = {k: np.asarray(v) for k, v in state.items()}
        e = self.cfg.n_routed_experts
        self.params = _from_canonical(self.params, canonical, e)
        self.biases = _from_canonical(self.biases, canonical, e)

    def num_params(self) -> int:
        """Number of scalars in the state (gate biases included), equal to ``harness.state.num_params``."""
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves((self.params, self.biases)))

    # ------------------------------------------------------------------ forward
    def __call__(self, tokens: ArrayLike) -> jax.Array:
        """``tokens`` int [B, T] -> fp32 logits [B, T, V] at every position (MTP modules not run)."""
        return _forward(self.graphdef, self.params, self.biases, self.check_tokens(tokens))

    def forward_aux(self, tokens: ArrayLike) -> tuple[jax.Array, dict[str, Any]]:
        """``(logits [B, T, V], aux)`` with aux = {"mtp_logits": [[B, T-k, V] for k=1..D],
        "expert_load": [n_moe_layers, E], "router_scores": [[B, T_l, E] per MoE layer],
        "router_indices": [[B, T_l, K] per MoE layer]}; MoE layers in order, main then MTP blocks, where
        T_l is T for main layers and T-k for MTP module k. Needs T > n_mtp_modules."""
        tokens = self.check_tokens(tokens)
        if tokens.shape[1] <= self.cfg.n_mtp_modules:
            raise InputError(f"forward_aux needs more than n_mtp_modules={self.cfg.n_mtp_modules} tokens per "
                             f"sequence so every MTP module has an input; got T={tokens.shape[1]}")
        return _forward_aux(self.graphdef, self.params, self.biases, tokens)

    def hidden_states(self, tokens: ArrayLike, cache: KVCache | None = None, start: int | None = None
                      ) -> tuple[jax.Array, KVCache | None]:
        """The main blocks' output before the final norm, ``(h [B, T, D], cache)``; ``logits(h)`` finishes it.

        Without a cache the T tokens sit at positions 0..T-1 and attend causally to each other (what
        ``__call__`` runs). With one they sit at ``start..start+T-1`` (``start`` defaults to
        ``cache.length``; a smaller one rewrites those positions, as a rejected speculative draft
        needs), attend to every position before them, and the returned cache holds them: its length
        is ``start + T``.

        Args:
            tokens: int token ids of shape [B, T].
            cache: a KVCache from ``new_cache``, or None.
            start: the position of ``tokens[:, 0]`` in the cache, in 0..``cache.length``.

        Returns:
            ``(h, cache)``: h fp32 [B, T, D], and the extended cache (None without one).
        """
        tokens = self.check_tokens(tokens)
        if cache is None:
            if start not in (None, 0):
                raise InputError(f"start={start} needs a cache: without one the tokens sit at positions 0..T-1")
            return _forward(self.graphdef, self.params, self.biases, tokens, head=False), None
        t = self._check_room(tokens, cache, start)
        start = cache.length if start is None else int(start)
        h, layers = _cached_forward(self.graphdef, self.params, self.biases, cache.layers, tokens, start,
                                    key_len=start + t, mode=cache.mode, head=False)
        return h, KVCache(cache.mode, layers, start + t)

    def logits(self, h: ArrayLike) -> jax.Array:
        """The final norm and the output head: hidden states [..., D] -> fp32 logits [..., V]."""
        return _logits(self.graphdef, self.params, self.biases, jnp.asarray(h, jnp.float32))

    def rope_at(self, start: int, t: int) -> tuple[jax.Array, jax.Array]:
        """RoPE ``(cos, sin)``, each fp32 [T, R/2], for positions ``start..start+T-1`` (YaRN included)."""
        if not 0 <= start <= start + t <= self.cfg.max_seq_len:
            raise InputError(f"positions {start}..{start + t - 1} are outside 0..max_seq_len-1={self.cfg.max_seq_len - 1}")
        return rope_at(self.cfg, start, t)

    # ------------------------------------------------------------------ cache and decoding
    def new_cache(self, batch_size: int, mode: str = "absorb") -> KVCache:
        """Zeroed cache for ``batch_size`` sequences of up to ``max_seq_len`` tokens.

        Args:
            batch_size: B, in 1..``cfg.max_batch_size``.
            mode: "absorb" (latent [B, S, C] and rope key [B, S, R] per layer, the small cache) or
                "naive" (per-head keys and values, the straightforward one, kept for comparison).

        Returns:
            a KVCache of length 0, one buffer dict per main layer (see ``empty_layer_cache``).
        """
        try:
            mode = CacheMode(mode)
        except ValueError:
            raise InputError(f"cache mode {mode!r} is unknown; use 'absorb' or 'naive'") from None
        if not 1 <= batch_size <= self.cfg.max_batch_size:
            raise InputError(f"batch_size={batch_size} must be in 1..max_batch_size={self.cfg.max_batch_size}")
        return KVCache(mode, [empty_layer_cache(self.cfg, batch_size, mode) for _ in range(self.cfg.n_layers)])

    def prefill(self, tokens: ArrayLike, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Run ``tokens`` [B, T] after what ``cache`` holds; returns (logits [B, T, V], the extended cache).

        The keys are the cache's first ``length + T`` slots (a static length: one compile per prompt shape).
        """
        tokens = self.check_tokens(tokens)
        t = self._check_room(tokens, cache)
        logits, layers = _cached_forward(self.graphdef, self.params, self.biases, cache.layers, tokens,
                                         cache.length, key_len=cache.length + t, mode=cache.mode)
        return logits, KVCache(cache.mode, layers, cache.length + t)

    def decode_step(self, next_tokens: ArrayLike, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Feed one token per sequence, ``next_tokens`` [B]; returns (logits [B, V], the extended cache).

        Attends over the first ``read_length(length + 1)`` slots (a bucket of at most 1.5x the filled
        ones) with the unwritten ones masked, so the steps of one bucket reuse one compiled program.
        """
        tokens = self.check_tokens(next_tokens, "next_tokens", rank=1)[:, None]  # [B, 1]
        self._check_room(tokens, cache)
        logits, layers = _cached_forward(self.graphdef, self.params, self.biases, cache.layers, tokens,
                                         cache.length, key_len=read_length(cache.length + 1, self.cfg.max_seq_len),
                                         mode=cache.mode)
        return logits[:, 0], KVCache(cache.mode, layers, cache.length + 1)

    def generate(self, prompt: ArrayLike, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0) -> jax.Array:
        """Continue ``prompt`` [B, T]; returns only the new tokens, int32 [B, max_new_tokens].

        temperature 0 is greedy; otherwise softmax(logits / temperature) restricted to the smallest set
        of tokens whose probability reaches ``top_p``. Uses the absorbed cache.
        """
        prompt = self.check_tokens(prompt, "prompt")
        b, t = prompt.shape
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
                or not temperature >= 0:
            raise InputError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        if max_new_tokens < 0 or not 0 < top_p <= 1:
            raise InputError(f"need max_new_tokens >= 0, temperature >= 0 and 0 < top_p <= 1; got "
                             f"{max_new_tokens}, {temperature}, {top_p}")
        if t + max_new_tokens - 1 > self.cfg.max_seq_len:
            raise InputError(f"prompt length {t} + max_new_tokens {max_new_tokens} - 1 exceeds "
                             f"max_seq_len={self.cfg.max_seq_len}; shorten the prompt or generate fewer tokens")
        if max_new_tokens == 0:
            return jnp.zeros((b, 0), jnp.int32)
        key = jax.random.key(seed)
        logits, cache = self.prefill(prompt, self.new_cache(b, "absorb"))
        out = [_sample(logits[:, -1], jax.random.fold_in(key, 0), temperature=float(temperature), top_p=float(top_p))]
        for i in range(1, max_new_tokens):
            logits, cache = self.decode_step(out[-1], cache)
            out.append(_sample(logits, jax.random.fold_in(key, i), temperature=float(temperature), top_p=float(top_p)))
        return jnp.stack(out, axis=1)  # [B, max_new_tokens]

    # ------------------------------------------------------------------ input checks
    def check_tokens(self, tokens: ArrayLike, what: str = "tokens", rank: int = 2) -> jax.Array:
        """``tokens`` as int32 after the checks every entry point runs; InputError naming the problem otherwise.

        Args:
            tokens: token ids, any array-like.
            what: how the error messages name the argument (``"prompt"``, ``"next_tokens"``, ...).
            rank: 2 for [B, T] (also checked against ``max_seq_len``), 1 for [B].

        Returns:
            the ids, int32 of shape [B, T] (or [B]): integer dtype, non-empty, in ``[0, vocab_size)``.
        """
        try:
            arr = np.asarray(tokens)
        except ValueError:  # nested lists of unequal lengths
            lengths = [len(row) if hasattr(row, "__len__") else 1 for row in tokens]
            raise InputError(f"{what} is ragged: its rows have lengths {lengths}; pad them to one length "
                             "(batch sequences of equal length, or call the model once per sequence)") from None
        shape = "[B, T]" if rank == 2 else "[B]"
        if arr.ndim != rank:
            raise InputError(f"{what} must have shape {shape}, got rank {arr.ndim} shape {list(arr.shape)}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{what} must be integer ids, got dtype {arr.dtype}")
        if arr.size == 0:
            raise InputError(f"{what} must be non-empty, got shape {list(arr.shape)}")
        if rank == 2 and arr.shape[1] > self.cfg.max_seq_len:
            raise InputError(f"sequence length {arr.shape[1]} exceeds max_seq_len={self.cfg.max_seq_len}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            bad = lo if lo < 0 else hi
            raise InputError(f"token id {bad} is out of range; ids must be in 0..{self.cfg.vocab_size - 1} (vocab_size)")
        return jnp.asarray(arr, jnp.int32)

    def _check_room(self, tokens: jax.Array, cache: KVCache, start: int | None = None) -> int:
        """Check the batch matches the cache and positions ``start..start+T-1`` fit (``start``: default the
        cache's length); returns T."""
        b, t = tokens.shape
        if not isinstance(cache, KVCache):
            raise InputError(f"cache must come from model.new_cache(...), got {type(cache).__name__}")
        start = cache.length if start is None else start
        expected = KVCache.buffer_shapes(self.cfg, cache.batch_size, cache.mode)
        got = [{k: list(v.shape) for k, v in layer.items()} for layer in cache.layers]
        if len(got) != self.cfg.n_layers or any(shapes != expected for shapes in got):
            raise InputError(f"cache was built for another config: its {len(got)} layers hold buffers of shapes "
                             f"{list(got[0].values()) if got else []}, this model needs {self.cfg.n_layers} layers "
                             f"of {list(expected.values())} ({cache.mode.value} mode); build the cache with this "
                             "model's new_cache()")
        if b != cache.batch_size:
            raise InputError(f"batch of {b} sequences does not match the cache's batch_size={cache.batch_size}")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= cache.length:
            raise InputError(f"start={start!r} is outside 0..{cache.length}: the cache holds {cache.length} tokens, "
                             "and a position past them would leave a gap")
        if start + t > self.cfg.max_seq_len:
            raise InputError(f"cache holds {start} tokens; {t} more exceed max_seq_len={self.cfg.max_seq_len}")
        return t
