import numpy as np
import pytest

from harness.config import ModelConfig
from harness.io import load_safetensors, save_safetensors
from harness.state import StateError, expected_shapes, num_params
from reference import Transformer


def test_state_dict_names_shapes_and_param_count(tiny_cfg, tiny_model):
    state = tiny_model.state_dict()
    shapes = expected_shapes(tiny_cfg)
    assert list(state) == list(shapes)
    assert all(state[k].shape == shapes[k] and state[k].dtype == np.float32 for k in state)
    assert tiny_model.num_params() == num_params(tiny_cfg) == sum(v.size for v in state.values())
    # experts are unstacked in the canonical layout: expert j's w1 is [moe_inter_dim, dim]
    assert state["layers.1.ffn.experts.3.w1.weight"].shape == (tiny_cfg.moe_inter_dim, tiny_cfg.dim)
    assert not np.allclose(state["layers.1.ffn.experts.3.w1.weight"], state["layers.1.ffn.experts.4.w1.weight"])


def test_state_dict_round_trip_through_safetensors(tmp_path, tiny_cfg, tiny_model, tokens):
    state = tiny_model.state_dict()
    state["layers.1.ffn.gate.bias"] = np.linspace(-0.01, 0.01, tiny_cfg.n_routed_experts, dtype=np.float32)
    save_safetensors(state, tmp_path / "m.safetensors")
    other = Transformer(tiny_cfg, seed=1)
    assert not np.allclose(other.state_dict()["embed.weight"], state["embed.weight"])
    other.load_state_dict(load_safetensors(tmp_path / "m.safetensors"))
    back = other.state_dict()
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    original = Transformer(tiny_cfg, seed=0)
    original.load_state_dict(state)
    np.testing.assert_array_equal(np.asarray(other(tokens)), np.asarray(original(tokens)))


def test_load_state_dict_lists_every_mismatch(tiny_cfg):
    model = Transformer(tiny_cfg, seed=2)
    before = model.state_dict()
    state = dict(before)
    del state["layers.0.attn.wkv_b.weight"]
    state["layers.0.attn.bogus.weight"] = np.zeros((2, 2), np.float32)
    state["norm.weight"] = np.zeros((3,), np.float32)
    with pytest.raises(StateError) as err:
        model.load_state_dict(state)
    msg = str(err.value)
    assert "3 problem" in msg
    assert "missing tensor layers.0.attn.wkv_b.weight (expected [128, 16])" in msg
    assert "unexpected tensor layers.0.attn.bogus.weight" in msg
    assert "tensor norm.weight has shape [3], expected [64]" in msg
    np.testing.assert_array_equal(model.state_dict()["embed.weight"], before["embed.weight"])  # untouched


def test_bad_inputs_raise_clear_errors(tiny_cfg, tiny_model, tokens):
    with pytest.raises(ValueError, match="token id 256 is out of range"):
        tiny_model(np.full((1, 3), 256))
    with pytest.raises(ValueError, match="token id -1 is out of range"):
        tiny_model(np.full((1, 3), -1))
    with pytest.raises(ValueError, match="exceeds max_seq_len=64"):
        tiny_model(np.zeros((1, 65), np.int32))
    with pytest.raises(ValueError, match=r"shape \[B, T\], got rank 1"):
        tiny_model(np.zeros((5,), np.int32))
    with pytest.raises(ValueError, match="integer ids"):
        tiny_model(np.zeros((1, 5), np.float32))
    cache = tiny_model.new_cache(2, "absorb")
    with pytest.raises(ValueError, match="batch_size=2"):
        tiny_model.decode_step(np.zeros((3,), np.int32), cache)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        tiny_model.decode_step(tokens, cache)
    cache.length = tiny_cfg.max_seq_len
    with pytest.raises(ValueError, match="exceed max_seq_len"):
        tiny_model.decode_step(np.zeros((2,), np.int32), cache)
    with pytest.raises(ValueError, match="max_batch_size"):
        tiny_model.new_cache(tiny_cfg.max_batch_size + 1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_model.generate(tokens, tiny_cfg.max_seq_len)


def test_forward_aux_shapes_and_mtp_alignment(tiny_cfg, tiny_model, tokens):
    b, t = tokens.shape
    logits, aux = tiny_model.forward_aux(tokens)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(tiny_model(tokens)), atol=1e-5)
    assert [m.shape for m in aux["mtp_logits"]] == [(b, t - 1, tiny_cfg.vocab_size)]
    k, e = tiny_cfg.n_activated_experts, tiny_cfg.n_routed_experts
    assert [s.shape for s in aux["router_scores"]] == [(b, t, e), (b, t - 1, e)]  # main MoE layer, MTP block
    assert [i.shape for i in aux["router_indices"]] == [(b, t, k), (b, t - 1, k)]
    np.testing.assert_array_equal(np.asarray(aux["expert_load"]).sum(-1), [b * t * k, b * (t - 1) * k])
    # MTP position i sees tokens[:, :i+2] (its input token is tokens[:, i+1]) and nothing later.
    changed = tokens.copy()
    changed[:, 6:] = (changed[:, 6:] + 7) % tiny_cfg.vocab_size
    mtp_a, mtp_b = np.asarray(aux["mtp_logits"][0]), np.asarray(tiny_model.forward_aux(changed)[1]["mtp_logits"][0])
    np.testing.assert_allclose(mtp_a[:, :5], mtp_b[:, :5], atol=1e-5)
    assert np.abs(mtp_a[:, 5] - mtp_b[:, 5]).max() > 1e-3


def test_generate_greedy_follows_the_full_forward(tiny_model, tokens):
    prompt = tokens[:, :6]
    new = np.asarray(tiny_model.generate(prompt, 7))
    assert new.shape == (2, 7) and new.dtype == np.int32
    seq = np.concatenate([prompt, new[:, :-1]], axis=1)  # (2, 12): every token the model was fed
    np.testing.assert_array_equal(np.asarray(tiny_model(seq))[:, 5:].argmax(-1), new)


def test_generate_sampling_is_seeded(tiny_model, tokens):
    prompt = tokens[:, :6]
    a = np.asarray(tiny_model.generate(prompt, 3, temperature=1.0, seed=1))
    assert np.array_equal(a, np.asarray(tiny_model.generate(prompt, 3, temperature=1.0, seed=1)))
    # a nucleus that holds only the top token is greedy
    np.testing.assert_array_equal(np.asarray(tiny_model.generate(prompt, 3, temperature=1.0, top_p=1e-6)),
                                  np.asarray(tiny_model.generate(prompt, 3)))


def test_fresh_models_are_seeded():
    cfg = ModelConfig.tiny(n_layers=1, n_dense_layers=1, n_mtp_modules=0)
    a, b, c = Transformer(cfg, seed=5), Transformer(cfg, seed=5), Transformer(cfg, seed=6)
    np.testing.assert_array_equal(a.state_dict()["head.weight"], b.state_dict()["head.weight"])
    assert not np.allclose(a.state_dict()["head.weight"], c.state_dict()["head.weight"])
