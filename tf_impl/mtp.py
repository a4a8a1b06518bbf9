"""Multi-Token Prediction module: ``h^k = block(eh_proj([enorm(emb); hnorm(h^{k-1})]))``.

The embedding comes first in the concatenation, as in the released weights (enorm, hnorm,
eh_proj). The block is a full transformer block built by the model (layer id ``n_layers + k``), and
the embedding and output head are the main model's; ``norm`` is this module's own final norm.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_impl.linear import Linear
from tf_impl.norm import RMSNorm


class MTPModule(tf.Module):
    """One MTP depth. ``emb`` and ``h_prev`` of shape [B, T', D] -> (h [B, T', D], router info or None)."""

    def __init__(self, dim: int, block: tf.Module, eps: float, *, rng: np.random.Generator, fp8: bool, name=None):
        super().__init__(name=name)
        self.enorm = RMSNorm(dim, eps)
        self.hnorm = RMSNorm(dim, eps)
        self.eh_proj = Linear(2 * dim, dim, rng=rng, fp8=fp8)
        self.block = block
        self.norm = RMSNorm(dim, eps)

    def __call__(self, emb: tf.Tensor, h_prev: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor):
        x = self.eh_proj(tf.concat([self.enorm(emb), self.hnorm(h_prev)], -1))  # [B, T', 2D] -> [B, T', D]
        return self.block(x, cos, sin)

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
