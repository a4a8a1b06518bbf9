"""DeepSeek-V3 in Flax NNX + jax.numpy: the independent oracle for ``tf_impl``.

Public entry point: ``Transformer(cfg, seed=0)`` (same API as ``tf_impl.Transformer``).
"""

from reference.attention import KVCache, cache_bytes_per_token
from reference.model import InputError, Transformer

__all__ = ["Transformer", "KVCache", "InputError", "cache_bytes_per_token"]
