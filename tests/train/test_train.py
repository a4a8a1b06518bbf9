"""Training: losses against hand computation, schedule, clipping, AdamW, bias balancing, resume, divergence."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from harness.config import ModelConfig
from harness.qa.signals import explain_divergence, loss_spike_count, loss_spike_problems
from tf_impl import Transformer
from tf_impl.data import DataConfig, DataError
from tf_impl.losses import bias_update, compute_loss
from tf_impl.optim import AdamW, learning_rate
from tf_impl.train import TrainConfig, Trainer, TrainingDiverged

CFG = ModelConfig.tiny(max_seq_len=32, balance_alpha=0.01, bias_update_speed=0.01)
DATA = DataConfig(batch_size=2, seq_len=32)
TC = TrainConfig(lr=1e-3, warmup_steps=2, total_steps=10)


def tokens(seed=0, shape=(2, 32)):
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, shape).astype(np.int32)


def np_ce(logits, targets):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1).mean()


def test_loss_parts_match_hand_computation():
    model = Transformer(CFG, seed=0, compiled=False)
    toks = tokens()
    logits, aux = model.forward_aux(toks)
    loss, parts = compute_loss(logits, aux, tf.constant(toks), CFG)
    logits = logits.numpy()
    ce = np_ce(logits[:, :-1], toks[:, 1:])
    (mtp_logits,) = [x.numpy() for x in aux["mtp_logits"]]
    mtp = CFG.mtp_lambda / 1 * np_ce(mtp_logits[:, :-1], toks[:, 2:])
    scores, indices = aux["router_scores"].numpy(), aux["router_indices"].numpy()
    e, k = CFG.n_routed_experts, CFG.n_activated_experts
    bal = 0.0
    for layer in range(scores.shape[0]):  # main MoE layer, then the MTP block (T-1 routed positions)
        per_seq = []
        for b in range(toks.shape[0]):
            valid = indices[layer, b, :, 0] >= 0
            s, idx = scores[layer, b, valid], indices[layer, b, valid]
            t = len(s)
            f = e / (k * t) * np.bincount(idx.ravel(), minlength=e)
            p = (s / s.sum(-1, keepdims=True)).mean(0)
            per_seq.append((f * p).sum())
        bal += np.mean(per_seq)
    bal *= CFG.balance_alpha
    assert scores.shape[0] == 2 and (indices[1, :, -1] == -1).all()
    np.testing.assert_allclose(parts["ce"].numpy(), ce, rtol=1e-5)
    np.testing.assert_allclose(parts["mtp"].numpy(), mtp, rtol=1e-5)
    np.testing.assert_allclose(parts["balance"].numpy(), bal, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), ce + mtp + bal, rtol=1e-5)


def test_schedule_warmup_then_cosine():
    tc = TrainConfig(lr=1.0, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    expected = {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 8: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), 12: 0.1, 30: 0.1}
    for step, lr in expected.items():
        assert learning_rate(step, tc) == pytest.approx(lr)
        assert float(learning_rate(tf.constant(step, tf.int64), tc)) == pytest.approx(lr, rel=1e-6)


def test_clipping_scales_to_the_global_norm():
    (g,), norm = tf.clip_by_global_norm([tf.constant([3.0, 4.0])], 1.0)  # what the Trainer's step clips with
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(g.numpy(), [0.6, 0.8], rtol=1e-6)
    (g,), _ = tf.clip_by_global_norm([tf.constant([0.3, 0.4])], 1.0)
    np.testing.assert_allclose(g.numpy(), [0.3, 0.4])


def test_adamw_matches_the_optax_formula():
    tc = TrainConfig(lr=0.1, warmup_steps=0, total_steps=100, weight_decay=0.1)
    p0 = np.array([1.0, -2.0], np.float32)
    var = tf.Variable(p0)
    opt = AdamW([var], tc)
    p, m, v = p0.astype(np.float64), np.zeros(2), np.zeros(2)
    for step, g in enumerate([np.array([0.5, -1.0]), np.array([0.2, 0.3])]):
        opt.apply([tf.constant(g, tf.float32)])
        m, v = 0.9 * m + 0.1 * g, 0.95 * v + 0.05 * g * g
        mh, vh = m / (1 - 0.9 ** (step + 1)), v / (1 - 0.95 ** (step + 1))
        p = p - learning_rate(step, tc) * (mh / (np.sqrt(vh) + 1e-8) + 0.1 * p)
    np.testing.assert_allclose(var.numpy(), p, rtol=1e-6)
    assert int(opt.count.numpy()) == 2


def test_bias_update_rule_direction():
    bias = tf.zeros([4])
    new = bias_update(bias, tf.constant([10.0, 0.0, 5.0, 5.0]), 0.001).numpy()
    np.testing.assert_allclose(new, [-0.001, 0.001, 0.0, 0.0])  # overloaded down, underloaded up
    stacked = bias_update(tf.zeros([2, 2]), tf.constant([[3.0, 1.0], [1.0, 3.0]]), 0.5).numpy()
    np.testing.assert_allclose(stacked, [[-0.5, 0.5], [0.5, -0.5]])


def test_train_step_moves_weights_and_bias_only_by_the_balancing_rule(capsys):
    model = Transformer(CFG, seed=0, compiled=False)
    biases = model.gate_biases()
    assert len(biases) == 2 and not any(b.trainable for b in biases)
    assert not {id(b) for b in biases} & {id(v) for v in model.trainable_variables}
    before = model.state_dict()
    trainer = Trainer(model, CFG, TC, DATA, progress=True)
    record = trainer.fit(1)[0]
    assert set(record) == {"loss", "ce", "mtp", "balance", "grad_norm", "lr"} and record["balance"] > 0
    after = model.state_dict()
    changed = [n for n in before if not np.array_equal(before[n], after[n])]
    assert "embed.weight" in changed and "layers.1.ffn.gate.weight" in changed and "mtp.0.eh_proj.weight" in changed
    load = trainer.last_expert_load
    for i, name in enumerate(["layers.1.ffn.gate.bias", "mtp.0.ffn.gate.bias"]):
        expected = 0.01 * np.sign(load[i].mean() - load[i])
        np.testing.assert_allclose(after[name], expected, atol=1e-9)
    assert "loss" in capsys.readouterr().err  # the progress bar goes to stderr
    frozen = Trainer(Transformer(CFG, seed=0, compiled=False), CFG, TC, DATA, progress=False, update_bias=False)
    frozen.fit(1)
    assert not any(b.numpy().any() for b in frozen.model.gate_biases())


def test_resume_is_bit_exact(tmp_path):
    straight = Trainer(Transformer(CFG, seed=0, compiled=False), CFG, TC, DATA, progress=False,
                       checkpoint_dir=str(tmp_path), checkpoint_every=2, keep=3)
    straight.fit(4)
    assert straight.manager.steps() == [2, 4]
    resumed = Trainer(Transformer(CFG, seed=1, compiled=False), CFG, TC, DATA, progress=False)  # other init: all state comes from disk
    resumed.restore(straight.manager.load(2))
    assert resumed.step == 2
    resumed.fit(2)
    final, expected = resumed.model.state_dict(), straight.model.state_dict()
    assert all(np.array_equal(final[n], expected[n]) for n in expected)
    slots, expected_slots = resumed.opt.slots(), straight.opt.slots()
    assert all(np.array_equal(slots[n], expected_slots[n]) for n in expected_slots)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


def test_nan_stops_training_with_a_diagnosis():
    model = Transformer(CFG, seed=0, compiled=False)
    trainer = Trainer(model, CFG, TC, DATA, progress=False)
    trainer.fit(1)
    model.embed.assign(tf.fill(model.embed.shape, float("nan")))
    head = model.state_dict()["head.weight"]
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(3)
    assert re.search(r"training stopped at step 1: loss=nan.*not applied.*Diagnosis", explain_divergence(info.value))
    assert info.value.step == 1 and [math.isnan(r["loss"]) for r in info.value.records] == [False, True]
    assert trainer.step == 1 and np.array_equal(model.state_dict()["head.weight"], head)


def test_data_that_does_not_fit_the_vocab_is_refused():
    with pytest.raises(DataError, match="vocab_size >= 256"):
        Trainer(Transformer(ModelConfig.tiny(vocab_size=128), seed=0), ModelConfig.tiny(vocab_size=128), TC, DATA)


def test_loss_spike_count():
    losses = [2.0 + 0.01 * (i % 3) for i in range(60)]
    assert loss_spike_count(losses) == 0
    losses[40] = 5.0
    assert loss_spike_count(losses) == 1


def test_checkpoint_health_rule_counts_only_the_spikes_since_the_last_save():
    losses = [2.0 + 0.01 * (i % 3) for i in range(60)]
    losses[40] = 5.0
    assert loss_spike_problems(losses, 30) == ["1 loss spike(s)"]
    assert loss_spike_problems(losses, 41) == []  # the spike happened before the last save


# ---------------------------------------------------------------------------------------- issue 10: faults
def _trainer(tmp_path, tc=TC, cfg=CFG, data=DATA, seed=0, every=1, keep=2):
    return Trainer(Transformer(cfg, seed=seed, compiled=False), cfg, tc, data, progress=False,
                   checkpoint_dir=str(tmp_path), checkpoint_every=every, keep=keep, health=loss_spike_problems)


def _all_finite(checkpoint):
    return all(np.isfinite(v).all() for v in checkpoint.model_state.values())


def test_an_update_that_makes_weights_non_finite_stops_training_and_is_never_saved(tmp_path):
    trainer = _trainer(tmp_path, tc=TrainConfig(lr=1e39, warmup_steps=0, total_steps=10))  # lr overflows float32
    with pytest.raises(TrainingDiverged, match=r"made the weights non-finite.*resume"):
        trainer.fit(3)
    assert trainer.manager.steps() == []  # nothing saved: the only update produced Inf/NaN
    with pytest.raises(TrainingDiverged, match="refusing to save non-finite weights"):
        trainer.save()


def test_save_refuses_non_finite_weights_naming_the_tensor(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(1)
    trainer.model.embed.assign(tf.fill(trainer.model.embed.shape, float("inf")))
    with pytest.raises(TrainingDiverged, match=r"refusing to save non-finite weights.*embed\.weight"):
        trainer.save(overwrite=True)
    assert trainer.manager.steps() == [1] and _all_finite(trainer.manager.load(1))


def test_checkpoints_after_a_divergence_never_push_the_healthy_ones_out(tmp_path):
    _trainer(tmp_path).fit(4)  # healthy checkpoints at steps 3 and 4
    healthy = {s: _trainer(tmp_path).manager.load(s) for s in (3, 4)}
    resumed = _trainer(tmp_path, tc=TrainConfig(lr=1e4, warmup_steps=0, total_steps=10))
    assert resumed.resume() and resumed.step == 4
    with pytest.raises(TrainingDiverged):
        resumed.fit(10)  # weights blow up, then the loss goes NaN
    steps = resumed.manager.steps()
    assert {3, 4} <= set(steps), steps
    for s in (3, 4):
        kept = resumed.manager.load(s)
        assert _all_finite(kept) and all(np.array_equal(kept.model_state[n], healthy[s].model_state[n])
                                         for n in kept.model_state)
    for s in steps:
        assert _all_finite(resumed.manager.load(s))
    unhealthy = [s for s in steps if s > 4]
    assert unhealthy and all(not resumed.manager.load(s).meta["health"]["healthy"] for s in unhealthy)


@pytest.mark.parametrize("change, fields", [
    (dict(cfg=CFG.replace(rope_theta=50000.0, score_func="softmax")), ["rope_theta", "score_func"]),
    (dict(data=DataConfig(batch_size=3, seq_len=32, seed=1)), ["batch_size", "seed"]),
])
def test_resume_refuses_a_checkpoint_of_another_config_naming_the_fields(tmp_path, change, fields):
    _trainer(tmp_path, every=2).fit(2)
    other = _trainer(tmp_path, **change)
    with pytest.raises(ValueError, match="was written with another") as err:
        other.resume()
    for name in fields:
        assert name in str(err.value)
    assert other.step == 0  # nothing was restored


def test_fit_continues_after_resume_falls_back_past_a_corrupt_checkpoint(tmp_path):
    straight = _trainer(tmp_path, every=2, keep=3)
    straight.fit(4)
    model_file = tmp_path / "step_00000004" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-7])  # truncated
    resumed = _trainer(tmp_path, seed=1, every=2, keep=3)
    with pytest.warns(UserWarning, match="skipping bad checkpoint"):
        assert resumed.resume() and resumed.step == 2
    with pytest.warns(UserWarning, match=r"set aside as step_00000004\.corrupt-1"):
        resumed.fit(2)  # before: FileExistsError ... pass overwrite=True at step 4
    assert (tmp_path / "step_00000004.corrupt-1" / "model.safetensors").exists()
    final, expected = resumed.model.state_dict(), straight.model.state_dict()
    assert all(np.array_equal(final[n], expected[n]) for n in expected)
    assert resumed.manager.latest_good().step == 4
