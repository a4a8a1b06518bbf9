"""Multi-head Latent Attention (MLA) with its two cache layouts.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, S key
length, D model width, N heads, H head dim (nope, qk or v, as the einsum says), R rope dim, C kv
latent, Q q latent.

* ``naive``: the cache holds per-head keys k = [k_nope; k_pe] of shape [B, S, N, H+R] and values
  [B, S, N, H]; attention is the textbook one.
* ``absorb``: the cache holds the normalised latent kv [B, S, C] and the rotated shared rope key
  [B, S, R]. ``wkv_b`` viewed as [N, H_nope + H_v, C] is folded into the query (its first H_nope rows
  per head) and into the output (its last H_v rows), so keys and values are never expanded per head.

Both follow DeepSeek-V3's ``inference/model.py``: one rope key shared by all heads, softmax in fp32,
scale ``cfg.softmax_scale`` (YaRN mscale**2 included), causal mask only when more than one token is
processed. Caches are tf.Variables of static shape [B, max_seq_len, ...] written in place (scatter).
A compiled step with a tensor position reads only the cache's first ``read_len`` slots, a bucketed
length (``cache_read_length``: powers of two and 1.5x powers of two), so decoding reads what is
filled (at most 1.5x of it) and XLA compiles a handful of shapes, not one per position.
"""

from __future__ import annotations

import enum

import numpy as np
import tensorflow as tf

from harness.config import ModelConfig
from tf_impl.linear import Linear
from tf_impl.norm import RMSNorm
from tf_impl.rope import apply_rope

_FP32_BYTES = 4


class CacheMode(str, enum.Enum):
    """What the KV cache stores per token: per-head k and v (NAIVE) or the latent and the rope key (ABSORB)."""

    NAIVE = "naive"
    ABSORB = "absorb"


CACHE_MODES = tuple(m.value for m in CacheMode)


def cache_bytes_per_token(cfg: ModelConfig, mode: str) -> int:
    """Bytes one token occupies in the cache over all layers (fp32 elements).

    naive: ``n_layers * N * (qk_head_dim + v_head_dim) * 4``; absorb: ``n_layers * (C + R) * 4``.
    The absorbed layout does not grow with the head count, which is the point of MLA.

    Args:
        cfg: the model config (layers, heads, head dims, kv latent and rope dims).
        mode: "naive" or "absorb"; anything else is a ValueError naming the valid modes.

    Returns:
        bytes per cached token, summed over ``cfg.n_layers`` layers.
    """
    if mode == CacheMode.NAIVE:
        per_layer = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    elif mode == CacheMode.ABSORB:
        per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    else:
        raise ValueError(f"cache mode {mode!r} is unknown; use one of {list(CACHE_MODES)}")
    return cfg.n_layers * per_layer * _FP32_BYTES


_MIN_READ = 16  # smallest bucket: below it a compile costs more than the slots it saves


def cache_read_length(needed: int, max_seq_len: int) -> int:
    """The cache slots a compiled step reads when ``needed`` positions are filled (the new ones included).

    The smallest of 16, 24, 32, 48, 64, 96, ... (powers of two and 1.5x powers of two) that is at least
    ``needed``, capped at ``max_seq_len``: at most 1.5x the filled slots are read, and a decode from 1
    to ``max_seq_len`` compiles ~2 log2(max_seq_len) programs. Masked slots past the filled ones do not
    change the result (their softmax weight is exactly 0), so every bucket gives the same output.

    Args:
        needed: positions that must be visible, in 1..``max_seq_len``.
        max_seq_len: the cache's capacity.

    Returns:
        the read length, in ``needed..max_seq_len``.
    """
    if not 1 <= needed <= max_seq_len:
        raise ValueError(f"cache_read_length({needed}, {max_seq_len}): needed must be in 1..max_seq_len")
    size = _MIN_READ
    while size < needed:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3  # 16 -> 24 -> 32 -> 48 -> 64 ...
    return min(size, max_seq_len)


