"""Multi-Token Prediction (MTP) module: one extra transformer block that predicts one token further.

Module k combines the embedding of the token k positions ahead with the previous depth's hidden
state: ``h^k = block(eh_proj([enorm(emb(t_{i+k})); hnorm(h^{k-1}_i)]))``. The embedding comes first in
the concatenation, as in the released weights. The embedding and the output head are the main
model's; ``norm`` is this module's own final norm (the released ``shared_head.norm``).

The block is built by the model (it is an ordinary ``Block`` with layer id ``n_layers + k``) and
handed in, so this module needs no import of the model.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, D model width, T' the
positions module k sees (T - k).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from reference.linear import Linear
from reference.norm import RMSNorm


class MTPModule(nnx.Module):
    """``enorm``, ``hnorm``, ``eh_proj`` [D, 2D], the block, and the final ``norm``."""

    def __init__(self, dim: int, block: nnx.Module, *, eps: float, fp8: bool, rng: np.random.Generator):
        self.enorm = RMSNorm(dim, eps=eps)
        self.hnorm = RMSNorm(dim, eps=eps)
        self.eh_proj = Linear(2 * dim, dim, fp8=fp8, rng=rng)
        self.block = block
        self.norm = RMSNorm(dim, eps=eps)

    def __call__(self, emb: jax.Array, h_prev: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array
                 ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """``emb``, ``h_prev`` [B, T', D] (already aligned by the caller) -> (h^k [B, T', D], routing)."""
        x = self.eh_proj(jnp.concatenate([self.enorm(emb), self.hnorm(h_prev)], axis=-1))  # [B, T', D]
        h, _, routing = self.block(x, cos, sin, mask)
        return h, routing
