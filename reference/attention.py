"""Multi-head Latent Attention (MLA) with a naive and an absorbed KV cache.

Keys and values come from a small latent ``kv`` [C] per token plus one rotated key ``k_pe`` [R]
shared by all heads. The naive cache expands the latent into per-head keys and values; the absorbed
cache keeps only the latent and the shared key and folds ``wkv_b`` into the query and the output,
which is why MLA's cache is ``C + R`` numbers per token and layer.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, S key
length, D model width, N heads, H head dim (nope, qk or v, as the einsum says), R rope dim, C kv
latent, Q q latent.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness.config import ModelConfig
from reference.linear import Linear
from reference.norm import RMSNorm, widen
from reference.rope import apply_rope


class CacheMode(str, enum.Enum):
    """What the KV cache stores per token: per-head k and v (NAIVE) or the latent and the rope key (ABSORB)."""

    NAIVE = "naive"
    ABSORB = "absorb"


def cache_bytes_per_token(cfg: ModelConfig, mode: CacheMode | str) -> int:
    """Bytes one token occupies in the cache over all main layers, at fp32 (4-byte) elements.

    This is the number that makes the case for the absorbed cache: NAIVE stores N * (qk + v) values
    per token and layer, ABSORB only C + R, independent of the head count.

    Args:
        cfg: the model config (layers, heads, head dims, kv latent and rope dims).
        mode: which cache layout to size; a CacheMode or its string value.

    Returns:
        bytes per cached token, summed over ``cfg.n_layers`` layers.
    """
    mode = CacheMode(mode)
    if mode is CacheMode.NAIVE:
        return cfg.n_layers * cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * 4
    return cfg.n_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * 4


def empty_layer_cache(cfg: ModelConfig, batch_size: int, mode: CacheMode) -> dict[str, jax.Array]:
    """Zeroed cache buffers of one layer, sized for ``max_seq_len`` so decode shapes never change.

    Fixed-size buffers written at a traced offset keep one compiled decode step for every position.

    Args:
        cfg: the model config; ``max_seq_len`` sets S.
        batch_size: B, the number of sequences decoded together.
        mode: NAIVE or ABSORB (see CacheMode).

    Returns:
        NAIVE: ``k`` of shape [B, S, N, qk_head_dim] and ``v`` of shape [B, S, N, v_head_dim];
        ABSORB: ``kv`` of shape [B, S, C] and ``pe`` of shape [B, S, R]; all fp32 zeros.
    """
    b, s = batch_size, cfg.max_seq_len
    if mode is CacheMode.NAIVE:
        return {
            "k": jnp.zeros((b, s, cfg.n_heads, cfg.qk_head_dim), jnp.float32),  # [B, S, N, H+R]
            "v": jnp.zeros((b, s, cfg.n_heads, cfg.v_head_dim), jnp.float32),  # [B, S, N, H]
        }
    return {
        "kv": jnp.zeros((b, s, cfg.kv_lora_rank), jnp.float32),  # [B, S, C]
        "pe": jnp.zeros((b, s, cfg.qk_rope_head_dim), jnp.float32),  # [B, S, R]
    }


@dataclasses.dataclass
class KVCache:
    """Per-layer cache buffers of fixed shape [B, max_seq_len, ...] and the number of positions written.

    Functional, as JAX arrays are: ``prefill``/``decode_step``/``reset``/``truncate`` return a new
    cache, and the one passed in stays valid at its own length. ``length`` is a Python int passed to the jitted step as a traced
    scalar; the step reads the first ``read_length(length + 1, max_seq_len)`` slots (a static bucket), so decoding
    compiles once per bucket, not once per position.
    """

    mode: CacheMode
    layers: list[dict[str, jax.Array]]
    length: int = 0

    @property
    def batch_size(self) -> int:
        """B, read from the first buffer of layer 0 (every buffer has the same leading axis)."""
        return next(iter(self.layers[0].values())).shape[0]

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def buffer_shapes(cfg: ModelConfig, batch_size: int, mode: CacheMode) -> dict[str, list[int]]:
        """``{buffer name: shape}`` of one layer's cache, traced once per (config, batch, mode), never allocated.

        Args:
            cfg: the model config (``max_seq_len`` and the cached widths).
            batch_size: B.
            mode: NAIVE (per-head keys and values) or ABSORB (latent [B, S, C] and rope key [B, S, R]).

        Returns:
            the shape of each buffer ``empty_layer_cache`` would allocate, as lists.
        """
        shapes = jax.eval_shape(lambda: empty_layer_cache(cfg, batch_size, mode))
        return {k: list(v.shape) for k, v in shapes.items()}

    def reset(self) -> "KVCache":
        """The cache emptied (length 0, the buffers reused; stale entries are masked, then overwritten)."""
        return self.truncate(0)

    def truncate(self, length: int) -> "KVCache":
        """The cache cut back to its first ``length`` positions (e.g. to drop rejected speculative tokens).

        Args:
            length: the positions to keep, in 0..``self.length``.

        Returns:
            a cache of that length sharing these buffers (later positions are masked until overwritten).
        """
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= self.length:
            raise ValueError(f"truncate({length!r}): the length must be an integer in 0..{self.length} "
                             "(the positions this cache holds)")
        return dataclasses.replace(self, length=int(length))


def read_length(needed: int, max_seq_len: int) -> int:
    """Cache slots a decode step reads when ``needed`` positions are filled: a static bucket for ``jax.jit``.

    The smallest of 16, 24, 32, 48, 64, 96, ... (powers of two and 1.5x powers of two) that holds
    ``needed``, capped at ``max_seq_len``: at most 1.5x the filled slots are read, and a whole decode
    compiles ~2 log2(max_seq_len) programs. Slots past the filled ones are masked (softmax weight 0).

    Args:
        needed: the filled positions the step must see, in 1..``max_seq_len``.
        max_seq_len: the cache's size.

    Returns:
        the number of slots to read, ``needed <= result <= max_seq_len``.
    """
    if not 1 <= needed <= max_seq_len:
        raise ValueError(f"read_length({needed}, {max_seq_len}): needed must be in 1..max_seq_len")
    size = 16
    while size < needed:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3  # 16 -> 24 -> 32 -> 48 -> 64 ...
    return min(size, max_seq_len)


def _write(buffer: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """Write ``new`` [B, T, ...] into ``buffer`` [B, max_seq_len, ...] at sequence offset ``start`` (traced)."""
    index = (0, start) + (0,) * (buffer.ndim - 2)
    return jax.lax.dynamic_update_slice(buffer, new.astype(buffer.dtype), index)


def causal_mask(start: int | jax.Array, t: int, s: int) -> jax.Array:
    """[T, S] True where key position s may be seen by the query at position ``start + t``.

    Args:
        start: the position of the first query (a Python int or a traced scalar).
        t: T, the number of queries.
        s: S, the number of key positions (the T queries' own keys, or a cache's first S slots).

    Returns:
        a bool array of shape [T, S]: ``s <= start + t``.
    """
    return jnp.arange(s)[None, :] <= (start + jnp.arange(t))[:, None]


# Queries attend in blocks of this many rows, each against the keys it can see (``query_blocks``).
QUERY_BLOCK = 64


def query_blocks(t: int, s: int) -> list[tuple[int, int, int]]:
    """``(first, end, keys)`` per block of queries: queries first..end-1 need only the first ``keys`` slots.

    A causal prefill's [T, S] scores are half masked. Query blocks of ``QUERY_BLOCK`` rows, each against
    the keys up to its last query, skip most of the masked half (62.5% of the square is computed at
    T = 256); the skipped slots have softmax weight 0, so the result is unchanged. The T queries sit at
    the last T of the S slots or earlier (S >= start + T), so the block ending at query ``end`` needs at
    most ``S - (T - end)`` slots even when ``start`` is traced. ``tf_impl`` blocks its queries the same
    way, so the TF/Flax prefill ratio compares the same algorithm.
    """
    if t <= QUERY_BLOCK:
        return [(0, t, s)]
    firsts = range(0, t, QUERY_BLOCK)
    ends = [min(first + QUERY_BLOCK, t) for first in firsts]
    return [(first, end, s - (t - end)) for first, end in zip(firsts, ends)]


class MLA(nnx.Module):
    """MLA as in DeepSeek-V3's ``inference/model.py``: optional q-LoRA, shared rope key, two cache layouts."""

    def __init__(self, dim: int, n_heads: int, q_lora_rank: int, kv_lora_rank: int, qk_nope_head_dim: int,
                 qk_rope_head_dim: int, v_head_dim: int, softmax_scale: float, *, eps: float, fp8: bool,
                 rng: np.random.Generator):
        self.n_heads, self.q_lora_rank, self.kv_lora_rank = n_heads, q_lora_rank, kv_lora_rank
        self.nope_dim, self.rope_dim, self.v_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.softmax_scale = softmax_scale
        qk_dim = qk_nope_head_dim + qk_rope_head_dim
        if q_lora_rank == 0:
            self.wq = Linear(dim, n_heads * qk_dim, fp8=fp8, rng=rng)
        else:
            self.wq_a = Linear(dim, q_lora_rank, fp8=fp8, rng=rng)
            self.q_norm = RMSNorm(q_lora_rank, eps=eps)
            self.wq_b = Linear(q_lora_rank, n_heads * qk_dim, fp8=fp8, rng=rng)
        self.wkv_a = Linear(dim, kv_lora_rank + qk_rope_head_dim, fp8=fp8, rng=rng)
        self.kv_norm = RMSNorm(kv_lora_rank, eps=eps)
        # Stored [O, I], as in TF: the absorbed decode path reads it per head as [N, H+H, C], and the
        # [C, N, H+H] view of an [I, O] kernel made that path's attention ~30% slower (issue 13).
        self.wkv_b = Linear(kv_lora_rank, n_heads * (qk_nope_head_dim + v_head_dim), fp8=fp8, rng=rng,
                            kernel_layout=False)
        self.wo = Linear(n_heads * v_head_dim, dim, fp8=fp8, rng=rng)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array,
                 cache: dict[str, jax.Array] | None = None, start: jax.Array | int = 0,
                 mode: CacheMode = CacheMode.NAIVE) -> tuple[jax.Array, dict[str, jax.Array] | None]:
        """Attend from ``x`` [B, T, D] and return ``(out [B, T, D], updated cache or None)``.

        ``cos``/``sin`` [T, R/2] hold the queries' rotation angles; ``mask`` [T, S] is True where a
        query may see a key. Without a cache the keys are the T new tokens (S = T). With a cache the
        new entries are written at ``start`` and the keys are the cache's first S slots; the mask also
        hides the slots not yet written.
        """
        b, t, _ = x.shape
        n = self.n_heads
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))  # [B, T, N*(H+R)]
        q = q.reshape(b, t, n, self.nope_dim + self.rope_dim)  # [B, T, N, H+R]
        q_nope, q_pe = q[..., : self.nope_dim], apply_rope(q[..., self.nope_dim:], cos, sin)  # [B,T,N,H], [B,T,N,R]
        kv_pe = self.wkv_a(x)  # [B, T, C+R]
        kv = self.kv_norm(kv_pe[..., : self.kv_lora_rank])  # [B, T, C]
        k_pe = apply_rope(kv_pe[..., self.kv_lora_rank:], cos, sin)  # [B, T, R]: one key for all heads

        if cache is None or mode is CacheMode.NAIVE:
            kv_b = self.wkv_b(kv).reshape(b, t, n, self.nope_dim + self.v_dim)  # [B, T, N, H+H]
            k_nope, v = kv_b[..., : self.nope_dim], kv_b[..., self.nope_dim:]  # [B, T, N, H] each
            k = jnp.concatenate([k_nope, jnp.broadcast_to(k_pe[:, :, None, :], (b, t, n, self.rope_dim))],
                                axis=-1)  # [B, T, N, H+R]
            if cache is not None:
                s = mask.shape[1]
                cache = {"k": _write(cache["k"], k, start), "v": _write(cache["v"], v, start)}  # [B, max_seq_len, N, .]
                k, v = cache["k"][:, :s], cache["v"][:, :s]  # [B, S, N, H+R], [B, S, N, H]
            q_full = jnp.concatenate([q_nope, q_pe], axis=-1)  # [B, T, N, H+R]

            def core(lo, hi, ks):  # queries lo..hi-1 against keys :ks
                scores = jnp.einsum("BTNH,BSNH->BNTS", q_full[:, lo:hi], k[:, :ks]) * self.softmax_scale  # [B, N, T', S']
                probs = self._softmax(scores, mask[lo:hi, :ks])  # [B, N, T', S']
                return jnp.einsum("BNTS,BSNH->BTNH", probs, v[:, :ks])  # [B, T', N, H]
            out = self._by_query_blocks(core, t, mask.shape[1])  # [B, T, N, H]
        else:
            s = mask.shape[1]
            cache = {"kv": _write(cache["kv"], kv, start),
                     "pe": _write(cache["pe"], k_pe, start)}  # [B, max_seq_len, C], [B, max_seq_len, R]
            kv_all, pe_all = cache["kv"][:, :s], cache["pe"][:, :s]  # [B, S, C], [B, S, R]
            wkv_b = self.wkv_b.effective_weight().reshape(
                n, self.nope_dim + self.v_dim, self.kv_lora_rank)  # stored [N*(H+H), C] -> [N, H+H, C]
            q_lat = jnp.einsum("BTNH,NHC->BTNC", q_nope, wkv_b[:, : self.nope_dim])  # [B, T, N, C]: key up-projection folded into q

            def core(lo, hi, ks):  # queries lo..hi-1 against keys :ks
                scores = (jnp.einsum("BTNC,BSC->BNTS", q_lat[:, lo:hi], kv_all[:, :ks])
                          + jnp.einsum("BTNR,BSR->BNTS", q_pe[:, lo:hi], pe_all[:, :ks])) * self.softmax_scale  # [B, N, T', S']
                probs = self._softmax(scores, mask[lo:hi, :ks])  # [B, N, T', S']
                return jnp.einsum("BNTS,BSC->BTNC", probs, kv_all[:, :ks])  # [B, T', N, C]
            out_lat = self._by_query_blocks(core, t, s)  # [B, T, N, C]
            out = jnp.einsum("BTNC,NHC->BTNH", out_lat, wkv_b[:, self.nope_dim:])  # [B, T, N, H]: value up-projection
        return self.wo(out.reshape(b, t, n * self.v_dim)), cache  # [B, T, N*H] -> [B, T, D]

    @staticmethod
    def _by_query_blocks(core, t: int, s: int) -> jax.Array:
        """``core(first, end, keys)`` [B, end - first, ...] over ``query_blocks``, joined along T: [B, T, ...]."""
        parts = [core(first, end, keys) for first, end, keys in query_blocks(t, s)]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)

    @staticmethod
    def _softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
        """Masked softmax over keys in fp32 (or wider: the float64 oracle); ``mask`` [T, S] broadcasts over
        batch and heads."""
        scores = jnp.where(mask[None, None], widen(scores), -jnp.inf)
        return jax.nn.softmax(scores, axis=-1)
