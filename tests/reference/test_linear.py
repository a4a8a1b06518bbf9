"""The stored layout of linear weights: [I, O] in the module, [O, I] in the canonical state (issue 13).

XLA:CPU multiplies ``x @ W`` with W stored [I, O] about 2x faster than ``x @ W.T`` with W stored
[O, I] at 2..64 rows (decode, speculative verification). These tests fail if the Flax reference
goes back to the slow layout, or if the layout change leaks into the canonical state or its seeding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from harness.config import Dtype, ModelConfig
from harness.state import expected_shapes
from reference import Transformer
from reference.fp8 import fp8_matmul
from reference.linear import Kernel, Linear, linear
from reference.model import DeepSeekV3, _canonical_names

RNG = np.random.default_rng(0)


def test_linear_stores_in_out_and_computes_x_at_w():
    layer = Linear(12, 20, rng=np.random.default_rng(0))
    w = np.asarray(layer.weight[...])
    assert isinstance(layer.weight, Kernel) and w.shape == (12, 20)  # [I, O]
    x = RNG.standard_normal((3, 5, 12)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), x @ w, rtol=1e-5, atol=1e-5)


def test_fp8_linear_quantises_the_canonical_view_bit_for_bit():
    """FP8 blocks are defined on [O, I]: the stored [I, O] weight must give exactly fp8_matmul(x, W_canonical)."""
    x = jnp.asarray(RNG.standard_normal((4, 256)), jnp.float32)
    canonical = jnp.asarray(RNG.standard_normal((384, 256)) * 0.05, jnp.float32)  # [O, I], 3x2 blocks
    got = jax.jit(linear, static_argnums=2)(x, canonical.T, True)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.jit(fp8_matmul)(x, canonical)))


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FP8])
def test_every_linear_weight_is_a_kernel_stored_transposed(dtype):
    cfg = ModelConfig.tiny().replace(dtype=dtype)
    model = Transformer(cfg, seed=0)
    shapes = expected_shapes(cfg)
    linear_names = {n for n, s in shapes.items() if len(s) == 2 and n != "embed.weight"
                    and not n.endswith((".gate.weight", ".wkv_b.weight"))}
    # gate [E, D], embedding [V, D] and MLA's wkv_b (read per head as [N, H+H, C]) keep the canonical layout
    kernels = set()
    for path, var in nnx.to_flat_state(model.params):
        names = _canonical_names(path, cfg.n_routed_experts)
        stored = tuple(var[...].shape)
        canonical = tuple(shapes[names[0]])
        if isinstance(var, Kernel):
            kernels.update(names)
            assert stored[-2:] == canonical[::-1], (names[0], stored, canonical)
        else:
            assert stored == canonical, (names[0], stored, canonical)
    assert kernels == linear_names


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FP8])
def test_state_dict_round_trips_bit_exactly_through_the_stored_layout(dtype):
    cfg = ModelConfig.tiny().replace(dtype=dtype)
    tokens = RNG.integers(0, cfg.vocab_size, (2, 8)).astype(np.int32)
    source, target = Transformer(cfg, seed=0), Transformer(cfg, seed=1)
    state = source.state_dict()
    state = {k: v + np.float32(0.25) if k.endswith("experts.1.w2.weight") else v for k, v in state.items()}
    source.load_state_dict(state)  # an asymmetric edit: a swapped axis would show up as a moved value
    target.load_state_dict(state)
    back = target.state_dict()
    assert list(back) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    np.testing.assert_array_equal(np.asarray(target(tokens)), np.asarray(source(tokens)))


class _RecordingRng:
    """The numpy generator the model draws from, keeping a copy of every draw (shape and values)."""

    def __init__(self, seed: int):
        self.rng, self.draws = np.random.default_rng(seed), []

    def standard_normal(self, shape, dtype):
        values = self.rng.standard_normal(shape, dtype=dtype)
        self.draws.append(values.copy())
        return values


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FP8])
def test_a_seed_draws_every_weight_in_its_canonical_shape(dtype):
    """Each seeded draw, scaled by its fan-in, is exactly one canonical tensor (an expert stack [E, O, I]):
    the stored layout never changes which values a seed gives the canonical state."""
    cfg = ModelConfig.tiny().replace(dtype=dtype)
    rng = _RecordingRng(0)
    DeepSeekV3(cfg, rng=rng)
    state = Transformer(cfg, seed=0).state_dict()
    stacks = {}
    for name, value in state.items():
        if ".experts." in name:
            prefix, rest = name.split(".experts.")
            stacks.setdefault(f"{prefix}.experts.{rest.split('.', 1)[1]}", []).append(value)
        else:
            stacks[name] = [value[None]]
    by_bytes = {np.concatenate(v).tobytes(): n for n, v in stacks.items()}
    matched = []
    for draw in rng.draws:
        # fan-in I, the canonical last axis (the embedding's draw is unscaled, fan-in 1)
        found = [by_bytes.get((draw * np.float32(fan_in**-0.5)).tobytes()) for fan_in in (draw.shape[-1], 1)]
        assert any(found), f"a draw of shape {draw.shape} is no canonical tensor"
        matched.append(next(n for n in found if n))
    trained = {n for n in stacks if not n.endswith((".bias", "norm.weight"))}
    assert sorted(matched) == sorted(trained)
