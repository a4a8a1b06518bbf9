"""ModelConfig JSON loading (defaulted keys, strict mode, unreadable files), its rope_scaling field, and
TrainConfig validation."""

import dataclasses
import json
import math
import warnings

import pytest

from harness.config import ConfigError, ModelConfig, RopeScaling, TrainConfig

# The keys of DeepSeek-V3's inference/configs/config_671B.json (20 keys; no RoPE/YaRN or MTP keys).
DEEPSEEK_671B = {
    "vocab_size": 129280, "dim": 7168, "inter_dim": 18432, "moe_inter_dim": 2048, "n_layers": 61,
    "n_dense_layers": 3, "n_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1, "n_activated_experts": 8,
    "n_expert_groups": 8, "n_limited_groups": 4, "route_scale": 2.5, "score_func": "sigmoid", "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "dtype": "fp8",
}


def _write(tmp_path, data, name="c.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_deepseek_config_loads_and_warns_naming_every_defaulted_field(tmp_path):
    path = _write(tmp_path, DEEPSEEK_671B)
    with pytest.warns(UserWarning, match="defaults") as record:
        cfg = ModelConfig.from_json(path)
    assert cfg == ModelConfig.v3_671b(n_mtp_modules=0, max_batch_size=8, max_seq_len=4096 * 4)
    message = str(record[0].message)
    defaulted = sorted({f.name for f in dataclasses.fields(ModelConfig)} - set(DEEPSEEK_671B))
    assert defaulted  # e.g. rope_theta, original_seq_len, n_mtp_modules
    for name in defaulted:
        assert name in message, f"{name} took its default silently"
    for name in DEEPSEEK_671B:
        assert f"{name}=" not in message


def test_strict_mode_refuses_missing_keys_naming_them(tmp_path):
    path = _write(tmp_path, DEEPSEEK_671B)
    with pytest.raises(ConfigError, match=r"missing keys \[.*'rope_theta'.*\]"):
        ModelConfig.from_json(path, strict=True)
    with pytest.raises(ConfigError, match="'original_seq_len'"):
        ModelConfig.from_dict({"dim": 64}, strict=True)


def test_complete_file_loads_strictly_and_silently(tmp_path):
    path = tmp_path / "tiny.json"
    ModelConfig.tiny().to_json(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ModelConfig.from_json(path, strict=True) == ModelConfig.tiny()
        assert ModelConfig.from_json(path) == ModelConfig.tiny()


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00{\x93garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        ModelConfig.from_json(path)


@pytest.mark.parametrize("field", ["lr", "weight_decay", "clip_norm", "eps", "min_lr_ratio", "b1", "b2"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_train_config_rejects_non_finite_numbers(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["total_steps", "warmup_steps"])
@pytest.mark.parametrize("value", [10.5, 1e3, "10", True, math.nan])
def test_train_config_rejects_non_integer_step_counts(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_train_config_accepts_valid_values():
    tc = TrainConfig(lr=0.0, weight_decay=0.0, total_steps=1, warmup_steps=0)
    assert tc.lr == 0.0 and tc.total_steps == 1


# ---------------------------------------------------------------- rope_scaling
# DeepSeek's own ModelArgs keys (config_671B.json has no rope_scaling key): must load as YaRN.
_DEEPSEEK_KEYS = {"vocab_size": 129280, "dim": 7168, "original_seq_len": 4096, "rope_factor": 40,
                  "max_seq_len": 16384, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0}


def test_deepseek_json_without_the_key_loads_as_yarn(tmp_path):
    path = tmp_path / "config_671B.json"
    path.write_text(json.dumps(_DEEPSEEK_KEYS))
    with pytest.warns(UserWarning, match="rope_scaling"):  # defaulted, and said so
        cfg = ModelConfig.from_json(path)
    assert cfg.rope_scaling is RopeScaling.YARN
    assert cfg.yarn_active and cfg.rope_extended


@pytest.mark.parametrize("spelling, expected", [("pi", RopeScaling.PI), ("none", RopeScaling.NONE),
                                                ("yarn", RopeScaling.YARN), (RopeScaling.PI, RopeScaling.PI)])
def test_rope_scaling_parses_strings_and_enums(spelling, expected):
    assert ModelConfig.tiny(rope_scaling=spelling).rope_scaling is expected


def test_unknown_rope_scaling_names_the_choices():
    with pytest.raises(ConfigError, match=r"rope_scaling='ntk' is unknown; use one of \['yarn', 'pi', 'none'\]"):
        ModelConfig.tiny(rope_scaling="ntk")


@pytest.mark.parametrize("scaling", list(RopeScaling))
def test_json_round_trip_keeps_rope_scaling(tmp_path, scaling):
    cfg = ModelConfig.tiny(rope_scaling=scaling, max_seq_len=256, original_seq_len=64)
    cfg.to_json(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["rope_scaling"] == scaling.value
    assert ModelConfig.from_json(tmp_path / "c.json") == cfg


def test_only_yarn_changes_the_softmax_scale():
    # Extended context (256 > 64), factor 4: YaRN multiplies by m^2 with m = 0.1 ln 4 + 1; PI and NONE do not.
    plain = ModelConfig.tiny().qk_head_dim ** -0.5
    m = 0.1 * math.log(4.0) + 1
    scales = {s: ModelConfig.tiny(rope_scaling=s, max_seq_len=256, original_seq_len=64, rope_factor=4.0).softmax_scale
              for s in RopeScaling}
    assert scales[RopeScaling.YARN] == pytest.approx(plain * m * m)
    assert scales[RopeScaling.PI] == pytest.approx(plain)
    assert scales[RopeScaling.NONE] == pytest.approx(plain)


def test_rescaling_applies_only_beyond_the_original_length():
    for scaling in RopeScaling:
        cfg = ModelConfig.tiny(rope_scaling=scaling, max_seq_len=64, original_seq_len=64)
        assert not cfg.rope_extended and not cfg.yarn_active
    extended = {s: ModelConfig.tiny(rope_scaling=s, max_seq_len=128, original_seq_len=64) for s in RopeScaling}
    assert [extended[s].rope_extended for s in RopeScaling] == [True, True, False]
    assert [extended[s].yarn_active for s in RopeScaling] == [True, False, False]
