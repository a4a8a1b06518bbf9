"""Multi-head Latent Attention (MLA) with a naive and an absorbed KV cache.

Keys and values come from a small latent ``kv`` [C] per token plus one rotated key ``k_pe`` [R]
shared by all heads. The naive cache expands the latent into per-head keys and values; the absorbed
cache keeps only the latent and the shared key and folds ``wkv_b`` into the query and the output,
which is why MLA's cache is ``C + R`` numbers per token and layer.

Axis letters: B batch, T query length, S key length, D model width, N heads, H head dim
(nope, qk or v, as the einsum says), R rope dim, C kv latent.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness.config import ModelConfig
from reference.fp8 import Linear
from reference.norm import RMSNorm
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
            "k": jnp.zeros((b, s, cfg.n_heads, cfg.qk_head_dim), jnp.float32),  # (B, S, N, nope+rope)
            "v": jnp.zeros((b, s, cfg.n_heads, cfg.v_head_dim), jnp.float32),  # (B, S, N, v)
        }
    return {
        "kv": jnp.zeros((b, s, cfg.kv_lora_rank), jnp.float32),  # (B, S, C)
        "pe": jnp.zeros((b, s, cfg.qk_rope_head_dim), jnp.float32),  # (B, S, R)
    }


def _write(buffer: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """Write ``new`` [B, T, ...] into ``buffer`` [B, S_max, ...] at sequence offset ``start`` (traced)."""
    index = (0, start) + (0,) * (buffer.ndim - 2)
    return jax.lax.dynamic_update_slice(buffer, new.astype(buffer.dtype), index)


class MLA(nnx.Module):
    """MLA as in DeepSeek-V3's ``inference/model.py``: optional q-LoRA, shared rope key, two cache layouts."""

    def __init__(self, dim: int, n_heads: int, q_lora_rank: int, kv_lora_rank: int, qk_nope_head_dim: int,
                 qk_rope_head_dim: int, v_head_dim: int, softmax_scale: float, *, eps: float, fp8: bool,
                 rng: np.random.Generator):
        self.n_heads = n_heads
        self.q_lora_rank = q_lora_rank
        self.kv_lora_rank = kv_lora_rank
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
        self.wkv_b = Linear(kv_lora_rank, n_heads * (qk_nope_head_dim + v_head_dim), fp8=fp8, rng=rng)
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
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))  # (B, T, N*(nope+rope))
        q = q.reshape(b, t, n, self.nope_dim + self.rope_dim)  # (B, T, N, nope+rope)
        q_nope, q_pe = q[..., : self.nope_dim], apply_rope(q[..., self.nope_dim:], cos, sin)  # (B,T,N,nope), (B,T,N,R)
        kv_pe = self.wkv_a(x)  # (B, T, C+R)
        kv = self.kv_norm(kv_pe[..., : self.kv_lora_rank])  # (B, T, C)
        k_pe = apply_rope(kv_pe[..., self.kv_lora_rank:], cos, sin)  # (B, T, R): one key for all heads

        if cache is None or mode is CacheMode.NAIVE:
            kv_b = self.wkv_b(kv).reshape(b, t, n, self.nope_dim + self.v_dim)  # (B, T, N, nope+v)
            k_nope, v = kv_b[..., : self.nope_dim], kv_b[..., self.nope_dim:]  # (B,T,N,nope), (B,T,N,v)
            k = jnp.concatenate([k_nope, jnp.broadcast_to(k_pe[:, :, None, :], (b, t, n, self.rope_dim))], axis=-1)
            if cache is not None:
                s = mask.shape[1]
                cache = {"k": _write(cache["k"], k, start), "v": _write(cache["v"], v, start)}  # (B, S_max, N, H)
                k, v = cache["k"][:, :s], cache["v"][:, :s]  # (B, S, N, nope+rope), (B, S, N, v)
            q_full = jnp.concatenate([q_nope, q_pe], axis=-1)  # (B, T, N, nope+rope)
            scores = jnp.einsum("BTNH,BSNH->BNTS", q_full, k) * self.softmax_scale
            probs = self._softmax(scores, mask)  # (B, N, T, S)
            out = jnp.einsum("BNTS,BSNH->BTNH", probs, v)  # (B, T, N, v)
        else:
            s = mask.shape[1]
            cache = {"kv": _write(cache["kv"], kv, start), "pe": _write(cache["pe"], k_pe, start)}  # (B, S_max, C|R)
            kv_all, pe_all = cache["kv"][:, :s], cache["pe"][:, :s]  # (B, S, C), (B, S, R)
            wkv_b = self.wkv_b.effective_weight().reshape(n, self.nope_dim + self.v_dim, self.kv_lora_rank)  # (N, nope+v, C)
            q_lat = jnp.einsum("BTNH,NHC->BTNC", q_nope, wkv_b[:, : self.nope_dim])  # (B, T, N, C): key up-projection folded into q
            scores = (jnp.einsum("BTNC,BSC->BNTS", q_lat, kv_all)
                      + jnp.einsum("BTNR,BSR->BNTS", q_pe, pe_all)) * self.softmax_scale
            probs = self._softmax(scores, mask)  # (B, N, T, S)
            out_lat = jnp.einsum("BNTS,BSC->BTNC", probs, kv_all)  # (B, T, N, C)
            out = jnp.einsum("BTNC,NHC->BTNH", out_lat, wkv_b[:, self.nope_dim:])  # (B, T, N, v): value up-projection
        return self.wo(out.reshape(b, t, n * self.v_dim)), cache  # (B, T, D)

    @staticmethod
    def _softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
        """Masked softmax over keys in fp32; ``mask`` [T, S] broadcasts over batch and heads."""
        scores = jnp.where(mask[None, None], scores.astype(jnp.float32), -jnp.inf)
        return jax.nn.softmax(scores, axis=-1)
