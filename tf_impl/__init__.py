"""DeepSeek-V3 in TensorFlow. ``from tf_impl import Transformer``; see ../shared/ARCHITECTURE.md."""

from tf_impl.attention import KVCache, cache_bytes_per_token
from tf_impl.model import InputError, Transformer

__all__ = ["Transformer", "KVCache", "InputError", "cache_bytes_per_token"]
