import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.config import ScoreFunc
from reference.moe import dispatch_tile_rows, expert_load, grouped_swiglu, route

RNG = np.random.default_rng(0)
E, D, F = 8, 16, 12


def _route(x, w, bias, **kw):
    args = dict(n_activated_experts=2, n_expert_groups=1, n_limited_groups=1, score_func=ScoreFunc.SIGMOID, route_scale=2.5)
    args.update(kw)
    return route(jnp.asarray(x), jnp.asarray(w), None if bias is None else jnp.asarray(bias), **args)


def test_sigmoid_weights_sum_to_route_scale_and_are_the_top_scores():
    x, w = RNG.standard_normal((5, D)), RNG.standard_normal((E, D))
    weights, indices, scores = _route(x, w, np.zeros(E))
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 2.5, rtol=1e-6)
    s = 1 / (1 + np.exp(-(x @ w.T)))
    np.testing.assert_allclose(np.asarray(scores), s, rtol=1e-5)
    top = np.argsort(-s, axis=-1)[:, :2]
    np.testing.assert_array_equal(np.sort(np.asarray(indices), -1), np.sort(top, -1))
    picked = np.take_along_axis(s, np.asarray(indices), -1)
    np.testing.assert_allclose(np.asarray(weights), 2.5 * picked / picked.sum(-1, keepdims=True), rtol=1e-5)


def test_bias_changes_selection_not_weights():
    # Hand-set scores: logits give sigmoid scores; expert 7 is the weakest but gets a huge bias.
    x = np.eye(D)[:1]  # one token picking column 0 of w
    w = np.zeros((E, D))
    w[:, 0] = [3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0]
    bias = np.zeros(E)
    bias[7] = 10.0
    weights0, idx0, _ = _route(x, w, np.zeros(E))
    weights1, idx1, scores = _route(x, w, bias)
    assert sorted(np.asarray(idx0)[0]) == [0, 1]
    assert sorted(np.asarray(idx1)[0]) == [0, 7]
    s = np.asarray(scores)[0]
    by_index = dict(zip(np.asarray(idx1)[0], np.asarray(weights1)[0]))
    # weight of expert 7 is its *original* score share, not biased
    np.testing.assert_allclose(by_index[7], 2.5 * s[7] / (s[0] + s[7]), rtol=1e-6)


def test_group_limit_keeps_best_groups_by_top2_sum():
    # 4 groups of 2; sigmoid scores give top-2 sums g0 = 0.975, g1 = 1.000, g2 = 1.762, g3 = 0.538.
    # Group 1 holds the single best expert but a weak partner; group 2 has two good ones and must
    # win under the top-2 sum rule (under the max rule group 1 would win).
    logits = np.array([0.0, -0.1, 5.0, -5.0, 2.0, 2.0, -1.0, -1.0])
    x, w = np.eye(D)[:1], np.zeros((E, D))
    w[:, 0] = logits
    weights, idx, _ = _route(x, w, np.zeros(E), n_expert_groups=4, n_limited_groups=1)
    assert sorted(np.asarray(idx)[0]) == [4, 5]  # group 2 only
    _, idx_max, _ = _route(x, w, None, n_expert_groups=4, n_limited_groups=1)  # no bias: group score = max
    assert 2 in np.asarray(idx_max)[0] and set(np.asarray(idx_max)[0]) <= {2, 3}
    # two groups kept: all picks inside groups 1 and 2
    _, idx2, _ = _route(x, w, np.zeros(E), n_activated_experts=3, n_expert_groups=4, n_limited_groups=2)
    assert set(np.asarray(idx2)[0]) == {2, 4, 5}


def test_dropped_groups_are_masked_with_minus_inf():
    # With one group kept and K equal to the group size, every pick must come from the kept group
    # even when the dropped groups' scores are higher than... nothing else: -inf, never 0 * score.
    x = RNG.standard_normal((64, D))
    w = RNG.standard_normal((E, D))
    _, idx, _ = _route(x, w, RNG.standard_normal(E), n_activated_experts=2, n_expert_groups=4, n_limited_groups=1)
    groups = np.asarray(idx) // 2
    assert np.all(groups[:, 0] == groups[:, 1])


