"""tf_impl.alignment: SFT masking, GRPO's advantages, clipping and KL, distillation, and the trainer."""

import numpy as np
import pytest
import tensorflow as tf

from harness.config import ModelConfig, TrainConfig
from tf_impl import Transformer
from tf_impl import alignment as A


def _logits(seed, b=2, t=5, v=7):
    return tf.constant(np.random.default_rng(seed).standard_normal((b, t, v)).astype(np.float32))


def test_sft_loss_counts_only_response_targets():
    tokens = tf.constant([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2]])
    mask = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], np.float32)            # the response tokens
    logits = _logits(0)
    logp = tf.nn.log_softmax(logits).numpy()
    targets = [(0, 1, 3), (0, 2, 4), (1, 0, 5), (1, 1, 4), (1, 2, 3), (1, 3, 2)]  # (row, position, target)
    expected = -np.mean([logp[b, t, k] for b, t, k in targets])
    assert float(A.sft_loss(logits, tokens, mask)) == pytest.approx(expected, rel=1e-6)
    # logits at positions whose target is prompt or padding change nothing
    rng = np.random.default_rng(1)
    noise = np.zeros((2, 5, 7), np.float32)
    for b, t in ((0, 0), (0, 3), (0, 4), (1, 4)):
        noise[b, t] = 5.0 * rng.standard_normal(7)
    assert float(A.sft_loss(logits + noise, tokens, mask)) == pytest.approx(expected, rel=1e-6)
    noise[0, 1] = 5.0 * rng.standard_normal(7)                                    # a response target's position
    assert float(A.sft_loss(logits + noise, tokens, mask)) != pytest.approx(expected, rel=1e-3)


def test_group_advantages_are_normalised_within_each_group():
    rewards = np.array([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1], np.float32)          # 3 groups of 4
    adv = A.group_advantages(rewards, 4).numpy().reshape(3, 4)
    r = rewards.reshape(3, 4)
    np.testing.assert_allclose(adv, (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + A.ADV_EPS), rtol=1e-6)
    np.testing.assert_allclose(adv.mean(1), 0.0, atol=1e-6)
    assert adv[1].tolist() == [0.0] * 4                                           # equal rewards: no signal, no NaN
    np.testing.assert_allclose(adv[0], [1, -1, -1, 1], rtol=1e-3)                 # unit std
    with pytest.raises(ValueError, match="groups of 5"):
        A.group_advantages(rewards, 5)


def _grpo(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.0):
    f = lambda x: tf.constant(np.asarray(x, np.float32))  # noqa: E731
    return A.grpo_loss(f(logp), f(old), f(ref), f(adv), f(mask), clip_eps, beta)


def test_grpo_loss_on_policy_is_the_mean_advantage_and_its_gradient_is_the_policy_gradient():
    logp = np.log(np.array([[0.5, 0.25, 0.9], [0.2, 0.4, 0.6]], np.float32))
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    adv = np.array([1.5, -0.5], np.float32)
    loss, stats = _grpo(logp, logp, logp, adv, mask)
    assert float(loss) == pytest.approx(-adv.mean(), rel=1e-6) and float(stats["ratio"]) == pytest.approx(1.0)
    x = tf.Variable(logp)
    with tf.GradientTape() as tape:
        loss, _ = A.grpo_loss(x, tf.constant(logp), tf.constant(logp), tf.constant(adv), tf.constant(mask), 0.2, 0.0)
    grad = tape.gradient(loss, x).numpy()
    # d/dlogp of -(1/B) sum_i (1/|o_i|) sum_t A_i rho_it at rho = 1: -A_i / (B |o_i|) on masked tokens
    expected = -adv[:, None] / (2 * mask.sum(1, keepdims=True)) * mask
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_grpo_clips_the_ratio_against_the_advantage_sign():
    old = np.zeros((4, 1), np.float32)
    logp = np.log(np.array([[1.5], [1.5], [0.5], [0.5]], np.float32))            # ratios 1.5, 1.5, 0.5, 0.5
    adv = np.array([1.0, -1.0, 1.0, -1.0], np.float32)
    mask = np.ones((4, 1), np.float32)
    x = tf.Variable(logp)
    with tf.GradientTape() as tape:
        loss, stats = A.grpo_loss(x, tf.constant(old), tf.constant(old), tf.constant(adv), tf.constant(mask), 0.2, 0.0)
    # per completion: min(rho A, clip(rho) A) = 1.2, -1.5, 0.5, -0.8
    assert float(loss) == pytest.approx(-np.mean([1.2, -1.5, 0.5, -0.8]), rel=1e-6)
    grad = tape.gradient(loss, x).numpy()[:, 0]
    assert grad[0] == 0.0 and grad[3] == 0.0                                       # clipped: no gradient
    np.testing.assert_allclose(grad[[1, 2]], [1.5 / 4, -0.5 / 4], rtol=1e-6)      # -(A rho) / B
    assert float(stats["clip_fraction"]) == pytest.approx(0.5)


