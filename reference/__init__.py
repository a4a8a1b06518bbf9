"""DeepSeek-V3 in Flax NNX + jax.numpy: the independent oracle for ``tf_impl``.

Public entry point: ``Transformer(cfg, seed=0)`` (same API as ``tf_impl.Transformer``).
"""

from reference.model import KVCache, Transformer

__all__ = ["KVCache", "Transformer"]