def test_softmax_scores_are_not_renormalised():
    x, w = RNG.standard_normal((4, D)), RNG.standard_normal((E, D))
    weights, idx, scores = _route(x, w, None, score_func=ScoreFunc.SOFTMAX, route_scale=1.0)
    np.testing.assert_allclose(np.asarray(scores).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weights), np.take_along_axis(np.asarray(scores), np.asarray(idx), -1))
    assert np.all(np.asarray(weights).sum(-1) < 1.0)


def _dense_moe(x, weights, indices, w1, w2, w3):
    """Every expert on every token, combined with a dense [X, E] weight matrix."""
    combine = np.zeros((x.shape[0], w1.shape[0]), np.float32)
    np.add.at(combine, (np.arange(x.shape[0])[:, None], indices), weights)
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    outs = np.stack([(silu(x @ w1[e].T) * (x @ w3[e].T)) @ w2[e].T for e in range(w1.shape[0])], 1)  # [X, E, D]
    return np.einsum("XE,XED->XD", combine, outs)


@pytest.mark.parametrize("m,k", [(1, 2), (7, 3), (200, 2)])
def test_sparse_moe_equals_dense(m, k):
    x = RNG.standard_normal((m, D)).astype(np.float32)
    w1, w3 = (RNG.standard_normal((E, F, D)).astype(np.float32) * 0.3 for _ in range(2))
    w2 = RNG.standard_normal((E, D, F)).astype(np.float32) * 0.3
    indices = np.stack([RNG.choice(E, k, replace=False) for _ in range(m)]).astype(np.int32)
    indices[: m // 2, 0] = 3  # a crowded expert
    weights = RNG.random((m, k)).astype(np.float32)
    stored = (np.swapaxes(w, -1, -2) for w in (w1, w2, w3))  # canonical [E, O, I] -> stored [E, I, O]
    out = jax.jit(functools.partial(grouped_swiglu, fp8=False))(x, weights, indices, *stored)
    np.testing.assert_allclose(np.asarray(out), _dense_moe(x, weights, indices, w1, w2, w3), atol=1e-5, rtol=1e-5)


def test_sparse_moe_gradients_equal_dense():
    m, k = 40, 2
    x = jnp.asarray(RNG.standard_normal((m, D)), jnp.float32)
    w1, w3 = (jnp.asarray(RNG.standard_normal((E, D, F)) * 0.3, jnp.float32) for _ in range(2))  # stored [E, D, F]
    w2 = jnp.asarray(RNG.standard_normal((E, F, D)) * 0.3, jnp.float32)  # stored [E, F, D]
    indices = jnp.asarray(np.stack([RNG.choice(E, k, replace=False) for _ in range(m)]), jnp.int32)
    weights = jnp.asarray(RNG.random((m, k)), jnp.float32)

    def sparse(x, weights, w1, w2, w3):
        return jnp.sum(grouped_swiglu(x, weights, indices, w1, w2, w3, fp8=False) ** 2)

    def dense(x, weights, w1, w2, w3):
        combine = jnp.zeros((m, E)).at[jnp.arange(m)[:, None], indices].add(weights)  # [X, E]
        h = jax.nn.silu(jnp.einsum("XD,EDF->XEF", x, w1)) * jnp.einsum("XD,EDF->XEF", x, w3)
        return jnp.sum(jnp.einsum("XE,XEF,EFD->XD", combine, h, w2) ** 2)

    gs = jax.jit(jax.grad(sparse, argnums=range(5)))(x, weights, w1, w2, w3)
    gd = jax.jit(jax.grad(dense, argnums=range(5)))(x, weights, w1, w2, w3)
    for a, b in zip(gs, gd):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-4)


def test_block_size_and_load():
    assert dispatch_tile_rows(4, 32) == 1  # decode: one row per assignment
    assert dispatch_tile_rows(512, 32) == 8
    assert dispatch_tile_rows(10**6, 32) == 32
    np.testing.assert_array_equal(np.asarray(expert_load(jnp.asarray([[0, 2], [2, 3]]), 5)), [1, 0, 2, 1, 0])
