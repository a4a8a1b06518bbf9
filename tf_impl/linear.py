"""Linear layer (fp32 or FP8) and the seeded weight initialiser shared by every module.

Weights are stored [O, I] as in the canonical state, and ``y = x @ W.T``. In FP8 mode the product is
``tf_impl.fp8.fp8_matmul`` (both operands quantised on the fly, the fp32 weight is the master copy).
Every module exposes ``params(prefix) -> {canonical name: (variable, index)}``; ``index`` is None for a
tensor stored on its own and ``j`` for slice ``j`` of a stacked variable (the routed experts live in
[E, ...] stacks).

Axis letters (the repository's one alphabet, docs/internals.md): O output features, I input features,
X rows (all leading axes flattened), ``...`` any leading axes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_impl.fp8 import fake_quantize_weight, fp8_matmul


def init_weight(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """Normal init with std ``fan_in**-0.5`` (keeps activations O(1) at any width), float32.

    Args:
        rng: the seeded numpy generator shared by the whole model, so init order fixes the values.
        shape: the weight's shape, e.g. [O, I], or [E, F, D] for stacked experts.
        fan_in: the input width the std is computed from (``in``; D or F for expert stacks).

    Returns:
        a float32 array of shape ``shape``.
    """
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(fan_in**-0.5)).astype(np.float32)


class Linear(tf.Module):
    """``y = x @ W.T`` with ``W`` of shape [O, I]; quantised on the fly when ``fp8`` is set."""

    def __init__(self, in_dim: int, out_dim: int, *, fp8: bool = False, rng: np.random.Generator, name=None):
        super().__init__(name=name)
        self.fp8 = fp8
        self.weight = tf.Variable(init_weight(rng, (out_dim, in_dim), in_dim), name="weight")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.fp8:
            return fp8_matmul(x, self.weight)
        # A 2-D matmul, not ``einsum("...i,oi->...o")``: TF differentiates the ellipsis einsum through a
        # broadcast batch matmul, which made the weight gradient ~80x slower than this on CPU.
        # Static sizes stay static (callers reshape by x.shape); unknown ones are read at run time.
        lead = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape[:-1])]
        y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), self.weight, transpose_b=True)  # [X, I] -> [X, O]
        return tf.reshape(y, [*lead, self.weight.shape[0]])                              # [..., O]

    def effective_weight(self) -> tf.Tensor:
        """The weight [O, I] as the matmul sees it: fp32, or rounded through fp8 blocks in FP8 mode."""
        return fake_quantize_weight(self.weight) if self.fp8 else tf.convert_to_tensor(self.weight)

    def params(self, prefix: str) -> dict:
        """``{prefix + ".weight": (weight, None)}``: the weight is stored [O, I], as in the canonical state."""
        return {f"{prefix}.weight": (self.weight, None)}
