"""The one module that needs both frameworks: weight transfer, DLPack exchange, jax2tf, TF gradients.

Everything else in ``harness`` is framework-free, so TensorFlow and JAX are imported lazily inside
the functions here. Weights move between the two models through the canonical state (a flat
``{DeepSeek tensor name: np.ndarray}``, see ``harness.state``): each model converts at its own edge,
so a state exported by one framework loads unchanged into the other.

Tensors move between the frameworks without a copy through DLPack: both TensorFlow and JAX keep CPU
buffers 64-byte aligned, so ``jnp.from_dlpack`` and ``tf.experimental.dlpack.from_dlpack`` wrap the
other framework's buffer (``tests/equivalence/test_interop.py`` checks the addresses). JAX copies
instead of wrapping only when a foreign buffer is not aligned as XLA requires; neither framework hands
out such buffers for whole tensors.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from harness.config import ModelConfig

FRAMEWORKS = ("tf", "flax")

# Names for framework objects in annotations. TF and JAX are imported lazily (see above), so the types
# cannot be named directly; these aliases tell the reader which object a parameter expects.
TwinModel = Any  # a tf_impl.Transformer or a reference.Transformer (same public API)
TFTensor = Any  # an eager tf.Tensor
JaxArray = Any  # a jax.Array on one device


# ------------------------------------------------------------------ models and the canonical state
def build_model(framework: str, cfg: ModelConfig, state: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                **kwargs: Any) -> TwinModel:
    """A ``tf_impl`` (``"tf"``) or ``reference`` (``"flax"``) Transformer, with ``state`` loaded when given.

    Args:
        framework: ``"tf"`` or ``"flax"`` (``FRAMEWORKS``); anything else raises ValueError.
        cfg: the model configuration both twins are built from.
        state: a canonical state (``{DeepSeek tensor name: float32 array}``) to load after construction;
            None keeps the seeded random initialisation.
        seed: seed of the random initialisation (overwritten by ``state`` when given).
        **kwargs: passed to the framework's ``Transformer`` constructor (e.g. ``compiled=False`` for TF).

    Returns:
        the new model of ``framework``.
    """
    if framework == "tf":
        from tf_impl import Transformer
    elif framework == "flax":
        from reference import Transformer
    else:
        raise ValueError(f"framework {framework!r} is unknown; use one of {list(FRAMEWORKS)}")
    model = Transformer(cfg, seed=seed, **kwargs)
    if state is not None:
        model.load_state_dict(dict(state))
    return model


def export_state(model: TwinModel) -> dict[str, np.ndarray]:
    """The canonical state of a model of either framework (float32 numpy, [out, in] layouts)."""
    return {name: np.asarray(value) for name, value in model.state_dict().items()}


def transfer(model: TwinModel, framework: str, **kwargs: Any) -> TwinModel:
    """A twin of ``model`` in ``framework`` holding the same weights (through the canonical state).

    Args:
        model: the source model, of either framework.
        framework: the framework of the twin, ``"tf"`` or ``"flax"``.
        **kwargs: passed to the twin's ``Transformer`` constructor (see ``build_model``).

    Returns:
        a new model of ``framework`` with ``model``'s config and weights.
    """
    return build_model(framework, model.cfg, export_state(model), **kwargs)


# ------------------------------------------------------------------ DLPack, zero copy
def tf_to_jax(tensor: TFTensor) -> JaxArray:
    """A JAX array sharing the buffer of the eager TF tensor ``tensor`` (DLPack, no copy)."""
    import jax.numpy as jnp

    return jnp.from_dlpack(tensor)


def jax_to_tf(array: JaxArray) -> TFTensor:
    """An eager TF tensor sharing the buffer of the JAX array ``array`` (DLPack, no copy)."""
    import tensorflow as tf

    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


def _dlpack_data_pointer(capsule) -> int:
    """The ``data`` field of the DLManagedTensor in a ``"dltensor"`` capsule (its first member)."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return ctypes.cast(get(capsule, b"dltensor"), ctypes.POINTER(ctypes.c_void_p))[0]


def tf_buffer_address(tensor: TFTensor) -> int:
    """Address of the eager TF tensor's buffer, read from its DLPack capsule (``.numpy()`` may copy)."""
    import tensorflow as tf

    return _dlpack_data_pointer(tf.experimental.dlpack.to_dlpack(tensor))


def jax_buffer_address(array: JaxArray) -> int:
    """Address of a single-device JAX array's buffer."""
    return array.unsafe_buffer_pointer()


# ------------------------------------------------------------------ TF gradients by canonical name
def tf_named_variables(model: TwinModel) -> dict[str, Any]:
    """``{canonical name: tf_impl.linear.Slot}`` of a ``tf_impl.Transformer``: the variable, the index j
    of a stacked expert variable's slice (None for a tensor stored on its own), and whether it is
    stored transposed ([I, O] for a canonical [O, I]; ``tf_impl/linear.py``)."""
    return model.named_variables()