class KVCache:
    """Per-layer attention caches of static shape [batch_size, max_seq_len, ...], updated in place.

    ``layers[i]`` is ``(k, v)`` in naive mode and ``(kv, pe)`` in absorb mode. ``length`` is the number
    of positions written so far (decoding continues from it) and ``batch`` the batch size in use.
    ``nbytes`` is the size of the tensors actually allocated.

    A cache can be passed as an argument to a ``tf.function`` (it implements TF's custom-nest protocol:
    the buffers are its components, mode and sizes its metadata), so a caller's compiled step is traced
    once for every cache of the same shapes. Inside such a step ``length`` is unknown (0): the caller
    passes the position explicitly (``Transformer.hidden_states(..., start=)``).
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, mode: str = "absorb"):
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode {mode!r} is unknown; use one of {list(CACHE_MODES)}")
        self.mode = CacheMode(mode)
        self.batch_size = batch_size
        self.max_seq_len = cfg.max_seq_len
        self.length = 0
        self.batch: int | None = None
        self.layers = [
            tuple(tf.Variable(tf.zeros(shape, tf.float32), trainable=False)
                  for shape in self.buffer_shapes(cfg, batch_size, mode))
            for _ in range(cfg.n_layers)
        ]

    def reset(self) -> "KVCache":
        """Empty the cache in place (length 0, batch unset; the buffers are reused, stale entries are
        masked and then overwritten) and return it."""
        self.truncate(0)
        self.batch = None
        return self

    def truncate(self, length: int) -> "KVCache":
        """Cut the cache back to its first ``length`` positions in place (e.g. to decode again from there).

        Args:
            length: the positions to keep, in 0..``self.length``.

        Returns:
            this cache; later positions are masked until they are overwritten.
        """
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= self.length:
            raise ValueError(f"truncate({length!r}): the length must be an integer in 0..{self.length} "
                             "(the positions this cache holds)")
        self.length = int(length)
        return self

    def __tf_flatten__(self):
        return (self.mode, self.batch_size, self.max_seq_len, len(self.layers)), tuple(self.variables)

    @classmethod
    def __tf_unflatten__(cls, metadata, components) -> "KVCache":
        cache = cls.__new__(cls)
        cache.mode, cache.batch_size, cache.max_seq_len, n_layers = metadata
        cache.length, cache.batch = 0, None
        cache.layers = [tuple(components[2 * i: 2 * i + 2]) for i in range(n_layers)]
        return cache

    @staticmethod
    def buffer_shapes(cfg: ModelConfig, batch_size: int, mode: str) -> list[list[int]]:
        """The two buffer shapes of one layer: naive [B, S, N, H+R] and [B, S, N, H]; absorb [B, S, C] and [B, S, R]."""
        b, s, n = batch_size, cfg.max_seq_len, cfg.n_heads
        if mode == CacheMode.NAIVE:
            return [[b, s, n, cfg.qk_head_dim], [b, s, n, cfg.v_head_dim]]
        return [[b, s, cfg.kv_lora_rank], [b, s, cfg.qk_rope_head_dim]]

    @property
    def variables(self) -> list[tf.Variable]:
        """Every cache buffer, layer by layer: (k, v) or (kv, pe) per layer."""
        return [v for layer in self.layers for v in layer]

    @property
    def nbytes(self) -> int:
        """Bytes of the allocated cache tensors."""
        return sum(v.shape.num_elements() * v.dtype.size for v in self.variables)

    def __repr__(self) -> str:
        return (f"KVCache(mode={self.mode.value!r}, batch_size={self.batch_size}, max_seq_len={self.max_seq_len}, "
                f"length={self.length}, nbytes={self.nbytes})")


def token_positions(start, t: int) -> tf.Tensor:
    """Positions of T tokens from ``start``: [T] for a scalar start, [B, T] for per-row starts [B]."""
    start = tf.convert_to_tensor(start, tf.int32)
    return start[..., None] + tf.range(t) if start.shape.rank == 1 else start + tf.range(t)


def _write(var: tf.Variable, values: tf.Tensor, start) -> None:
    """Write ``values`` [B, T, ...] into ``var`` [B', S, ...] at rows 0..B-1, positions start..start+T-1.

    ``start`` is a scalar, or a vector [B] of per-row starts (batched speculative decoding).
    """
    b, t = values.shape[0], values.shape[1]
    pos = tf.broadcast_to(token_positions(start, t), [b, t])                # [B, T]
    rows = tf.broadcast_to(tf.range(b)[:, None], [b, t])                    # [B, T]
    var.scatter_nd_update(tf.stack([rows, pos], -1), values)                # indices [B, T, 2]


# A prefill's queries run in blocks of this many rows, each against the keys it can see (``query_blocks``).
_QUERY_BLOCK = 64


def query_blocks(t: int, s: int) -> list[tuple[int, int, int]]:
    """``(first, end, keys)`` per block of queries: queries first..end-1 need only the first ``keys`` of
    the ``s`` key slots.

    Under a causal mask the query at position ``start + i`` sees ``start + i + 1`` keys, so a prefill's
    [T, S] score matrix is half masked. Blocks of ``_QUERY_BLOCK`` queries, each against the keys up to
    its last query, skip most of that half: at T = 256 they compute 62.5% of the square, and a bench
    prefill's attention core took 6.8 instead of 11.1 ms per layer (one process, XLA:CPU). The slots a
    block skips have softmax weight exactly 0, so the result is the same.

    The T queries are the last T of the ``s`` slots or earlier (``s >= start + T``: a prefill reads
    exactly ``start + T``, a compiled step a bucket of at least that), so the block ending at query
    ``end`` needs at most ``s - (T - end)`` slots, whatever ``start`` is. Steps of T <= ``_QUERY_BLOCK``
    (decode, a draft's verification) run as one block.
    """
    if t <= _QUERY_BLOCK:
        return [(0, t, s)]
    blocks = []
    for first in range(0, t, _QUERY_BLOCK):
        end = min(first + _QUERY_BLOCK, t)
        blocks.append((first, end, s - (t - end)))
    return blocks


def causal_mask(start: int | tf.Tensor, t: int, s: int) -> tf.Tensor:
    """[T, S] True where key position s may be seen by the query at position ``start + t``.

    Args:
        start: the position of the first query (a Python int or a scalar tensor), or a vector [B] of
            per-row first positions; then the mask is [B, T, S] (each row's cache is filled to its own
            length, as batched speculative decoding leaves it).
        t: T, the number of queries.
        s: S, the number of key positions (the T queries' own keys, or a cache's first S slots).

    Returns:
        a bool tensor of shape [T, S] (or [B, T, S]): ``s <= start + t``.
    """
    return tf.range(s) <= token_positions(start, t)[..., None]


class MLA(tf.Module):
    """Multi-head Latent Attention as in DeepSeek-V3's ``inference/model.py``. ``x`` [B, T, D] -> [B, T, D]."""

    def __init__(self, dim: int, n_heads: int, q_lora_rank: int, kv_lora_rank: int, qk_nope_head_dim: int,
                 qk_rope_head_dim: int, v_head_dim: int, softmax_scale: float, *, eps: float, fp8: bool,
                 rng: np.random.Generator, name=None):
        super().__init__(name=name)
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
        # [O, I] storage: the absorbed decode path (the common one) reads it per head as [N, H+H, C].
        self.wkv_b = Linear(kv_lora_rank, n_heads * (qk_nope_head_dim + v_head_dim), fp8=fp8, rng=rng,
                            kernel_layout=False)
        self.wo = Linear(n_heads * v_head_dim, dim, fp8=fp8, rng=rng)

    def params(self, prefix: str) -> dict:
        """``{canonical name: Slot}`` under ``prefix``: ``wq`` alone without a q latent
        (``q_lora_rank == 0``), else ``wq_a``, ``q_norm``, ``wq_b``; then ``wkv_a``, ``kv_norm``, ``wkv_b``, ``wo``."""
        names = ["wq"] if self.q_lora_rank == 0 else ["wq_a", "q_norm", "wq_b"]
        out = {}
        for name in names + ["wkv_a", "kv_norm", "wkv_b", "wo"]:
            out.update(getattr(self, name).params(f"{prefix}.{name}"))
        return out

    def _project(self, x, cos, sin):
        """Queries and the latent key/value of ``x`` [B, T, D] at angles cos/sin [T, R/2] (or per row [B, T, R/2])."""
        b, t = x.shape[0], x.shape[1]
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))  # [B, T, N*(H+R)]
        q = tf.reshape(q, [b, t, self.n_heads, self.nope_dim + self.rope_dim])              # [B, T, N, H+R]
        q_nope, q_pe = q[..., : self.nope_dim], q[..., self.nope_dim:]                      # [B,T,N,H], [B,T,N,R]
        q_pe = apply_rope(q_pe, cos[..., None, :], sin[..., None, :])  # over the heads
        kv_pe = self.wkv_a(x)                                                               # [B, T, C+R]
        kv = self.kv_norm(kv_pe[..., : self.kv_lora_rank])                                  # [B, T, C]
        k_pe = apply_rope(kv_pe[..., self.kv_lora_rank:], cos, sin)                         # [B, T, R]: one key for all heads
        return q_nope, q_pe, kv, k_pe

    def _expand_kv(self, kv):
        """Per-head k_nope [B, T, N, H] and v [B, T, N, H] from the latent kv [B, T, C]."""
        b, t = kv.shape[0], kv.shape[1]
        kv_b = tf.reshape(self.wkv_b(kv), [b, t, self.n_heads, self.nope_dim + self.v_dim])  # [B, T, N, H+H]
        return kv_b[..., : self.nope_dim], kv_b[..., self.nope_dim:]

    def _softmax(self, scores, mask):
        """Masked softmax in fp32 of ``scores`` [B, N, T, S] with ``mask`` [T, S] or per row [B, T, S]."""
        if mask.shape.rank == 3:
            mask = mask[:, None]                                                            # [B, 1, T, S]
        scores = tf.where(mask, scores * self.softmax_scale, float("-inf"))
        return tf.nn.softmax(scores, -1)

    @staticmethod
    def _by_query_blocks(core, t: int, s: int) -> tf.Tensor:
        """``core(first, end, keys)`` [B, end - first, ...] over ``query_blocks``, joined along T: [B, T, ...]."""
        parts = [core(first, end, keys) for first, end, keys in query_blocks(t, s)]
        return parts[0] if len(parts) == 1 else tf.concat(parts, 1)

    def _out(self, o):
        """Output projection of per-head values [B, T, N, H] -> [B, T, D]."""
        return self.wo(tf.reshape(o, [o.shape[0], o.shape[1], self.n_heads * self.v_dim]))  # [B, T, N*H]

    def __call__(self, x, cos, sin, cache=None, start=0, mode: CacheMode | str = CacheMode.NAIVE,
                 read_len: int | None = None):
        """Attend ``x`` [B, T, D] at positions start..start+T-1 (cos/sin [T, R/2] for those positions).

        Without a cache the keys are this call's own tokens. With ``cache`` (a layer's pair of cache
        variables) the new keys are written at ``start`` first; a Python int ``start`` reads the
        ``start + T`` valid positions, a tensor ``start`` (a compiled step) reads the first ``read_len``
        slots (a static int >= start + T, e.g. ``cache_read_length``; default all max_seq_len) and
        masks the ones past the current token.
        """
        b, t = x.shape[0], x.shape[1]
        q_nope, q_pe, kv, k_pe = self._project(x, cos, sin)
        if cache is None:
            k_nope, v = self._expand_kv(kv)
            mask = causal_mask(0, t, t)                                                     # [T, T]

            def core(lo, hi, ks):                                                           # queries lo..hi-1, keys :ks
                scores = (tf.einsum("BTNH,BSNH->BNTS", q_nope[:, lo:hi], k_nope[:, :ks])
                          + tf.einsum("BTNR,BSR->BNTS", q_pe[:, lo:hi], k_pe[:, :ks]))      # [B, N, T', S']
                probs = self._softmax(scores, mask[lo:hi, :ks])
                return tf.einsum("BNTS,BSNH->BTNH", probs, v[:, :ks])                       # [B, T', N, H]
            return self._out(self._by_query_blocks(core, t, t))                             # [B, T, D]

        a_var, b_var = cache
        s = start + t if isinstance(start, int) else (read_len or a_var.shape[1])
        mask = causal_mask(start, t, s)                                                     # [T, S]
        if mode == CacheMode.NAIVE:
            k_nope, v = self._expand_kv(kv)
            k_pe_heads = tf.broadcast_to(k_pe[:, :, None, :], [b, t, self.n_heads, self.rope_dim])  # [B, T, N, R]
            _write(a_var, tf.concat([k_nope, k_pe_heads], -1), start)                      # k [B, S, N, H+R]
            _write(b_var, v, start)                                                         # v [B, S, N, H]
            keys, values = a_var[:b, :s], b_var[:b, :s]                                     # [B,S,N,H+R], [B,S,N,H]
            q = tf.concat([q_nope, q_pe], -1)                                               # [B, T, N, H+R]
            if t > 1:
                def core(lo, hi, ks):                                                       # queries lo..hi-1, keys :ks
                    probs = self._softmax(tf.einsum("BTNH,BSNH->BNTS", q[:, lo:hi], keys[:, :ks]),
                                          mask[..., lo:hi, :ks])                            # [B, N, T', S']
                    return tf.einsum("BNTS,BSNH->BTNH", probs, values[:, :ks])              # [B, T', N, H]
                return self._out(self._by_query_blocks(core, t, s))
            # One query: multiply-and-reduce reads the [B, S, N, H] cache in place, where the einsum
            # would first transpose the whole cache to [B, N, S, H].
            scores = tf.reduce_sum(q[:, 0, None] * keys, -1)                               # [B, S, N]
            probs = self._softmax(tf.transpose(scores, [0, 2, 1])[:, :, None], mask)        # [B, N, 1, S]
            o = tf.reduce_sum(tf.transpose(probs[:, :, 0], [0, 2, 1])[..., None] * values, 1)  # [B, N, H]
            return self._out(o[:, None])                                                    # [B, 1, D]

        _write(a_var, kv, start)                                                            # kv [B, S, C]
        _write(b_var, k_pe, start)                                                          # pe [B, S, R]
        kv_all, pe_all = a_var[:b, :s], b_var[:b, :s]                                       # [B, S, C], [B, S, R]
        wkv_b = tf.reshape(self.wkv_b.effective_weight(),
                           [self.n_heads, self.nope_dim + self.v_dim, self.kv_lora_rank])   # [N, H+H, C]
        q_lat = tf.einsum("BTNH,NHC->BTNC", q_nope, wkv_b[:, : self.nope_dim])              # [B, T, N, C]: key up-projection folded into q

        def core(lo, hi, ks):                                                               # queries lo..hi-1, keys :ks
            scores = (tf.einsum("BTNC,BSC->BNTS", q_lat[:, lo:hi], kv_all[:, :ks])
                      + tf.einsum("BTNR,BSR->BNTS", q_pe[:, lo:hi], pe_all[:, :ks]))        # [B, N, T', S']
            probs = self._softmax(scores, mask[..., lo:hi, :ks])
            return tf.einsum("BNTS,BSC->BTNC", probs, kv_all[:, :ks])                       # [B, T', N, C]
        out_lat = self._by_query_blocks(core, t, s)                                         # [B, T, N, C]
        return self._out(tf.einsum("BTNC,NHC->BTNH", out_lat, wkv_b[:, self.nope_dim:]))    # [B, T, D]: value up-projection
