"""ModelConfig: the one description of a DeepSeek-V3 model that every part of the project shares.

Both implementations (``tf_impl`` and ``reference``), the benchmarks and the tests are built from
this dataclass, so it imports neither TensorFlow nor JAX. The field names are those of DeepSeek-V3's
own ``ModelArgs`` (``inference/model.py``), so DeepSeek's ``config_671B.json`` loads unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
    """An impossible or unreadable model configuration. The message names the field and the rule."""


class ScoreFunc(str, enum.Enum):
    """How the MoE gate turns router logits into affinity scores."""

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


class Dtype(str, enum.Enum):
    """Numeric mode of the linear layers.

    FLOAT32 computes every matmul in fp32. FP8 block-quantises weights (128x128 blocks) and
    activations (1x128 blocks) to e4m3 and accumulates in fp32, as DeepSeek-V3 does.
    DeepSeek's own JSON says "bf16" for its unquantised mode; on CPU we compute that mode in fp32
    (from_json maps it to FLOAT32 and says so in the docstring, not silently in numerics).
    """

    FLOAT32 = "float32"
    FP8 = "fp8"


class RopeScaling(str, enum.Enum):
    """How RoPE reaches positions beyond ``original_seq_len`` (applies only when ``max_seq_len`` exceeds it).

    YARN is DeepSeek-V3's rule and the default, so DeepSeek's configs (which have no such key) load
    unchanged: frequencies blended between kept and divided by ``rope_factor`` along the ramp of
    ``beta_fast``/``beta_slow``, and the softmax scale times mscale**2. PI is position interpolation
    (Chen et al. 2023): every frequency divided by ``rope_factor``, softmax unchanged. NONE is plain
    RoPE extrapolation: the tables are extended with the original frequencies. PI and NONE exist to
    be compared against YaRN (the context-extension experiment), not because DeepSeek uses them.
    """

    YARN = "yarn"
    PI = "pi"
    NONE = "none"


# DeepSeek's JSON spells dtypes differently; these are the accepted spellings.
_DTYPE_ALIASES = {"float32": Dtype.FLOAT32, "fp32": Dtype.FLOAT32, "bf16": Dtype.FLOAT32, "fp8": Dtype.FP8}

_POSITIVE_INT_FIELDS = (
    "max_batch_size", "max_seq_len", "vocab_size", "dim", "inter_dim", "moe_inter_dim", "n_layers",
    "n_heads", "n_routed_experts", "n_activated_experts", "n_expert_groups", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "original_seq_len",
)
_NON_NEGATIVE_INT_FIELDS = ("n_dense_layers", "n_shared_experts", "n_limited_groups", "q_lora_rank", "n_mtp_modules")
_POSITIVE_FLOAT_FIELDS = ("route_scale", "rope_theta", "rope_factor", "beta_fast", "beta_slow", "rms_eps")
_NON_NEGATIVE_FLOAT_FIELDS = ("mscale", "mtp_lambda", "balance_alpha", "bias_update_speed")


@dataclass(frozen=True)
class ModelConfig:
    """Every hyper-parameter of a DeepSeek-V3 model, as in DeepSeek's ``ModelArgs``.

    Extra fields beyond ``ModelArgs``: ``rope_scaling`` (YaRN as DeepSeek does, or position
    interpolation / plain RoPE for comparison; see RopeScaling), ``n_mtp_modules`` (Multi-Token Prediction depth D),
    ``mtp_lambda`` (weight of the MTP loss), ``balance_alpha`` (weight of the sequence-wise balance
    loss; 0 disables it), ``bias_update_speed`` (gamma of aux-loss-free balancing) and ``rms_eps``.

    Layer ``i`` (counting the MTP blocks as layers ``n_layers .. n_layers + n_mtp_modules - 1``) has a
    dense SwiGLU FFN when ``i < n_dense_layers`` and a MoE FFN otherwise.
    """

    max_batch_size: int = 8
    max_seq_len: int = 4096 * 4
    dtype: Dtype = Dtype.FLOAT32
    vocab_size: int = 102400
    dim: int = 2048
    inter_dim: int = 10944
    moe_inter_dim: int = 1408
    n_layers: int = 27
    n_dense_layers: int = 1
    n_heads: int = 16
    # MoE
    n_routed_experts: int = 64
    n_shared_experts: int = 2
    n_activated_experts: int = 6
    n_expert_groups: int = 1
    n_limited_groups: int = 1
    score_func: ScoreFunc = ScoreFunc.SOFTMAX
    route_scale: float = 1.0
    # MLA
    q_lora_rank: int = 0
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    # YaRN
    original_seq_len: int = 4096
    rope_theta: float = 10000.0
    rope_factor: float = 40.0
    beta_fast: int = 32
    beta_slow: int = 1
    mscale: float = 1.0
    rope_scaling: RopeScaling = RopeScaling.YARN
    # Beyond ModelArgs
    n_mtp_modules: int = 0
    mtp_lambda: float = 0.3
    balance_alpha: float = 0.0
    bias_update_speed: float = 0.001
    rms_eps: float = 1e-6

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dtype", _DTYPE_ALIASES[str(getattr(self.dtype, "value", self.dtype))])
        except KeyError:
            raise ConfigError(f"dtype={self.dtype!r} is unknown; use one of {sorted(_DTYPE_ALIASES)}") from None
        self._coerce_enum("score_func", ScoreFunc)
        self._coerce_enum("rope_scaling", RopeScaling)
        for name in _POSITIVE_INT_FIELDS + _NON_NEGATIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} must be an integer")
        for name in _POSITIVE_FLOAT_FIELDS + _NON_NEGATIVE_FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} must be a finite number")
        for name in _POSITIVE_INT_FIELDS + _POSITIVE_FLOAT_FIELDS:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        for name in _NON_NEGATIVE_INT_FIELDS + _NON_NEGATIVE_FLOAT_FIELDS:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        self._check_rules()

    def _coerce_enum(self, name: str, kind: type[enum.Enum]) -> None:
        """Replace field ``name`` (an enum member or its string value) by the member of ``kind``."""
        value = getattr(self, name)
        try:
            object.__setattr__(self, name, kind(getattr(value, "value", value)))
        except ValueError:
            raise ConfigError(f"{name}={value!r} is unknown; use one of {[k.value for k in kind]}") from None

    def _check_rules(self) -> None:
        """Cross-field rules; each failure names the fields and the rule broken."""
        if self.n_activated_experts > self.n_routed_experts:
            raise ConfigError(
                f"n_activated_experts={self.n_activated_experts} must be <= n_routed_experts={self.n_routed_experts}"
            )
        if self.n_routed_experts % self.n_expert_groups:
            raise ConfigError(
                f"n_expert_groups={self.n_expert_groups} must divide n_routed_experts={self.n_routed_experts}"
            )
        if self.n_limited_groups > self.n_expert_groups:
            raise ConfigError(
                f"n_limited_groups={self.n_limited_groups} must be <= n_expert_groups={self.n_expert_groups}"
            )
        if self.n_expert_groups > 1:
            if self.n_limited_groups < 1:
                raise ConfigError("n_limited_groups must be >= 1 when n_expert_groups > 1")
            if self.n_routed_experts // self.n_expert_groups < 2:
                raise ConfigError(
                    "each expert group needs >= 2 experts (group score = sum of its top-2 scores); "
                    f"got n_routed_experts={self.n_routed_experts} / n_expert_groups={self.n_expert_groups}"
                )
            kept = self.n_limited_groups * (self.n_routed_experts // self.n_expert_groups)
            if kept < self.n_activated_experts:
                raise ConfigError(
                    f"n_limited_groups={self.n_limited_groups} groups hold {kept} experts, fewer than "
                    f"n_activated_experts={self.n_activated_experts}"
                )
        if self.qk_rope_head_dim % 2:
            raise ConfigError(f"qk_rope_head_dim={self.qk_rope_head_dim} must be even (RoPE rotates pairs)")
        if self.n_dense_layers > self.n_layers + self.n_mtp_modules:
            raise ConfigError(
                f"n_dense_layers={self.n_dense_layers} must be <= n_layers + n_mtp_modules "
                f"= {self.n_layers + self.n_mtp_modules}"
            )
        if self.beta_slow > self.beta_fast:
            raise ConfigError(f"beta_slow={self.beta_slow} must be <= beta_fast={self.beta_fast}")

    # ------------------------------------------------------------------ derived sizes
    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: the non-rotated part plus the rotated part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def rope_extended(self) -> bool:
        """True when the context exceeds the trained one and ``rope_scaling`` rescales RoPE for it."""
        return self.max_seq_len > self.original_seq_len and self.rope_scaling is not RopeScaling.NONE

    @property
    def yarn_active(self) -> bool:
        """YaRN rescales RoPE and the softmax only when the context exceeds the trained one."""
        return self.rope_extended and self.rope_scaling is RopeScaling.YARN

    @property
    def softmax_scale(self) -> float:
        """``qk_head_dim ** -0.5``, times mscale**2 with ``m = 0.1 * mscale * ln(factor) + 1`` under YaRN."""
        scale = self.qk_head_dim**-0.5
        if self.yarn_active:
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            scale *= m * m
        return scale

    def is_moe_layer(self, layer_id: int) -> bool:
        """True when layer ``layer_id`` (MTP blocks count as ``n_layers + k``) has a MoE FFN."""
        return layer_id >= self.n_dense_layers

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def tiny(cls, **overrides: Any) -> "ModelConfig":
        """A two-layer model (one dense, one MoE) small enough for unit and equivalence tests."""
        base = dict(
            max_batch_size=4, max_seq_len=64, vocab_size=256, dim=64, inter_dim=128, moe_inter_dim=32,
            n_layers=2, n_dense_layers=1, n_heads=4, n_routed_experts=8, n_shared_experts=1,
            n_activated_experts=2, n_expert_groups=2, n_limited_groups=1, score_func=ScoreFunc.SIGMOID,
            route_scale=2.5, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, original_seq_len=64, rope_factor=4.0, n_mtp_modules=1,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def bench(cls, **overrides: Any) -> "ModelConfig":
        """The benchmark model: six layers, 32 routed experts, big enough for timings to mean something."""
        base = dict(
            max_batch_size=8, max_seq_len=1024, vocab_size=4096, dim=512, inter_dim=1536, moe_inter_dim=256,
            n_layers=6, n_dense_layers=1, n_heads=8, n_routed_experts=32, n_shared_experts=1,
            n_activated_experts=4, n_expert_groups=4, n_limited_groups=2, score_func=ScoreFunc.SIGMOID,
            route_scale=2.5, q_lora_rank=256, kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32,
            v_head_dim=64, original_seq_len=1024, rope_factor=4.0, n_mtp_modules=1,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def mtp_proxy(cls, **overrides: Any) -> "ModelConfig":
        """Deep and thin, for self-speculative decoding: one MTP module costs what it costs in DeepSeek-V3.

        Speculative decoding's speed-up is bounded by the drafter's cost relative to the trunk. In the
        671B model one MTP module (``eh_proj``, one MoE block, the shared head) activates ~4.4% of the
        weights one trunk forward does (61 blocks and the head; ``experiments.mtp_speedup.mtp_cost_ratio``
        counts them); the 2-layer ``tiny`` spends ~66% on it, which caps the speed-up below 1.5x at any
        acceptance. This preset keeps tiny's width class and the byte vocabulary of the shipped corpus
        but has 32 layers (3 dense, as V3), so the ratio is ~4.6% (~1/22), within 1.1x of the 671B value.
        """
        base = dict(
            max_batch_size=8, max_seq_len=128, vocab_size=256, dim=128, inter_dim=256, moe_inter_dim=64,
            n_layers=32, n_dense_layers=3, n_heads=4, n_routed_experts=8, n_shared_experts=1,
            n_activated_experts=2, n_expert_groups=2, n_limited_groups=1, score_func=ScoreFunc.SIGMOID,
            route_scale=2.5, q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16,
            v_head_dim=32, original_seq_len=128, rope_factor=4.0, n_mtp_modules=1,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def v3_671b(cls, **overrides: Any) -> "ModelConfig":
        """The published DeepSeek-V3 671B values (configs/config_671B.json). Shape-only: never allocate it."""
        base = dict(
            vocab_size=129280, dim=7168, inter_dim=18432, moe_inter_dim=2048, n_layers=61, n_dense_layers=3,
            n_heads=128, n_routed_experts=256, n_shared_experts=1, n_activated_experts=8, n_expert_groups=8,
            n_limited_groups=4, route_scale=2.5, score_func=ScoreFunc.SIGMOID, q_lora_rank=1536,
            kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, dtype=Dtype.FP8,
            original_seq_len=4096, rope_theta=10000.0, rope_factor=40.0, beta_fast=32, beta_slow=1,
            mscale=1.0, n_mtp_modules=1,
        )
        return cls(**{**base, **overrides})

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (enums as their string values)."""
        return {f.name: getattr(getattr(self, f.name), "value", getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON; refuses to overwrite an existing file with different content."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if os.path.exists(path):
            with open(path) as f:
                if f.read() == text:
                    return
            raise FileExistsError(f"{path} exists with other content; remove it or choose another path")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", strict: bool = False) -> "ModelConfig":
        """Build from a dict with ModelArgs keys; unknown keys are an error that lists them.

        A key that is absent takes its default, as in DeepSeek's own ``ModelArgs`` (its
        ``config_671B.json`` has no RoPE/YaRN or MTP keys). That is never silent: a UserWarning names
        every defaulted field and its value. ``strict=True`` refuses a dict with missing keys instead;
        the harness reads the configs it wrote itself (``to_json``, checkpoint manifests) strictly.

        Args:
            data: ``{field name: value}``, enums as their string values.
            source: how messages name the dict, e.g. the file it came from.
            strict: refuse missing keys (ConfigError) instead of warning.

        Returns:
            the validated config.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{source}: unknown config keys {unknown}; known keys are {sorted(fields)}")
        missing = [name for name in fields if name not in data]
        if missing and strict:
            raise ConfigError(f"{source}: missing keys {missing}; strict mode needs every field of ModelConfig "
                              "(write the file with ModelConfig.to_json, or load it with strict=False to take "
                              "defaults)")
        if missing:
            defaults = ", ".join(f"{name}={getattr(fields[name].default, 'value', fields[name].default)!r}"
                                 for name in missing)
            warnings.warn(f"{source}: {len(missing)} field(s) not in the file take their defaults: {defaults}; "
                          "add them to the file to make them explicit (strict=True refuses missing keys)",
                          UserWarning, stacklevel=3)
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | os.PathLike, strict: bool = False) -> "ModelConfig":
        """Read DeepSeek's own ``config_671B.json`` format (or our ``to_json`` output).

        Missing keys take defaults with a warning naming each one, or are an error with ``strict=True``
        (see ``from_dict``). A missing, non-UTF-8 or non-JSON file is a ConfigError naming the file.

        Args:
            path: the JSON file.
            strict: refuse missing keys instead of filling in defaults with a warning.

        Returns:
            the validated config.
        """
        if not os.path.exists(path):
            raise ConfigError(f"config file {path} does not exist")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                              "is it a JSON config? Point to DeepSeek's config_671B.json or a to_json output") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path), strict=strict)

    @classmethod
    def named(cls, name_or_path: str, presets: Mapping[str, Callable[[], "ModelConfig"]] | None = None) -> "ModelConfig":
        """A preset by name or a path to a JSON file (what the CLIs accept).

        ``presets`` defaults to ``tiny``, ``bench``, ``mtp_proxy`` and ``v3_671b``; a CLI with its own set of names
        (the equivalence suite's) passes that set instead, and gets the same JSON handling and errors.

        Args:
            name_or_path: a preset name, or a path ending in ``.json`` (read with ``from_json``).
            presets: ``{name: factory}``; None means the four presets above.

        Returns:
            the config; ConfigError lists the valid names for anything else.
        """
        if presets is None:
            presets = {"tiny": cls.tiny, "bench": cls.bench, "mtp_proxy": cls.mtp_proxy, "v3_671b": cls.v3_671b}
        if name_or_path in presets:
            return presets[name_or_path]()
        if name_or_path.endswith(".json"):
            return cls.from_json(name_or_path)
        raise ConfigError(f"unknown config {name_or_path!r}; use one of {sorted(presets)} or a path to a .json file")



@dataclass(frozen=True)
class TrainConfig:
    """AdamW with global-norm clipping, linear warmup then cosine decay to ``lr * min_lr_ratio``.

    One copy for both frameworks (``tf_impl.train`` and ``reference.train`` re-export it), so a
    TF-vs-Flax training-step comparison cannot drift on a hyper-parameter. The schedule is
    ``lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` updates, then a cosine to
    ``lr * min_lr_ratio`` at ``total_steps``. Weight decay is decoupled (optax.adamw's formula) and
    applies to every trainable tensor, norms included; the gate bias is not trainable.
    """

    lr: float = 1e-3
    warmup_steps: int = 10
    total_steps: int = 1000
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("total_steps", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name}={value!r} must be an integer number of steps")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in ("total_steps", "warmup_steps") and (
                    isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)):
                raise ConfigError(f"{f.name}={value!r} must be a finite number")
        if self.total_steps < 1 or self.warmup_steps < 0:
            raise ConfigError(f"total_steps={self.total_steps} must be >= 1 and warmup_steps={self.warmup_steps} >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio={self.min_lr_ratio} must lie in [0, 1]")
        if self.lr < 0 or self.weight_decay < 0 or self.clip_norm <= 0 or self.eps <= 0:
            raise ConfigError(f"lr={self.lr} and weight_decay={self.weight_decay} must be >= 0, "
                              f"clip_norm={self.clip_norm} and eps={self.eps} > 0")
        if not (0.0 <= self.b1 < 1.0 and 0.0 <= self.b2 < 1.0):
            raise ConfigError(f"b1={self.b1} and b2={self.b2} must lie in [0, 1)")


@dataclass(frozen=True)
class MeshConfig:
    """How a model is laid out on devices: ``data_parallel`` x ``expert_parallel`` ranks.

    Rank ``r`` sits at ``(r // expert_parallel, r % expert_parallel)``: the expert axis varies fastest,
    so an expert-parallel group is a run of adjacent devices (one node's GPUs on a real cluster, where
    the all-to-all is cheapest). Every rank reads its own share of the batch; the routed experts are
    split into ``expert_parallel`` contiguous shards (replicated over the data axis); attention, the
    gate, the shared experts, norms, embedding and head are replicated. ``zero`` partitions the AdamW
    moments of each tensor over the ranks that hold a copy of it (ZeRO-1). ``nodes`` is how many
    nodes the expert axis spans: node-limited routing maps expert groups to nodes.
    """

    data_parallel: int = 1
    expert_parallel: int = 1
    zero: bool = False
    nodes: int = 1

    def __post_init__(self) -> None:
        for name in ("data_parallel", "expert_parallel", "nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not isinstance(self.zero, bool):
            raise ConfigError(f"zero={self.zero!r} must be True or False")
        if self.expert_parallel % self.nodes:
            raise ConfigError(f"nodes={self.nodes} must divide expert_parallel={self.expert_parallel} "
                              "(every node holds the same number of expert ranks)")

    @property
    def n_devices(self) -> int:
        """Devices the mesh needs: data_parallel * expert_parallel."""
        return self.data_parallel * self.expert_parallel

    @classmethod
    def for_devices(cls, n_devices: int, expert_parallel: int | None = None, **kw: Any) -> "MeshConfig":
        """A mesh over ``n_devices``: all of them on the expert axis unless ``expert_parallel`` says otherwise.

        Args:
            n_devices: the devices to use, all of them.
            expert_parallel: ranks on the expert axis, a divisor of ``n_devices``; None puts every device there.
            **kw: the other ``MeshConfig`` fields (e.g. ``nodes``).

        Returns:
            a mesh of ``n_devices // expert_parallel`` data-parallel x ``expert_parallel`` ranks.
        """
        ep = n_devices if expert_parallel is None else expert_parallel
        if ep < 1 or n_devices % ep:
            raise ConfigError(f"expert_parallel={ep} must divide the {n_devices} devices present")
        return cls(data_parallel=n_devices // ep, expert_parallel=ep, **kw)

    def check_layout(self, cfg: ModelConfig, batch_size: int | None = None) -> None:
        """Refuse a model or batch that cannot be laid out on this mesh; each message names both numbers.

        Args:
            cfg: the model; its ``n_routed_experts`` must split evenly over the expert axis.
            batch_size: the global batch, if known; it must split evenly over all ranks.
        """
        if cfg.n_routed_experts % self.expert_parallel:
            raise ConfigError(
                f"n_routed_experts={cfg.n_routed_experts} cannot be split over expert_parallel="
                f"{self.expert_parallel} ranks ({cfg.n_routed_experts} % {self.expert_parallel} = "
                f"{cfg.n_routed_experts % self.expert_parallel}); choose an expert_parallel that divides it")
        if cfg.n_expert_groups > 1 and self.nodes > 1 and cfg.n_expert_groups % self.nodes:
            raise ConfigError(
                f"n_expert_groups={cfg.n_expert_groups} cannot be mapped onto nodes={self.nodes} "
                "(node-limited routing needs whole groups per node); choose nodes dividing the groups")
        if batch_size is not None and batch_size % self.n_devices:
            raise ConfigError(
                f"batch_size={batch_size} cannot be split over {self.n_devices} ranks "
                f"(data_parallel={self.data_parallel} x expert_parallel={self.expert_parallel}); "
                f"use a multiple of {self.n_devices}")
