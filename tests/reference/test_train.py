import math

import jax.numpy as jnp
import numpy as np
import pytest

from reference.losses import balance_loss, bias_update, cross_entropy, main_loss, mtp_loss
from reference.optim import learning_rate
from reference.train import TrainConfig, gradients, init_optimizer, total_loss, train_step


def test_cross_entropy_and_main_loss_by_hand():
    logits = np.array([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]], np.float32)  # (1, 3, 3)
    tokens = np.array([[0, 2, 1]])
    # main loss: position 0 predicts token 2, position 1 predicts token 1
    lse0 = math.log(math.exp(0) + math.exp(1) + math.exp(2))
    expected = ((lse0 - 2.0) + math.log(3.0)) / 2
    assert float(main_loss(jnp.asarray(logits), jnp.asarray(tokens))) == pytest.approx(expected, rel=1e-6)
    assert float(cross_entropy(jnp.asarray(logits), jnp.asarray(tokens))) == pytest.approx(
        ((lse0 - 0.0) + math.log(3.0) + (math.log(math.exp(5) + 2) - 0.0)) / 3, rel=1e-6)


def test_mtp_loss_alignment_and_weight():
    # T=5, V=6. Module 1's logits at position t must predict tokens[t+2]; module 2's, tokens[t+3].
    tokens = np.array([[1, 2, 3, 4, 5]])

    def peaked(targets, length):
        out = np.zeros((1, length, 6), np.float32)
        out[0, np.arange(len(targets)), targets] = 20.0
        return jnp.asarray(out)

    good = [peaked([3, 4, 5], 4), peaked([4, 5], 3)]  # the last position of each has no target
    assert float(mtp_loss(good, jnp.asarray(tokens), 0.3)) < 1e-6
    shifted = [peaked([2, 3, 4], 4), peaked([3, 4], 3)]  # off by one: the main model's targets
    uniform = math.log(6)
    bad = float(mtp_loss(shifted, jnp.asarray(tokens), 0.3))
    assert bad == pytest.approx(0.3 / 2 * (20 + 20), rel=1e-3)  # each wrong peak costs ~20 nats
    flat = [jnp.zeros((1, 4, 6)), jnp.zeros((1, 3, 6))]
    assert float(mtp_loss(flat, jnp.asarray(tokens), 0.3)) == pytest.approx(0.3 / 2 * 2 * uniform, rel=1e-6)
    assert float(mtp_loss([], jnp.asarray(tokens), 0.3)) == 0.0


def test_balance_loss_by_hand():
    # One sequence, T=2, E=4, K=1. Token 0 -> expert 0, token 1 -> expert 0.
    scores = np.array([[[0.5, 0.2, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2]]], np.float32)  # rows sum to 1
    indices = np.array([[[0], [0]]])
    f0 = 4 / (1 * 2) * 2  # = 4, the others 0
    p0 = (0.5 + 0.3) / 2
    got = float(balance_loss([jnp.asarray(scores)], [jnp.asarray(indices)], alpha=0.1))
    assert got == pytest.approx(0.1 * f0 * p0, rel=1e-6)
    # two identical layers count twice; scores are normalised per token first
    got2 = float(balance_loss([jnp.asarray(scores * 3)] * 2, [jnp.asarray(indices)] * 2, alpha=0.1))
    assert got2 == pytest.approx(2 * 0.1 * f0 * p0, rel=1e-6)


def test_bias_update_and_schedule():
    new = np.asarray(bias_update(jnp.zeros(4), jnp.asarray([1.0, 5.0, 3.0, 3.0]), 0.001))
    np.testing.assert_allclose(new, [0.001, -0.001, 0.0, 0.0])
    tc = TrainConfig(lr=1.0, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [learning_rate(s, tc) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(4, tc) == pytest.approx(1.0)
    assert learning_rate(9, tc) == pytest.approx(0.55)
    assert learning_rate(14, tc) == pytest.approx(0.1) and learning_rate(100, tc) == pytest.approx(0.1)


def test_total_loss_is_the_sum_of_the_pure_losses(tiny_cfg, tiny_model, tokens):
    loss, parts = total_loss(tiny_model, tokens)
    logits, aux = tiny_model.forward_aux(tokens)
    assert float(parts["ce"]) == pytest.approx(float(main_loss(logits, jnp.asarray(tokens))), rel=1e-5)
    assert float(parts["mtp"]) == pytest.approx(float(mtp_loss(aux["mtp_logits"], jnp.asarray(tokens), 0.3)), rel=1e-5)
    assert float(parts["balance"]) == 0.0  # tiny config: balance_alpha = 0
    assert float(loss) == pytest.approx(float(parts["ce"] + parts["mtp"]), rel=1e-6)


def test_gradients_cover_trained_tensors_and_match_finite_differences(tiny_cfg, tiny_model, tokens):
    grads = gradients(tiny_model, tokens)
    state = tiny_model.state_dict()
    assert set(grads) == {k for k in state if not k.endswith("gate.bias")}
    assert all(grads[k].shape == state[k].shape for k in grads)
    assert np.abs(grads["layers.1.ffn.experts.0.w1.weight"]).sum() > 0
    # The head is downstream of every routing decision, so a finite difference cannot flip experts.
    from reference import Transformer

    probe = Transformer(tiny_cfg)
    i, j, eps = 5, 3, 1e-2
    losses = []
    for sign in (1, -1):
        moved = dict(state)
        moved["head.weight"] = state["head.weight"].copy()
        moved["head.weight"][i, j] += sign * eps
        probe.load_state_dict(moved)
        losses.append(float(total_loss(probe, tokens)[0]))
    assert (losses[0] - losses[1]) / (2 * eps) == pytest.approx(float(grads["head.weight"][i, j]), rel=2e-2, abs=1e-4)


def test_train_step_decreases_loss_and_balances_bias(tiny_cfg, tokens):
    from reference import Transformer

    model = Transformer(tiny_cfg, seed=4)
    tc = TrainConfig(lr=3e-3, warmup_steps=1)
    _, aux = model.forward_aux(tokens)
    load = np.asarray(aux["expert_load"])  # (2, E): main MoE layer, MTP block
    before_state = model.state_dict()
    opt = init_optimizer(model, tc)
    opt, loss0, _ = train_step(model, opt, tokens, 0, tc)
    after = model.state_dict()
    for layer, name in enumerate(["layers.1.ffn.gate.bias", "mtp.0.ffn.gate.bias"]):
        expected = before_state[name] + tiny_cfg.bias_update_speed * np.sign(load[layer].mean() - load[layer])
        np.testing.assert_allclose(after[name], expected, atol=1e-7)
    assert not np.allclose(after["layers.1.ffn.gate.weight"], before_state["layers.1.ffn.gate.weight"])
    loss1 = float(total_loss(model, tokens)[0])
    assert loss1 < float(loss0)
    opt, loss_again, _ = train_step(model, opt, tokens, 1, tc)
    assert float(loss_again) == pytest.approx(loss1, rel=1e-5)  # train_step reports the pre-update loss
