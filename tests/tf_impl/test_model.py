"""Transformer: shapes, parameter count, state round trips, forward_aux, generation, bad input."""

import numpy as np
import pytest
import tensorflow as tf

from harness.config import ModelConfig
from harness.io import load_safetensors, save_safetensors
from harness.state import StateError
from tf_impl import InputError, Transformer


def closed_form_params(c: ModelConfig) -> int:
    """The parameter count written out from the config (independent of harness.state)."""
    d, n = c.dim, c.n_heads
    qk = c.qk_nope_head_dim + c.qk_rope_head_dim
    if c.q_lora_rank:
        q = d * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * n * qk      # wq_a, q_norm, wq_b
    else:
        q = d * n * qk                                                       # wq
    attn = (q + d * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank  # wkv_a, kv_norm
            + c.kv_lora_rank * n * (c.qk_nope_head_dim + c.v_head_dim)      # wkv_b
            + n * c.v_head_dim * d)                                          # wo
    norms = 2 * d                                                            # attn_norm, ffn_norm
    dense_ffn = 3 * d * c.inter_dim
    moe_ffn = (c.n_routed_experts * d + c.n_routed_experts                   # gate weight, gate bias
               + c.n_routed_experts * 3 * d * c.moe_inter_dim               # routed experts
               + 3 * d * c.n_shared_experts * c.moe_inter_dim)              # shared experts
    n_dense_main = min(c.n_dense_layers, c.n_layers)
    main = n_dense_main * (attn + norms + dense_ffn) + (c.n_layers - n_dense_main) * (attn + norms + moe_ffn)
    mtp_block = attn + norms + (moe_ffn if c.n_dense_layers <= c.n_layers else dense_ffn)
    mtp = c.n_mtp_modules * (2 * d + 2 * d * d + d + mtp_block)             # enorm, hnorm, eh_proj, norm
    return 2 * c.vocab_size * d + d + main + mtp                             # embed, head, final norm


def test_param_count_tiny(tiny_cfg, tiny_model):
    assert closed_form_params(tiny_cfg) == 216_352
    assert tiny_model.num_params() == 216_352
    assert sum(v.size for v in tiny_model.state_dict().values()) == 216_352


def test_param_count_bench():
    cfg = ModelConfig.bench()
    assert closed_form_params(cfg) == 90_664_768
    assert Transformer(cfg, seed=0, compiled=False).num_params() == 90_664_768


def test_forward_shapes_and_dtype(tiny_cfg, tiny_model, tokens):
    logits = tiny_model(tokens)
    assert logits.shape == (2, 12, tiny_cfg.vocab_size) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))


def test_eager_equals_compiled(tiny_model, tokens):
    compiled = tiny_model(tokens).numpy()
    tiny_model.compiled = False
    try:
        eager = tiny_model(tokens).numpy()
    finally:
        tiny_model.compiled = True
    np.testing.assert_allclose(eager, compiled, rtol=1e-4, atol=1e-4)


def test_init_is_seeded(tiny_cfg, tiny_model):
    again = Transformer(tiny_cfg, seed=0, compiled=False).state_dict()
    other = Transformer(tiny_cfg, seed=1, compiled=False).state_dict()
    state = tiny_model.state_dict()
    assert all(np.array_equal(state[k], again[k]) for k in state)
    assert not np.array_equal(state["layers.0.attn.wo.weight"], other["layers.0.attn.wo.weight"])
    assert np.all(state["norm.weight"] == 1) and np.all(state["layers.1.ffn.gate.bias"] == 0)


