"""Linear layer (fp32 or FP8), the seeded weight initialiser, and ``Slot``, the map from canonical names to storage.

Weights are stored [I, O] (in, out) and ``y = x @ W``; the canonical state (checkpoints, the Flax
twin) names them [O, I], as DeepSeek does. Why not store them canonically: on XLA:CPU a product
``x @ W.T`` with a stored [O, I] weight costs about twice ``x @ W`` with [I, O] whenever x has 2 to 64
rows (decode batches, speculative verification, small MoE tiles): 52 vs 28 µs for a 512x512 weight
and 2 rows, 59 vs 32 µs for 8 rows; at 1 row (a matvec) and at thousands (prefill, training) the
two cost the same. A layer whose weight mostly enters another product (the absorbed MLA folds
``wkv_b`` [O, I] per head into the query) is built with ``kernel_layout=False`` and stays [O, I].
In FP8 mode the product is ``tf_impl.fp8.fp8_matmul`` on the canonical view
(quantising 128x128 blocks commutes with the transpose, so the codes are the canonical ones).
Every module exposes ``params(prefix) -> {canonical name: Slot}``.

Axis letters (the repository's one alphabet, docs/internals.md): O output features, I input features,
X rows (all leading axes flattened), ``...`` any leading axes.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Slot(NamedTuple):
    """Where one canonical tensor lives: all of ``var``, or slice ``index`` of a stacked [E, ...] variable,
    with its last two axes swapped when ``transposed`` (weights stored [I, O] for a canonical [O, I])."""

    var: tf.Variable
    index: int | None = None
    transposed: bool = False

    def canonical(self, value: np.ndarray) -> np.ndarray:
        """The canonical tensor out of ``value``, an array shaped like ``var`` (its value, or a gradient)."""
        part = value if self.index is None else value[self.index]
        return np.swapaxes(part, -1, -2) if self.transposed else part

    def stored(self, value: np.ndarray) -> np.ndarray:
        """Inverse of ``canonical`` for one tensor: its canonical ``value`` in the storage layout."""
        return np.ascontiguousarray(np.swapaxes(value, -1, -2)) if self.transposed else value


class Linear(tf.Module):
    """``y = x @ W`` with ``W`` stored [I, O] (canonical [O, I]); quantised on the fly when ``fp8`` is set.

    ``kernel_layout=False`` stores the canonical [O, I] instead (``y = x @ W.T``), for a weight that is
    mostly read as [O, I] by another product (see the module doc).
    """

    def __init__(self, in_dim: int, out_dim: int, *, fp8: bool = False, rng: np.random.Generator,
                 kernel_layout: bool = True, name=None):
        super().__init__(name=name)
        self.fp8, self.kernel_layout = fp8, kernel_layout
        # Drawn [O, I] as the canonical state is, then stored as laid out: a seed gives the same state.
        w = init_weight(rng, (out_dim, in_dim), in_dim)                    # [O, I]
        self.weight = tf.Variable(w.T.copy() if kernel_layout else w, name="weight")  # [I, O] or [O, I]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.fp8:
            return fp8_matmul(x, tf.transpose(self.weight) if self.kernel_layout else self.weight)  # w [O, I]
        # A 2-D matmul, not ``einsum("...i,oi->...o")``: TF differentiates the ellipsis einsum through a
        # broadcast batch matmul, which made the weight gradient ~80x slower than this on CPU.
        # Static sizes stay static (callers reshape by x.shape); unknown ones are read at run time.
        lead = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape[:-1])]
        y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), self.weight,
                      transpose_b=not self.kernel_layout)                              # [X, I] -> [X, O]
        return tf.reshape(y, [*lead, self.weight.shape[1 if self.kernel_layout else 0]])  # [..., O]

    def effective_weight(self) -> tf.Tensor:
        """The stored weight ([I, O], or [O, I] without ``kernel_layout``) as the matmul sees it: fp32, or
        rounded through fp8 blocks in FP8 mode (the 128x128 blocks are the same in either layout)."""
        return fake_quantize_weight(self.weight) if self.fp8 else tf.convert_to_tensor(self.weight)

    def params(self, prefix: str) -> dict:
        """``{prefix + ".weight": Slot}``, transposed when stored [I, O] (the canonical layout is [O, I])."""
        return {f"{prefix}.weight": Slot(self.weight, None, transposed=self.kernel_layout)}
