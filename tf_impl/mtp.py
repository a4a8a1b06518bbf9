"""Multi-Token Prediction module: ``h^k = block(eh_proj([enorm(emb); hnorm(h^{k-1})]))``.

The embedding comes first in the concatenation, as in the released weights (enorm, hnorm,
eh_proj). The block is a full transformer block built by the model (layer id ``n_layers + k``), and
the embedding and output head are the main model's; ``norm`` is this module's own final norm.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, D model width, T' the
positions module k sees (T - k).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_impl.linear import Linear
from tf_impl.norm import RMSNorm


class MTPModule(tf.Module):
    """One MTP depth: ``enorm``, ``hnorm``, ``eh_proj`` [D, 2D], the block, and the final ``norm``."""

    def __init__(self, dim: int, block: tf.Module, *, eps: float, fp8: bool, rng: np.random.Generator, name=None):
        super().__init__(name=name)
        self.enorm = RMSNorm(dim, eps=eps)
        self.hnorm = RMSNorm(dim, eps=eps)
        self.eh_proj = Linear(2 * dim, dim, fp8=fp8, rng=rng)
        self.block = block
        self.norm = RMSNorm(dim, eps=eps)

    def __call__(self, emb: tf.Tensor, h_prev: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor, cache=None, start=0,
                 mode: str = "naive", read_len: int | None = None):
        """``emb``, ``h_prev`` [B, T', D] (already aligned by the caller) -> (h^k [B, T', D], router info or None).

        ``cache``, ``start``, ``mode`` and ``read_len`` are the block's (``Block.__call__``): a one-layer
        cache lets the module run position by position, as speculative decoding drafts with it.
        """
        x = self.eh_proj(tf.concat([self.enorm(emb), self.hnorm(h_prev)], -1))  # [B, T', 2D] -> [B, T', D]
        return self.block(x, cos, sin, cache, start, mode, read_len=read_len)

    def params(self, prefix: str) -> dict:
        """``enorm``, ``hnorm``, ``eh_proj``, the block's tensors and the final ``norm`` under ``prefix``.

        The block's tensors sit directly under ``prefix`` (no ``.block``), matching the canonical
        state (``harness.state.expected_shapes``), where an MTP module is a block plus extra tensors.
        """
        out = {}
        for name in ("enorm", "hnorm", "eh_proj"):
            out.update(getattr(self, name).params(f"{prefix}.{name}"))
        out.update(self.block.params(prefix))
        out.update(self.norm.params(f"{prefix}.norm"))
        return out