def test_forward_aux_layout(tiny_cfg, eager_model, tokens):
    logits, aux = eager_model.forward_aux(tokens)
    b, t = tokens.shape
    e, k = tiny_cfg.n_routed_experts, tiny_cfg.n_activated_experts
    np.testing.assert_allclose(logits.numpy(), eager_model(tokens).numpy(), rtol=1e-4, atol=1e-4)
    assert [m.shape for m in aux["mtp_logits"]] == [(b, t - 1, tiny_cfg.vocab_size)]
    n_moe = 2  # layer 1 and the MTP block
    assert aux["expert_load"].shape == (n_moe, e)
    assert aux["router_scores"].shape == (n_moe, b, t, e)
    assert aux["router_indices"].shape == (n_moe, b, t, k)
    load = aux["expert_load"].numpy()
    assert load[0].sum() == b * t * k and load[1].sum() == b * (t - 1) * k
    idx = aux["router_indices"].numpy()
    assert np.all(idx[1][:, -1] == -1) and np.all(idx[0] >= 0)
    np.testing.assert_array_equal(load[0], np.bincount(idx[0].ravel(), minlength=e))


def test_mtp_logits_follow_the_documented_alignment(tiny_cfg, eager_model, tokens):
    """Recompute module 1 by hand from its parts: block(eh_proj([enorm(emb(t[1:])); hnorm(h0[:-1])]))."""
    _, aux = eager_model.forward_aux(tokens)
    m, t = eager_model, tokens.shape[1]
    h0, _ = m.hidden_states(tokens)
    mod = m.mtp[0]
    x = mod.eh_proj(tf.concat([mod.enorm(tf.gather(m.embed, tokens[:, 1:])), mod.hnorm(h0[:, :-1])], -1))
    h1, _ = mod.block(x, *m.rope_at(0, t - 1))
    expected = m.head(mod.norm(h1)).numpy()
    np.testing.assert_allclose(aux["mtp_logits"][0].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_trainable_tensor_but_not_the_gate_bias(tiny_cfg):
    model = Transformer(tiny_cfg, seed=0, compiled=False)
    toks = np.arange(16, dtype=np.int32).reshape(2, 8)
    with tf.GradientTape() as tape:
        logits, aux = model.forward_aux(toks)
        loss = tf.reduce_mean(logits ** 2) + tf.reduce_mean(aux["mtp_logits"][0] ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    biases = model.gate_biases()
    assert len(biases) == 2 and not any(b.trainable for b in biases)
    assert all(all(b is not v for v in model.trainable_variables) for b in biases)


def test_state_dict_round_trip_through_safetensors(tiny_cfg, tiny_model, tokens, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_safetensors(tiny_model.state_dict(), path)
    other = Transformer(tiny_cfg, seed=7, compiled=False)
    assert not np.allclose(other(tokens).numpy(), tiny_model(tokens).numpy())
    other.load_state_dict(load_safetensors(path))
    np.testing.assert_allclose(other(tokens).numpy(), tiny_model(tokens).numpy(), rtol=1e-5, atol=1e-5)
    state = other.state_dict()
    assert list(state) == list(tiny_model.state_dict())
    assert state["layers.1.ffn.experts.3.w2.weight"].shape == (tiny_cfg.dim, tiny_cfg.moe_inter_dim)


def test_load_state_dict_lists_every_problem(tiny_cfg):
    model = Transformer(tiny_cfg, seed=0, compiled=False)
    state = model.state_dict()
    del state["layers.1.attn.wkv_b.weight"]
    state["layers.1.ffn.experts.0.w1.weight"] = np.zeros((3, 3), np.float32)
    state["layers.9.bogus.weight"] = np.zeros(2, np.float32)
    with pytest.raises(StateError) as err:
        model.load_state_dict(state, source="ckpt.safetensors")
    msg = str(err.value)
    assert "ckpt.safetensors" in msg and "3 problem" in msg
    assert "missing tensor layers.1.attn.wkv_b.weight (expected [128, 16])" in msg
    assert "layers.1.ffn.experts.0.w1.weight has shape [3, 3], expected [32, 64]" in msg
    assert "unexpected tensor layers.9.bogus.weight" in msg
    good = model.state_dict()
    good["norm.weight"] = good["norm.weight"].astype(np.int32)
    with pytest.raises(StateError, match="floating point"):
        model.load_state_dict(good)


@pytest.mark.parametrize("bad, match", [
    (np.array([[1, 2, -1]]), "token id -1"),
    (np.array([[1, 256, 3]]), "token id 256"),
    (np.array([1, 2, 3]), "rank 2"),
    (np.zeros((1, 2, 3), np.int32), "rank 2"),
    (np.array([[1.0, 2.0]]), "integer token ids"),
    (np.zeros((1, 0), np.int32), "empty"),
    (np.zeros((1, 65), np.int32), "exceeds max_seq_len=64"),
])
def test_bad_tokens_raise_clear_errors(tiny_model, bad, match):
    with pytest.raises(InputError, match=match):
        tiny_model(bad)


def test_bad_cache_use_raises_clear_errors(eager_model):
    with pytest.raises(InputError, match="exceeds max_batch_size=4"):
        eager_model.new_cache(5)
    with pytest.raises(InputError, match="cache mode"):
        eager_model.new_cache(1, mode="paged")
    with pytest.raises(InputError, match="larger than the cache's batch_size=1"):
        eager_model.prefill(np.zeros((2, 3), np.int32), eager_model.new_cache(1))
    cache = eager_model.new_cache(2)
    eager_model.prefill(np.zeros((1, 63), np.int32), cache)
    with pytest.raises(InputError, match="rank 1"):
        eager_model.decode_step(np.zeros((1, 1), np.int32), cache)
    with pytest.raises(InputError, match="batch 2 but the cache holds 1"):
        eager_model.decode_step(np.zeros(2, np.int32), cache)
    with pytest.raises(InputError, match="token id 999"):
        eager_model.decode_step(np.array([999]), cache)
    eager_model.decode_step(np.zeros(1, np.int32), cache)                 # position 63: the last one
    with pytest.raises(InputError, match="after the 64 cached positions exceeds max_seq_len=64"):
        eager_model.decode_step(np.zeros(1, np.int32), cache)
    with pytest.raises(InputError, match="new_cache"):
        eager_model.prefill(np.zeros((1, 3), np.int32), cache={})


def test_generate_bad_arguments(eager_model):
    prompt = np.zeros((1, 60), np.int32)
    with pytest.raises(InputError, match="prompt \\+ max_new_tokens of length 65 exceeds max_seq_len=64"):
        eager_model.generate(prompt, 5)
    with pytest.raises(InputError, match="top_p"):
        eager_model.generate(prompt[:, :4], 2, temperature=1.0, top_p=0.0)
    with pytest.raises(InputError, match="max_new_tokens"):
        eager_model.generate(prompt[:, :4], -1)


def test_greedy_generate_is_deterministic_and_matches_forward_argmax(eager_model, tokens):
    prompt = tokens[:, :5]
    new = eager_model.generate(prompt, 6)
    assert new.shape == (2, 6) and new.dtype == np.int32
    np.testing.assert_array_equal(eager_model.generate(prompt, 6), new)
    np.testing.assert_array_equal(eager_model.generate(prompt, 6, mode="naive"), new)
    out = np.concatenate([prompt, new], 1)                                     # [B, 11]
    logits = eager_model(out[:, :-1]).numpy()
    np.testing.assert_array_equal(logits[:, 4:].argmax(-1), out[:, 5:])


def test_seeded_sampling_is_reproducible(eager_model, tokens):
    prompt = tokens[:, :4]
    a = eager_model.generate(prompt, 8, temperature=1.0, top_p=0.9, seed=3)
    np.testing.assert_array_equal(eager_model.generate(prompt, 8, temperature=1.0, top_p=0.9, seed=3), a)
    assert not np.array_equal(eager_model.generate(prompt, 8, temperature=1.0, top_p=0.9, seed=4), a)
    # a nucleus smaller than any single token's probability keeps only the argmax: greedy
    np.testing.assert_array_equal(eager_model.generate(prompt, 8, temperature=1.0, top_p=1e-6, seed=5),
                                  eager_model.generate(prompt, 8))


def test_model_can_be_called_inside_a_callers_tf_function(tiny_model, tokens):
    @tf.function
    def outer(t):
        return tiny_model(t), tiny_model.forward_aux(t)[0]

    a, b = outer(tf.constant(tokens))
    np.testing.assert_allclose(a.numpy(), tiny_model(tokens).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)