def test_kl_k3_is_zero_at_the_reference_positive_elsewhere_and_pulls_towards_it():
    ref = np.log(np.array([[0.5, 0.2]], np.float32))
    assert np.allclose(A.kl_k3(tf.constant(ref), tf.constant(ref)).numpy(), 0.0)
    logp = np.log(np.array([[0.7, 0.1]], np.float32))
    kl = A.kl_k3(tf.constant(logp), tf.constant(ref)).numpy()
    r = np.exp(ref - logp)
    np.testing.assert_allclose(kl, r - np.log(r) - 1, rtol=1e-5)
    assert (kl > 0).all()
    x = tf.Variable(logp)
    with tf.GradientTape() as tape:
        loss, stats = A.grpo_loss(x, x, tf.constant(ref), tf.zeros([1]), tf.ones([1, 2]), 0.2, 0.1)
    grad = tape.gradient(loss, x).numpy()
    assert np.sign(grad).tolist() == [[1.0, -1.0]]                    # descent lowers logp above ref, raises below
    assert float(stats["kl"]) == pytest.approx(kl.mean(), rel=1e-5)


def test_distill_loss_is_sft_at_alpha_zero_and_zero_kl_against_itself():
    tokens = tf.constant([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2]])
    mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0]], np.float32)
    student, teacher = _logits(1), _logits(2)
    sft = float(A.sft_loss(student, tokens, mask))
    assert float(A.distill_loss(student, teacher, tokens, mask, 0.0)) == pytest.approx(sft, rel=1e-6)
    assert float(A.distill_loss(student, student, tokens, mask, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(A.distill_loss(student, teacher, tokens, mask, 1.0)) > 0.01


def _tiny():
    return ModelConfig.tiny(n_mtp_modules=0, max_seq_len=24)


def test_trainer_has_no_value_function_and_counts_one_if_present():
    model = Transformer(_tiny(), seed=0)
    trainer = A.PolicyTrainer(model, TrainConfig(lr=1e-3, warmup_steps=1, total_steps=10), update_bias=False)
    assert trainer.value_function_parameters() == 0
    trained = {id(v) for v in trainer.opt.params}
    assert trained == {id(s.var) for s in model.named_variables().values() if s.var.trainable}

    class WithCritic(A.PolicyTrainer):                      # what an actor-critic (PPO) trainer would hold
        def __init__(self, model, tc):
            super().__init__(model, tc)
            self.value_head = tf.Variable(tf.zeros([model.cfg.dim, 1]))

    assert WithCritic(model, TrainConfig()).value_function_parameters() == model.cfg.dim


def test_grpo_step_moves_the_policy_and_first_inner_step_has_ratio_one():
    model = Transformer(_tiny(), seed=0)
    trainer = A.PolicyTrainer(model, TrainConfig(lr=1e-3, warmup_steps=1, total_steps=10), update_bias=False)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 256, (4, 12)).astype(np.int32)
    mask = np.zeros((4, 11), np.float32)
    mask[:, 5:] = 1.0
    old = trainer.log_probs(tokens)
    before = model.state_dict()
    rec = trainer.grpo_step(tokens, mask, old, old, np.array([1.0, -1.0, 1.0, -1.0]), 0.2, 0.04)
    assert rec["ratio"] == pytest.approx(1.0, abs=1e-5) and rec["kl"] == pytest.approx(0.0, abs=1e-6)
    after = model.state_dict()
    assert any(not np.array_equal(before[n], after[n]) for n in before if not n.endswith("gate.bias"))
    assert all(np.array_equal(before[n], after[n]) for n in before if n.endswith("gate.bias"))  # no bias update
    rec2 = trainer.grpo_step(tokens, mask, old, old, np.array([1.0, -1.0, 1.0, -1.0]), 0.2, 0.04)
    assert rec2["ratio"] != pytest.approx(1.0, abs=1e-6)                        # the policy moved off pi_old