def tf_loss_and_gradients(model: TwinModel, tokens: ArrayLike, with_gradients: bool = True
                          ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``({"loss", "ce", "mtp", "balance"}, {canonical name: d loss / d tensor})`` for the TF model.

    The mirror of ``reference.train.gradients``: the loss of ``tf_impl.losses.compute_loss`` on
    ``forward_aux``, differentiated with tf.GradientTape (eagerly, or through the model's XLA
    ``forward_aux`` when the model is compiled), split back into canonical names. Gate biases are not
    trained and have no gradient; ``with_gradients=False`` returns only the loss parts.

    Args:
        model: a ``tf_impl.Transformer``.
        tokens: int token ids of shape [B, T] (cast to int32).
        with_gradients: False skips the backward pass and returns an empty gradient dict.

    Returns:
        (loss parts as floats, ``{canonical name: float32 gradient in the canonical [out, in] layout}``); a
        trainable tensor the loss does not reach gets zeros.
    """
    import tensorflow as tf

    from tf_impl.losses import compute_loss

    named = {n: s for n, s in tf_named_variables(model).items() if s.var.trainable}
    variables = list({id(s.var): s.var for s in named.values()}.values())
    tokens = tf.constant(np.asarray(tokens, np.int32))
    with tf.GradientTape() as tape:
        logits, aux = model.forward_aux(tokens)
        loss, parts = compute_loss(logits, aux, tokens, model.cfg)
    values = {"loss": float(loss), **{k: float(v) for k, v in parts.items()}}
    if not with_gradients:
        return values, {}
    grads = tape.gradient(loss, variables)
    by_var = {id(v): np.zeros(v.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()
              for v, g in zip(variables, grads)}
    return values, {n: s.canonical(by_var[id(s.var)]) for n, s in named.items()}


# ------------------------------------------------------------------ jax2tf: the Flax forward inside TF
@contextlib.contextmanager
def _stablehlo_readable_by_tf():
    """Serialize jax2tf modules for a StableHLO consumer up to 12 weeks old while inside the block.

    jax 0.10 targets the StableHLO of 4 weeks ago (1.15: ``top_k`` becomes a ``vhlo.composite_v2``),
    which TF 2.21's XlaCallModule (StableHLO 1.13.7) cannot deserialize ("failed to deserialize portable
    artifact"). jax has no public switch for the target, so the requirement is swapped for WEEK_12 in
    jax's export module only, for the duration of the conversion (serialization happens when the
    converted function is traced).
    """
    from jax._src.export import _export

    real = _export.hlo

    class _Week12:
        StablehloCompatibilityRequirement = real.StablehloCompatibilityRequirement

        @staticmethod
        def get_version_from_compatibility_requirement(_requirement):
            return real.get_version_from_compatibility_requirement(real.StablehloCompatibilityRequirement.WEEK_12)

    _export.hlo = _Week12
    try:
        yield
    finally:
        _export.hlo = real


def flax_forward_as_tf(model: TwinModel) -> Callable[[TFTensor], TFTensor]:
    """The Flax reference's forward ``tokens int32 [B, T] -> logits [B, T, V]`` as a TF-callable function.

    Built with ``jax.experimental.jax2tf.convert`` (native serialization: an XlaCallModule op), so it
    can run inside a ``tf.function`` next to TF ops. The weights are captured as constants of the
    converted function; the function is forward-only (no gradient).

    Args:
        model: a ``reference.Transformer``; its weights at call time are captured.

    Returns:
        a function from an int32 [B, T] TF tensor to float32 logits [B, T, V]; trace it under
        ``_stablehlo_readable_by_tf()`` (as ``tf_and_flax_logits_in_one_tf_function`` does).
    """
    import tensorflow as tf
    from flax import nnx
    from jax.experimental import jax2tf

    graphdef, params, biases = model.graphdef, model.params, model.biases

    def forward(tokens):
        return nnx.merge(graphdef, params, biases)(tokens)

    converted = jax2tf.convert(forward, with_gradient=False)
    return tf.autograph.experimental.do_not_convert(converted)  # trace it under _stablehlo_readable_by_tf()


def tf_and_flax_logits_in_one_tf_function(tf_model: TwinModel, flax_model: TwinModel, tokens: ArrayLike
                                          ) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the TF model and of the jax2tf-wrapped Flax model, computed by ONE tf.function.

    Args:
        tf_model: a ``tf_impl.Transformer``.
        flax_model: a ``reference.Transformer`` (usually holding the same weights).
        tokens: int token ids of shape [B, T] (cast to int32).

    Returns:
        (TF logits, Flax logits), each float32 of shape [B, T, V].
    """
    import tensorflow as tf

    flax_fn = flax_forward_as_tf(flax_model)

    @tf.function
    def both(tokens):
        return tf_model.forward_aux(tokens)[0], flax_fn(tokens)  # forward_aux inlines into a tf.function

    with _stablehlo_readable_by_tf():
        a, b = both(tf.constant(np.asarray(tokens, np.int32)))
    return a.numpy(), b.numpy()
