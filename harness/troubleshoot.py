"""Troubleshooting: a knowledge base of known failures, matched against logs and live training signals.

The knowledge base is data (``KNOWLEDGE_BASE``, a tuple of frozen ``Issue`` records). Each issue
carries regexes for the messages it produces. Those regexes were written against real output of
TensorFlow 2.21, JAX 0.10 and this project, provoked by ``scripts/capture_failures.py`` and kept as
fixtures in ``tests/qa/fixtures/*.log``.

Two kinds of evidence feed a diagnosis:

- **Patterns.** Each matched pattern adds its weight to the issue's score by a noisy-OR,
  ``confidence = 1 - prod(1 - w_i)``, over distinct matched patterns, capped at 0.99. A single
  decisive message (``OOM when allocating tensor``) gives about 0.95, and several weak hints add up.
- **Live signals.** Numbers the training loop measures: per-expert token counts
  (``diagnose_expert_load``), the loss history (``diagnose_loss_history``, ``loss_spike_count``),
  FP8 cast ranges (``diagnose_fp8_range``) and input waiting time (``diagnose_input_pipeline``).
  Each returns ``Finding`` records whose messages are themselves matched by the knowledge base, so
  a log that contains them is diagnosed too. ``diagnose_text`` also pulls ``loss=...`` values and
  ``expert_load=[...]`` vectors out of a log and runs these checks on them.

CLI (``python -m harness diagnose``)::

    diagnose LOGFILE|-          ranked diagnosis of a log (``-`` reads stdin)
    diagnose --guide [PATH]     markdown troubleshooting guide generated from the knowledge base
    diagnose --report-template  issue report with the environment filled in (add LOGFILE to attach it)

Exit status: 0 when a known issue matched (or a guide/template was written), 1 when nothing
matched, 2 on bad usage or an unreadable file.
"""

from __future__ import annotations

import argparse
import enum
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


class Category(str, enum.Enum):
    """Where in the stack an issue lives."""

    MEMORY = "memory"
    TRAINING_STABILITY = "training stability"
    MOE_ROUTING = "MoE routing"
    PRECISION = "precision"
    COMPILATION = "compilation"
    SHAPES_AND_CONFIG = "shapes and config"
    CHECKPOINT = "checkpoint"
    DATA_PIPELINE = "data pipeline"
    EQUIVALENCE = "TF/JAX equivalence"
    ENVIRONMENT = "environment"


class Severity(enum.IntEnum):
    """How badly an issue stops work: CRITICAL kills the run, LOW only wastes time."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


@dataclass(frozen=True)
class Pattern:
    """A regex over log text, the weight of its evidence in (0, 1), and what a match means."""

    regex: str
    weight: float
    means: str

    def search(self, text: str) -> re.Match | None:
        """The last match in ``text`` (case-insensitive, ``^``/``$`` per line), or None.

        The last one, because a traceback ends with the exception message, while earlier matches
        are often the source line that raised it.
        """
        match = None
        for match in re.finditer(self.regex, text, re.IGNORECASE | re.MULTILINE):
            pass
        return match


@dataclass(frozen=True)
class Issue:
    """One known failure: how to recognise it, why it happens, how to fix and prevent it."""

    id: str
    title: str
    category: Category
    severity: Severity
    phases: str
    description: str
    symptoms: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    root_causes: tuple[str, ...]
    solutions: tuple[str, ...]
    prevention: tuple[str, ...]
    related: tuple[str, ...] = ()


KNOWLEDGE_BASE: tuple[Issue, ...] = (
    Issue(
        id="out_of_memory",
        title="Out of memory",
        category=Category.MEMORY,
        severity=Severity.CRITICAL,
        phases="P1-P6",
        description="An allocation larger than the free host or device memory was refused.",
        symptoms=(
            "TensorFlow raises ResourceExhaustedError: OOM when allocating tensor with shape[...]",
            "JAX raises RESOURCE_EXHAUSTED: Out of memory allocating N bytes",
            "numpy raises MemoryError: Unable to allocate X GiB for an array",
            "The process dies with 'Killed' (the kernel's OOM killer) and no traceback",
        ),
        patterns=(
            Pattern(r"OOM when allocating tensor with shape", 0.95, "TensorFlow allocator refusal"),
            Pattern(r"RESOURCE_EXHAUSTED", 0.6, "XLA/TF status code for exhausted resources"),
            Pattern(r"Out of memory (while trying to )?allocat", 0.9, "JAX/XLA allocator refusal"),
            Pattern(r"Unable to allocate [\d.]+ [KMGTPE]?i?B for an array", 0.9, "numpy allocation refusal"),
            Pattern(r"\bMemoryError\b", 0.6, "Python MemoryError"),
            Pattern(r"std::bad_alloc", 0.7, "C++ allocation failure"),
            Pattern(r"^Killed$", 0.4, "process killed by the OOM killer"),
        ),
        root_causes=(
            "Batch size, sequence length or model size too large for the memory available",
            "The naive MLA cache (per-head K and V) used where the absorbed latent cache would fit",
            "A shape computed from a wrong config field, asking for an absurd tensor",
            "Activations of every layer kept alive for backprop of a long sequence",
        ),
        solutions=(
            "Read the shape in the message: if it is absurd, fix the config or shape arithmetic first",
            "Reduce batch size or sequence length; use gradient accumulation to keep the effective batch",
            "Use model.new_cache(..., mode='absorb'): it stores C + R numbers per token instead of N*(H+H)",
            "Recompute activations (tf.recompute_grad / jax.checkpoint) for long sequences",
            "Use the tiny or bench preset on this machine; v3_671b is for shape arithmetic only",
        ),
        prevention=(
            "Estimate memory from the config before allocating (harness.state.num_params, cache bytes per token)",
            "Track peak memory with the asv peakmem_* benchmarks",
        ),
        related=("shape_mismatch", "config_mismatch"),
    ),
    Issue(
        id="nan_inf_loss",
        title="NaN/Inf loss, divergence or loss spikes",
        category=Category.TRAINING_STABILITY,
        severity=Severity.HIGH,
        phases="P1-P5",
        description="The loss or an activation became NaN/Inf, grows without bound, or jumps far above its recent level.",
        symptoms=(
            "tf.debugging.check_numerics raises InvalidArgumentError: ... Tensor had NaN values",
            "JAX with jax_debug_nans raises FloatingPointError: invalid value (nan) encountered in <op>",
            "Logged losses read nan or inf, or rise step after step",
            "Isolated steps with a loss many robust standard deviations above the recent median",
        ),
        patterns=(
            Pattern(r"Tensor had (NaN|Inf) values", 0.85, "tf.debugging.check_numerics fired"),
            Pattern(r"invalid value \((nan|inf)\) encountered", 0.8, "jax_debug_nans fired"),
            Pattern(r"\bFloatingPointError\b", 0.4, "floating-point exception raised"),
            Pattern(r"\bloss\s*[=:]\s*[-+]?(nan|inf)\b", 0.7, "a logged loss value is not finite"),
            Pattern(r"loss history: (non-finite|divergence|spike)", 0.9, "live loss-history check"),
        ),
        root_causes=(
            "Learning rate too high or no warm-up",
            "No gradient clipping, so one bad batch blows up the weights",
            "log/softmax/rsqrt of a value outside its domain (log of 0 or of a negative, rsqrt of 0)",
            "An FP8 cast of a value above 448 (e4m3 has no Inf, it gives NaN)",
            "Routing collapse concentrating gradient on one expert",
        ),
        solutions=(
            "Find the first non-finite step (the live check reports it) and inspect that batch",
            "Lower the learning rate, add warm-up, clip the global gradient norm to 1.0",
            "Compute norms and softmax in fp32 with eps (RMSNorm eps = cfg.rms_eps)",
            "Run one step under tf.debugging.enable_check_numerics() or jax_debug_nans to find the op",
        ),
        prevention=(
            "Call loss_spike_count on the loss history in training tests",
            "Keep the gate and the softmax in fp32",
        ),
        related=("fp8_range", "moe_routing_collapse"),
    ),
    Issue(
        id="moe_routing_collapse",
        title="MoE routing collapse or expert load imbalance",
        category=Category.MOE_ROUTING,
        severity=Severity.HIGH,
        phases="P2",
        description="A few experts receive most tokens and others none, so capacity is wasted and training destabilises.",
        symptoms=(
            "Per-expert token counts like [1000, 0, 0, ...]",
            "Coefficient of variation of expert load far above the sampling noise of uniform routing",
            "Gate bias values drifting far apart, or not changing at all",
        ),
        patterns=(
            Pattern(r"expert routing collapse", 0.95, "live expert-load check: collapse"),
            Pattern(r"expert load imbalance", 0.85, "live expert-load check: imbalance"),
            Pattern(r"expert_load\s*[=:]\s*\[", 0.2, "expert loads are logged (checked as a live signal)"),
        ),
        root_causes=(
            "Gate bias not updated (bias_update_speed = 0, or the update applied with the wrong sign)",
            "The bias used in the weights instead of only in the selection",
            "A skewed initial gate bias or gate weight",
            "Softmax scoring with top-k favouring whichever expert wins early",
        ),
        solutions=(
            "Check that the aux-loss-free update is bias += gamma * sign(mean_load - load)",
            "Check that the routing weights come from the scores without the bias (DeepSeek-V3 code)",
            "Enable the sequence-wise balance loss (balance_alpha > 0) as a guard",
            "Reset a collapsed gate bias to zero and restart from the last good checkpoint",
        ),
        prevention=(
            "Log expert_load=[...] per MoE layer every N steps and run diagnose_expert_load on it",
            "Test the bias update on a skewed synthetic router",
        ),
        related=("nan_inf_loss",),
    ),
    Issue(
        id="fp8_range",
        title="FP8 overflow or underflow",
        category=Category.PRECISION,
        severity=Severity.HIGH,
        phases="P1",
        description="Values cast to float8 e4m3 without a proper scale overflow to NaN (|x| > 448) or flush to zero (|x| < 2^-9).",
        symptoms=(
            "NaN right after a cast to float8_e4m3fn (e4m3fn has no Inf: overflow is NaN)",
            "jax_debug_nans: invalid value (nan) encountered in convert_element_type",
            "Large relative error of FP8 matmuls against the fp32 ones; small activations become 0",
        ),
        patterns=(
            Pattern(r"fp8 e4m3 (overflow|underflow)", 0.95, "live FP8 range check"),
            # Converting finite floats to fp32/bf16 overflows to Inf, not NaN, and ints have no NaN:
            # a NaN born in a conversion points at a float8 type without Inf (e4m3fn).
            Pattern(r"\(nan\) encountered in convert_element_type", 0.85, "a dtype conversion produced NaN"),
            Pattern(r"float8_e4m3(fn)?|\be4m3", 0.4, "the failing code casts to float8 e4m3"),
            Pattern(r"\bfp8\b", 0.2, "FP8 mode is involved"),
        ),
        root_causes=(
            "A cast without the block scale (scale = amax / 448 per 128x128 weight or 1x128 activation block)",
            "amax computed over the wrong axis or block, so one block's outlier sets nobody's scale",
            "A scale of 0 for an all-zero block (division by zero)",
        ),
        solutions=(
            "Quantise through the fp8 module's block quantiser, never with a bare cast",
            "Check amax per block and guard the scale: max(amax, tiny) / 448",
            "Compare the FP8 path against fp32 with the relative-error tests",
        ),
        prevention=(
            "Run diagnose_fp8_range on tensors before casting in tests",
            "Accumulate in fp32 and keep the gate outside FP8",
        ),
        related=("nan_inf_loss",),
    ),
    Issue(
        id="xla_compilation",
        title="XLA / jit compilation failure",
        category=Category.COMPILATION,
        severity=Severity.MEDIUM,
        phases="P1-P6",
        description="A tf.function(jit_compile=True) or jax.jit function cannot be compiled or traced.",
        symptoms=(
            "InvalidArgumentError: Detected unsupported operations when trying to compile graph ... on XLA_CPU_JIT",
            "tf2xla conversion failed while converting __inference_...",
            "JAX: ConcretizationTypeError / 'Shapes must be 1D sequences of concrete values of integer type'",
        ),
        patterns=(
            Pattern(r"Detected unsupported operations when trying to compile graph", 0.95, "TF op without an XLA kernel"),
            Pattern(r"tf2xla conversion failed", 0.9, "TF graph to XLA conversion failed"),
            Pattern(r"XLA_(CPU|GPU)_JIT", 0.5, "the XLA JIT device is involved"),
            Pattern(r"ConcretizationTypeError", 0.85, "JAX needs a concrete value under jit"),
            Pattern(r"Abstract tracer value encountered where concrete value is expected", 0.9, "JAX tracing"),
            Pattern(r"Shapes must be 1D sequences of concrete values of integer type", 0.9, "traced shape under jax.jit"),
            Pattern(r"Tracer(Integer|Bool|Array)ConversionError", 0.85, "JAX tracer converted to Python"),
            Pattern(r"static_argnums", 0.3, "JAX suggests static arguments"),
        ),
        root_causes=(
            "An op without an XLA kernel inside jit_compile=True: tf.py_function, string ops, some tf.data ops",
            "A shape that depends on a traced value (sequence length taken from a tensor under jax.jit)",
            "Python control flow on a traced value",
        ),
        solutions=(
            "Move the unsupported op (string processing, py_function) outside the compiled function",
            "Pass shapes as Python ints: static_argnums/static_argnames in JAX, input_signature in TF",
            "Use lax.cond/lax.while_loop or tf.cond/tf.while_loop instead of Python if/for on tensors",
            "Rerun without jit (jit_compile=False / jax.disable_jit()) to get a plain Python traceback",
        ),
        prevention=(
            "Keep compiled functions pure tensor math; test each jit path once on the tiny preset",
        ),
        related=("shape_mismatch",),
    ),
    Issue(
        id="shape_mismatch",
        title="Tensor shape mismatch",
        category=Category.SHAPES_AND_CONFIG,
        severity=Severity.MEDIUM,
        phases="P1-P6",
        description="An op received operands whose shapes do not fit (matmul, einsum, broadcast, reshape, concat).",
        symptoms=(
            "TF: InvalidArgumentError: Matrix size-incompatible: In[0]: [2,3], In[1]: [4,5]",
            "JAX: TypeError: dot_general requires contracting dimensions to have the same shape",
            "Incompatible shapes / cannot reshape array / operands could not be broadcast",
        ),
        patterns=(
            Pattern(r"Matrix size-incompatible", 0.95, "TF matmul operand mismatch"),
            Pattern(r"dot_general requires contracting dimensions to have the same shape", 0.95, "JAX dot mismatch"),
            Pattern(r"Incompatible shapes", 0.85, "TF broadcast mismatch"),
            Pattern(r"Dimensions must be equal", 0.85, "TF shape inference mismatch"),
            Pattern(r"Input to reshape is a tensor with \d+ values", 0.9, "TF reshape size mismatch"),
            Pattern(r"cannot reshape array of (shape|size)", 0.9, "numpy/JAX reshape mismatch"),
            Pattern(r"(incompatible shapes for broadcasting|operands could not be broadcast together)", 0.85, "broadcast mismatch"),
            Pattern(r"ConcatOp ?: Dimension", 0.85, "TF concat mismatch"),
        ),
        root_causes=(
            "Linear weights used as [in, out] where the canonical state stores [out, in]",
            "qk_head_dim = nope + rope confused with one of its parts, or v_head_dim used for keys",
            "The absorbed and naive cache layouts mixed up",
            "An einsum string that does not follow the shared axis alphabet",
        ),
        solutions=(
            "Read both shapes in the message and match them to the axis alphabet (B T S D N H R C Q E F V)",
            "Check the docstring shapes of the function that raised; add a shape comment on each reshape",
            "Compare with harness.state.expected_shapes(cfg) for parameters",
        ),
        prevention=(
            "Write the shape of every tensor in a trailing comment; test each module on the tiny preset",
        ),
        related=("config_mismatch",),
    ),
    Issue(
        id="config_mismatch",
        title="Config or checkpoint/config mismatch",
        category=Category.SHAPES_AND_CONFIG,
        severity=Severity.MEDIUM,
        phases="P0-P6",
        description="The model config is impossible, or a state dict was built for another config.",
        symptoms=(
            "harness.config.ConfigError naming a field and the rule it breaks",
            "harness.state.StateError listing missing, unexpected and wrong-shaped tensors",
            "unknown config keys [...] when reading a JSON config",
        ),
        patterns=(
            Pattern(r"\bConfigError\b", 0.8, "ModelConfig validation failed"),
            Pattern(r"\bStateError\b", 0.8, "state dict does not fit the config"),
            Pattern(r"does not match the config", 0.9, "harness.state.check_state"),
            Pattern(r"unknown config keys", 0.9, "ModelConfig.from_dict"),
            Pattern(r"missing tensor \S+ \(expected \[", 0.6, "a tensor the config requires is absent"),
            Pattern(r"has shape \[[\d, ]*\], expected \[", 0.6, "a tensor has the wrong shape for the config"),
        ),
        root_causes=(
            "A checkpoint saved with another preset (tiny vs bench) or another n_routed_experts",
            "Hand-edited config violating a cross-field rule (top-k > experts, groups not dividing experts)",
            "DeepSeek JSON keys that ModelArgs does not have",
        ),
        solutions=(
            "Load the checkpoint with the config it was saved with (keep config.json next to it)",
            "Read the rule in the ConfigError message and fix the named field",
            "Diff expected_shapes(cfg) against the file's tensor names",
        ),
        prevention=("Save cfg.to_json() beside every checkpoint",),
        related=("shape_mismatch", "checkpoint_corruption"),
    ),
    Issue(
        id="checkpoint_corruption",
        title="Checkpoint missing, truncated or corrupt",
        category=Category.CHECKPOINT,
        severity=Severity.HIGH,
        phases="P4-P6",
        description="A checkpoint file cannot be read: it was truncated by an interrupted write, overwritten or damaged.",
        symptoms=(
            "harness.io.CheckpointError: checkpoint X (N bytes) is truncated or corrupt",
            "safetensors: Error while deserializing header / incomplete metadata",
            "TensorFlow DataLossError when restoring a tf.train.Checkpoint",
        ),
        patterns=(
            Pattern(r"is truncated or corrupt", 0.95, "harness.io.load_safetensors"),
            Pattern(r"\bCheckpointError\b", 0.7, "project checkpoint error"),
            Pattern(r"Error while deserializing header", 0.9, "safetensors header unreadable"),
            Pattern(r"incomplete metadata|file not fully covered", 0.85, "safetensors size mismatch"),
            Pattern(r"\bSafetensorError\b", 0.7, "safetensors error"),
            Pattern(r"\bDataLossError\b", 0.85, "TF checkpoint data loss"),
            Pattern(r"checkpoint \S+ does not exist", 0.6, "checkpoint path wrong"),
        ),
        root_causes=(
            "A write interrupted by a crash or a full disk (writes not atomic)",
            "Two processes writing the same path",
            "A partial copy or download",
        ),
        solutions=(
            "Restore the previous checkpoint; harness.io.save_safetensors writes to a temp file and renames",
            "Check free disk space and the file size against a good copy",
            "Keep the last two checkpoints and verify each by loading it after saving",
        ),
        prevention=("Save atomically and load back once after every save",),
        related=("config_mismatch",),
    ),
    Issue(
        id="slow_input_pipeline",
        title="Slow input pipeline",
        category=Category.DATA_PIPELINE,
        severity=Severity.MEDIUM,
        phases="P4",
        description="Training steps wait on data: the input pipeline, not the model, sets the speed.",
        symptoms=(
            "A large share of each step spent blocked on next(iterator)",
            "Low device utilisation while CPU usage is high in Python or tf.data",
        ),
        patterns=(
            Pattern(r"input pipeline stall", 0.95, "live input-wait check"),
            Pattern(r"is slow compared to the batch time", 0.85, "Keras callback timing warning"),
            Pattern(r"did not fully read the dataset being cached", 0.4, "tf.data cache warning"),
        ),
        root_causes=(
            "Python work (tf.py_function, tokenisation) in Dataset.map without parallelism",
            "No prefetch, so data loading and compute never overlap",
            "Reading many small files without interleave",
        ),
        solutions=(
            "Use map(..., num_parallel_calls=tf.data.AUTOTUNE) and end the pipeline with .prefetch(tf.data.AUTOTUNE)",
            "Tokenise offline; store token ids as arrays",
            "Profile one epoch of the dataset alone to get its tokens/s",
        ),
        prevention=("Record the input wait share per step and run diagnose_input_pipeline on it",),
    ),
    Issue(
        id="tf_jax_divergence",
        title="TF and Flax outputs diverge",
        category=Category.EQUIVALENCE,
        severity=Severity.HIGH,
        phases="P1-P2",
        description="tf_impl and the Flax reference disagree beyond tolerance on the same weights and inputs.",
        symptoms=(
            "assert_allclose: Not equal to tolerance rtol=..., atol=... with mismatched elements",
            "Routing agreement below 1.0 between the two gates",
        ),
        patterns=(
            Pattern(r"Not equal to tolerance rtol=", 0.6, "numpy assert_allclose failed"),
            Pattern(r"Mismatched elements: \d+ / \d+", 0.4, "assert_allclose mismatch count"),
            Pattern(r"tf_impl vs reference|reference vs tf_impl|\bTF vs (Flax|JAX)\b", 0.6, "an equivalence check"),
            Pattern(r"routing agreement", 0.7, "equivalence of expert choices"),
        ),
        root_causes=(
            "RoPE on interleaved pairs in one framework and on halves in the other",
            "Weights transposed at one framework's edge ([out, in] vs [in, out])",
            "Different eps, softmax scale (YaRN mscale^2) or gate score function",
            "Top-k near-ties resolving differently (report routing agreement separately)",
        ),
        solutions=(
            "Bisect by layer: compare norm, rope, attention, gate, experts separately on the tiny preset",
            "Load the same canonical state into both and compare intermediate tensors",
            "For routing, compare the gate scores first; only then the chosen indices",
        ),
        prevention=("Pure functions for RoPE, masks and gating, each tested on hand-computed arrays",),
        related=("shape_mismatch", "fp8_range"),
    ),
    Issue(
        id="missing_dependency",
        title="Missing package or module",
        category=Category.ENVIRONMENT,
        severity=Severity.MEDIUM,
        phases="P0",
        description="A module cannot be imported: the environment lacks a package, or a project module is not written yet.",
        symptoms=("ModuleNotFoundError: No module named 'X'", "ImportError: cannot import name 'Y' from 'X'"),
        patterns=(
            Pattern(r"ModuleNotFoundError: No module named", 0.9, "module not installed or not on the path"),
            Pattern(r"ImportError: cannot import name", 0.8, "name missing from a module (version skew)"),
        ),
        root_causes=(
            "The venv was created without `pip install -e .`",
            "Running with the system python instead of .venv/bin/python",
            "A package version outside the pins in pyproject.toml",
        ),
        solutions=(
            "Run the README's install command; use .venv/bin/python",
            "Compare installed versions (python -m harness diagnose --report-template) with pyproject.toml",
        ),
        prevention=("Install only from pyproject.toml; rebuild the venv after changing pins",),
    ),
)

_ISSUES = {issue.id: issue for issue in KNOWLEDGE_BASE}


def get_issue(issue_id: str) -> Issue:
    """The knowledge-base entry ``issue_id``; an unknown id raises KeyError listing the known ones."""
    try:
        return _ISSUES[issue_id]
    except KeyError:
        raise KeyError(f"unknown issue id {issue_id!r}; known ids are {sorted(_ISSUES)}") from None


# ---------------------------------------------------------------------------------------- live signals
@dataclass(frozen=True)
class Finding:
    """A live check's verdict: the issue it points to, a log-ready message, the measured numbers."""

    issue_id: str
    message: str
    weight: float
    metrics: dict = field(default_factory=dict)


# Expert load thresholds. IMBALANCE_CV is the roadmap's "expert utilization variance < 5%", read as
# a coefficient of variation (std / mean) of per-expert token counts. A finite batch cannot show a
# CV below its sampling noise even with perfectly uniform routing: for N assignments over E experts,
# N * CV**2 follows chi-square with E-1 degrees of freedom. So imbalance is flagged only when the CV
# exceeds 0.05 AND the chi-square statistic exceeds its 99.9% quantile (noise is ruled out).
IMBALANCE_CV = 0.05
IMBALANCE_P = 0.001
# Collapse: experts with no tokens although the mean load is >= 5 (chance of an empty expert under
# uniform routing is then below e^-5 = 0.7%) make up a quarter of the experts, or the busiest 10%
# of experts (at least one) carry half of all assignments.
COLLAPSE_MIN_MEAN = 5.0
COLLAPSE_DEAD_FRACTION = 0.25
COLLAPSE_TOP_SHARE = 0.5


def _chi2_quantile(dof: int, p_upper: float) -> float:
    """Upper ``p_upper`` quantile of chi-square(dof), Wilson-Hilferty approximation (no scipy)."""
    z = math.sqrt(2.0) * _erfinv(1.0 - 2.0 * p_upper)
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method on math.erf (accurate to ~1e-12)."""
    x = 0.0
    for _ in range(100):
        step = (math.erf(x) - y) / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
        x -= step
        if abs(step) < 1e-13:
            break
    return x


def expert_load_stats(counts: Sequence[float]) -> dict:
    """Coefficient of variation, dead experts, top share and chi-square of per-expert token counts.

    Args:
        counts: tokens (or token-expert assignments) routed to each expert, of shape [E].

    Returns:
        dict with ``cv``, ``n_experts``, ``total``, ``mean``, ``dead`` (experts with 0 tokens),
        ``top_share`` (share of the busiest 10% of experts), ``chi2`` and ``chi2_limit``.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.size < 2:
        raise ValueError(f"expert load needs counts for >= 2 experts, got {c.size}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"expert load counts must be finite and >= 0, got {c.tolist()}")
    total, mean = float(c.sum()), float(c.mean())
    cv = float(c.std() / mean) if mean > 0 else float("inf")
    n_top = max(1, math.ceil(0.1 * c.size))
    return {
        "n_experts": int(c.size),
        "total": total,
        "mean": mean,
        "cv": cv,
        "dead": int(np.sum(c == 0)),
        "top_share": float(np.sort(c)[::-1][:n_top].sum() / total) if total > 0 else 1.0,
        "n_top": n_top,
        "chi2": total * cv * cv if mean > 0 else float("inf"),
        "chi2_limit": _chi2_quantile(c.size - 1, IMBALANCE_P),
    }


def diagnose_expert_load(counts: Sequence[float], layer: str | int | None = None) -> list[Finding]:
    """Flag routing collapse or load imbalance in per-expert token counts.

    Args:
        counts: tokens routed to each expert in one MoE layer, of shape [E].
        layer: optional layer name or index for the message.

    Returns:
        [] when the load is balanced within noise, else one Finding (collapse or imbalance) whose
        message quotes the measured CV, dead experts and top share.
    """
    s = expert_load_stats(counts)
    where = f" in layer {layer}" if layer is not None else ""
    numbers = (
        f"CV={s['cv']:.3f}, {s['dead']} of {s['n_experts']} experts idle, "
        f"busiest {s['n_top']} take {100 * s['top_share']:.1f}% of {s['total']:.0f} assignments"
    )
    if s["total"] == 0:
        return [Finding("moe_routing_collapse", f"expert routing collapse{where}: no tokens routed at all", 0.95, s)]
    collapsed = s["mean"] >= COLLAPSE_MIN_MEAN and (
        s["dead"] >= COLLAPSE_DEAD_FRACTION * s["n_experts"] or s["top_share"] >= COLLAPSE_TOP_SHARE
    )
    if collapsed:
        return [Finding("moe_routing_collapse", f"expert routing collapse{where}: {numbers}", 0.95, s)]
    if s["cv"] > IMBALANCE_CV and s["chi2"] > s["chi2_limit"]:
        msg = (
            f"expert load imbalance{where}: {numbers}; CV above {IMBALANCE_CV} and beyond sampling noise "
            f"(chi2={s['chi2']:.1f} > {s['chi2_limit']:.1f})"
        )
        return [Finding("moe_routing_collapse", msg, 0.85, s)]
    return []


# Loss spikes: a step whose loss exceeds the median of the previous `window` finite losses by more
# than `threshold` robust standard deviations (1.4826 * median absolute deviation). With Gaussian
# noise, 6 robust stds is exceeded once in ~1e9 steps, so healthy noisy training gives 0 spikes.
# The robust std is floored at 0.1% of the median so that a flat loss does not make every wobble a spike.
SPIKE_WINDOW = 20
SPIKE_THRESHOLD = 6.0
_SPIKE_MIN_HISTORY = 5
_SPIKE_REL_FLOOR = 1e-3


def _spike_steps(losses: np.ndarray, window: int, threshold: float) -> list[int]:
    history: list[float] = []
    spikes = []
    for i, value in enumerate(losses):
        if not np.isfinite(value):
            spikes.append(i)
            continue
        recent = np.asarray(history[-window:])
        if recent.size >= _SPIKE_MIN_HISTORY:
            med = float(np.median(recent))
            robust_std = max(1.4826 * float(np.median(np.abs(recent - med))), _SPIKE_REL_FLOOR * abs(med), 1e-12)
            if value > med + threshold * robust_std:
                spikes.append(i)
        history.append(float(value))
    return spikes


def loss_spike_count(losses: Sequence[float], window: int = SPIKE_WINDOW, threshold: float = SPIKE_THRESHOLD) -> int:
    """Number of loss spikes: non-finite steps plus steps far above the recent median.

    A step is a spike when its loss is NaN/Inf, or when it exceeds the median of the previous
    ``window`` finite losses by more than ``threshold`` robust standard deviations
    (1.4826 * MAD, floored at 0.1% of the median). Steps with fewer than 5 earlier finite losses
    are only checked for NaN/Inf. Training code uses this for "load balancing maintains training
    stability" (0 spikes = stable).

    Args:
        losses: the loss per step, in step order, of shape [steps].
        window: how many previous finite losses form the reference.
        threshold: spike distance in robust standard deviations.

    Returns:
        the number of spike steps (int).
    """
    if window < _SPIKE_MIN_HISTORY:
        raise ValueError(f"window={window} must be >= {_SPIKE_MIN_HISTORY}")
    if threshold <= 0:
        raise ValueError(f"threshold={threshold} must be positive")
    return len(_spike_steps(np.asarray(losses, dtype=np.float64).reshape(-1), window, threshold))


def diagnose_loss_history(
    losses: Sequence[float], window: int = SPIKE_WINDOW, threshold: float = SPIKE_THRESHOLD
) -> list[Finding]:
    """Flag non-finite losses, loss spikes and divergence in a loss history.

    Divergence: the median of the last ``span`` finite losses is above both the median of the
    first ``span`` and 1.5 times the lowest loss seen (the run got clearly worse, not noisier),
    with ``span = min(window, finite steps // 2)`` and at least 5.

    Args:
        losses: the loss per step, in step order, of shape [steps].
        window: reference window for spikes and divergence.
        threshold: spike distance in robust standard deviations (see loss_spike_count).

    Returns:
        a list of Findings, at most one each for non-finite values, spikes and divergence.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    findings = []
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        before = x[: bad[0]][np.isfinite(x[: bad[0]])]
        last_good = f"{before[-1]:.4g}" if before.size else "none"
        findings.append(Finding(
            "nan_inf_loss",
            f"loss history: non-finite loss at {bad.size} of {x.size} steps, first at step {bad[0]} "
            f"(last finite loss before it: {last_good})",
            0.9, {"first_nonfinite_step": int(bad[0]), "nonfinite_steps": int(bad.size)},
        ))
    spikes = [i for i in _spike_steps(x, window, threshold) if np.isfinite(x[i])]
    if spikes:
        findings.append(Finding(
            "nan_inf_loss",
            f"loss history: spike at {len(spikes)} step(s), first ones {spikes[:10]} (> median of previous {window} "
            f"+ {threshold} robust std)",
            0.6, {"spike_steps": spikes},
        ))
    finite = x[np.isfinite(x)]
    span = min(window, finite.size // 2)
    if span >= _SPIKE_MIN_HISTORY:
        first, last = float(np.median(finite[:span])), float(np.median(finite[-span:]))
        if last > first and last > 1.5 * float(finite.min()):
            findings.append(Finding(
                "nan_inf_loss",
                f"loss history: divergence, median loss rose from {first:.4g} (first {span} finite steps) to "
                f"{last:.4g} (last {span}); best was {float(finite.min()):.4g}",
                0.7, {"first_median": first, "last_median": last},
            ))
    return findings


# float8 e4m3fn: largest finite 448, smallest subnormal 2^-9. No Inf: overflow gives NaN.
FP8_E4M3_MAX = 448.0
FP8_E4M3_MIN_SUBNORMAL = 2.0**-9


def diagnose_fp8_range(values, scale: float = 1.0) -> list[Finding]:
    """Flag values that a cast ``values / scale`` to float8 e4m3 would turn into NaN or zero.

    Args:
        values: the tensor about to be quantised (any shape; numpy-convertible).
        scale: the dequantisation scale (amax / 448 for a proper block scale).

    Returns:
        [] when every value is representable, else Findings quoting how many overflow (|x| > 448)
        and how many non-zero values underflow (|x| < 2^-9) after scaling.
    """
    x = np.abs(np.asarray(values, dtype=np.float64).reshape(-1)) / scale
    findings = []
    over = int(np.sum(x > FP8_E4M3_MAX))
    if over:
        findings.append(Finding(
            "fp8_range",
            f"fp8 e4m3 overflow: {over} of {x.size} values exceed 448 after scaling (max |x| = {x.max():.4g}); "
            f"e4m3fn has no Inf, so they become NaN",
            0.95, {"overflow": over, "amax": float(x.max())},
        ))
    under = int(np.sum((x > 0) & (x < FP8_E4M3_MIN_SUBNORMAL)))
    if under:
        findings.append(Finding(
            "fp8_range",
            f"fp8 e4m3 underflow: {under} of {x.size} non-zero values are below 2^-9 after scaling and flush to 0",
            0.8, {"underflow": under},
        ))
    return findings


# Input pipeline: if more than 20% of a step is spent waiting for the next batch, the device idles a
# fifth of the time; with prefetching the wait should be close to zero.
INPUT_WAIT_LIMIT = 0.2


def diagnose_input_pipeline(wait_seconds: float, step_seconds: float) -> list[Finding]:
    """Flag an input-bound training loop from the time spent waiting for data.

    Args:
        wait_seconds: time blocked on the next batch, summed over the measured steps.
        step_seconds: total wall time of the same steps (waiting included).

    Returns:
        [] when the wait share is at most INPUT_WAIT_LIMIT, else one Finding quoting the share.
    """
    if step_seconds <= 0 or wait_seconds < 0 or wait_seconds > step_seconds * (1 + 1e-9):
        raise ValueError(f"need 0 <= wait_seconds <= step_seconds and step_seconds > 0, got {wait_seconds}, {step_seconds}")
    share = wait_seconds / step_seconds
    if share <= INPUT_WAIT_LIMIT:
        return []
    return [Finding(
        "slow_input_pipeline",
        f"input pipeline stall: {100 * share:.0f}% of step time spent waiting for data "
        f"({wait_seconds:.3f}s of {step_seconds:.3f}s; limit {100 * INPUT_WAIT_LIMIT:.0f}%)",
        0.95, {"wait_share": share},
    )]


# ---------------------------------------------------------------------------------------- log diagnosis
_LOSS_RE = re.compile(r"\bloss\s*[=:]\s*([-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:e[-+]?\d+)?))", re.IGNORECASE)
_LOAD_RE = re.compile(r"\bexpert_load\s*[=:]\s*\[([^\]]*)\]", re.IGNORECASE)


def signals_from_log(text: str) -> list[Finding]:
    """Run the live checks on numbers found in a log: ``loss=...`` values and ``expert_load=[...]`` vectors.

    Args:
        text: the log.

    Returns:
        the Findings of diagnose_loss_history (when >= 3 losses are logged) and of
        diagnose_expert_load (for each logged load vector).
    """
    findings: list[Finding] = []
    losses = [float(v) for v in _LOSS_RE.findall(text)]
    if len(losses) >= 3:
        findings += diagnose_loss_history(losses)
    for match in _LOAD_RE.finditer(text):
        try:
            counts = [float(v) for v in match.group(1).replace(",", " ").split()]
            findings += diagnose_expert_load(counts)
        except ValueError:
            continue
    return findings


# A log never proves a cause: however much evidence agrees, confidence stops here.
MAX_CONFIDENCE = 0.99


@dataclass(frozen=True)
class Evidence:
    """One reason for a diagnosis: a matched pattern or a live-signal Finding."""

    weight: float
    means: str
    excerpt: str


@dataclass(frozen=True)
class Diagnosis:
    """An issue with its confidence (noisy-OR of the evidence weights) and the evidence."""

    issue: Issue
    confidence: float
    evidence: tuple[Evidence, ...]


def _line_of(text: str, match: re.Match) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end >= 0 else len(text)].strip()[:240]


def diagnose_text(text: str, signals: Iterable[Finding] = ()) -> list[Diagnosis]:
    """Rank the known issues that ``text`` (a log or error message) shows.

    Args:
        text: log text; any length, any content (never raises on unknown input).
        signals: extra live-signal Findings measured outside the log.

    Returns:
        Diagnoses with confidence > 0, best first (ties: higher severity first). Empty when no
        pattern or signal matched; see closest_issues for that case.
    """
    evidence: dict[str, list[Evidence]] = {}
    for issue in KNOWLEDGE_BASE:
        for pattern in issue.patterns:
            match = pattern.search(text)
            if match:
                evidence.setdefault(issue.id, []).append(Evidence(pattern.weight, pattern.means, _line_of(text, match)))
    seen_messages = set()
    for finding in [*signals_from_log(text), *signals]:
        if finding.message in seen_messages:
            continue
        seen_messages.add(finding.message)
        evidence.setdefault(finding.issue_id, []).append(Evidence(finding.weight, "live signal", finding.message))
    ranked = []
    for issue_id, items in evidence.items():
        miss = 1.0
        for item in items:
            miss *= 1.0 - item.weight
        items.sort(key=lambda e: -e.weight)
        ranked.append(Diagnosis(get_issue(issue_id), round(min(1.0 - miss, MAX_CONFIDENCE), 4), tuple(items)))
    ranked.sort(key=lambda d: (-d.confidence, -d.issue.severity, d.issue.id))
    return ranked


_WORD_RE = re.compile(r"[a-z][a-z0-9_]{2,}")
_STOP = frozenset("the and for with from that this are was not but has have into its when one all any use".split())


def _tokens(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if w not in _STOP}


def closest_issues(text: str, n: int = 3) -> list[tuple[Issue, float]]:
    """The ``n`` issues whose descriptions share the most words with ``text`` (Jaccard overlap).

    Args:
        text: the unmatched log or description.
        n: how many candidates.

    Returns:
        (issue, overlap in [0, 1]) pairs, best first; issues with no shared word are left out.
    """
    words = _tokens(text)
    scored = []
    for issue in KNOWLEDGE_BASE:
        vocab = _tokens(" ".join([issue.title, issue.description, *issue.symptoms, *issue.root_causes]))
        union = words | vocab
        score = len(words & vocab) / len(union) if union else 0.0
        if score > 0:
            scored.append((issue, round(score, 4)))
    scored.sort(key=lambda pair: (-pair[1], pair[0].id))
    return scored[:n]


def _evidence_lines(evidence: Sequence[Evidence]) -> list[str]:
    """One bullet per distinct log line, listing what each pattern matched there means."""
    by_line: dict[str, list[str]] = {}
    for e in evidence:
        by_line.setdefault(e.excerpt, []).append(f"{e.means} ({e.weight:.2f})")
    return [f"- `{line}`: {'; '.join(means)}" for line, means in by_line.items()]


def format_diagnosis(text: str, diagnoses: list[Diagnosis], top: int = 3) -> str:
    """Markdown for a ranked diagnosis, or 'no known issue matched' with the closest candidates."""
    if not diagnoses:
        lines = ["# Diagnosis", "", "No known issue matched."]
        candidates = closest_issues(text)
        if candidates:
            lines += ["", "Closest candidates by shared words (weak evidence):"]
            lines += [f"- `{issue.id}` {issue.title} (word overlap {score:.2f})" for issue, score in candidates]
        lines += ["", "Run `python -m harness diagnose --report-template LOGFILE` to file an issue."]
        return "\n".join(lines) + "\n"
    lines = ["# Diagnosis", ""]
    for rank, d in enumerate(diagnoses[:top], 1):
        lines += [
            f"## {rank}. {d.issue.title} (`{d.issue.id}`), confidence {d.confidence:.2f}",
            f"Category: {d.issue.category.value}; severity: {d.issue.severity.name}; phases: {d.issue.phases}",
            "",
            "Evidence:",
            *_evidence_lines(d.evidence),
            "",
            "Try, in order:",
            *[f"{i}. {s}" for i, s in enumerate(d.issue.solutions, 1)],
            "",
        ]
    if len(diagnoses) > top:
        lines.append("Also matched: " + ", ".join(f"`{d.issue.id}` ({d.confidence:.2f})" for d in diagnoses[top:]))
    return "\n".join(lines).rstrip() + "\n"


FIXTURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "qa", "fixtures")


def troubleshooting_coverage(fixtures_dir: str = FIXTURES_DIR) -> float:
    """Share of captured real failures whose expected issue ranks first (or, expected none, matches nothing).

    The captures come from ``scripts/capture_failures.py``, one or more per common issue; their
    ``MANIFEST.json`` says what each must be diagnosed as. This is the number behind the seed's
    "troubleshooting guide coverage for > 90% of common issues", with the list of common issues
    being the scenarios captured (so it measures the matching, not the choice of issues).

    Args:
        fixtures_dir: directory with ``MANIFEST.json`` and ``<name>.log`` files.

    Returns:
        a fraction in [0, 1].
    """
    manifest_path = os.path.join(fixtures_dir, "MANIFEST.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)["scenarios"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read {manifest_path} ({e}); run scripts/capture_failures.py") from None
    if not manifest:
        raise ValueError(f"{manifest_path} lists no captured failures")
    hits = 0
    for name, meta in manifest.items():
        with open(os.path.join(fixtures_dir, f"{name}.log"), errors="replace") as f:
            ranked = diagnose_text(f.read())
        hits += (ranked[0].issue.id if ranked else None) == meta["expect"]
    return hits / len(manifest)


# ---------------------------------------------------------------------------------------- guide and report
def guide_markdown() -> str:
    """The troubleshooting guide, generated from KNOWLEDGE_BASE: an index, then one section per issue."""
    lines = [
        "# Troubleshooting guide",
        "",
        "Generated by `python -m harness diagnose --guide` from `harness/troubleshoot.py`; edit the knowledge base, not this file.",
        "Run `python -m harness diagnose LOGFILE` to match a log against it.",
        "",
        "| issue | category | severity | phases |",
        "|---|---|---|---|",
    ]
    for issue in KNOWLEDGE_BASE:
        lines.append(f"| [{issue.title}](#{issue.id}) | {issue.category.value} | {issue.severity.name} | {issue.phases} |")
    for issue in KNOWLEDGE_BASE:
        lines += ["", f"<a id=\"{issue.id}\"></a>", f"## {issue.title}", "", issue.description, "",
                  f"Id `{issue.id}`; category {issue.category.value}; severity {issue.severity.name}; phases {issue.phases}.",
                  "", "### Symptoms", *[f"- {s}" for s in issue.symptoms],
                  "", "### Recognised messages", "| regex | means | weight |", "|---|---|---|",
                  *[f"| `{p.regex.replace('|', chr(92) + '|')}` | {p.means} | {p.weight:.2f} |" for p in issue.patterns],
                  "", "### Root causes", *[f"- {c}" for c in issue.root_causes],
                  "", "### Solutions", *[f"{i}. {s}" for i, s in enumerate(issue.solutions, 1)],
                  "", "### Prevention", *[f"- {p}" for p in issue.prevention]]
        if issue.related:
            lines += ["", "Related: " + ", ".join(f"[{r}](#{r})" for r in issue.related)]
    lines += [
        "", "## Live-signal thresholds", "",
        f"- Expert load imbalance: CV = std/mean of per-expert counts > {IMBALANCE_CV} and chi-square beyond its "
        f"{100 * (1 - IMBALANCE_P):.1f}% quantile (sampling noise ruled out).",
        f"- Routing collapse: mean load >= {COLLAPSE_MIN_MEAN:g} and >= {100 * COLLAPSE_DEAD_FRACTION:.0f}% of experts idle, "
        f"or the busiest 10% of experts take >= {100 * COLLAPSE_TOP_SHARE:.0f}% of assignments.",
        f"- Loss spike: loss > median of the previous {SPIKE_WINDOW} steps + {SPIKE_THRESHOLD:g} robust std "
        "(1.4826 * MAD), or a NaN/Inf loss.",
        f"- Input pipeline stall: more than {100 * INPUT_WAIT_LIMIT:.0f}% of step time waiting for data.",
        f"- FP8 e4m3: |x|/scale > {FP8_E4M3_MAX:g} overflows to NaN; 0 < |x|/scale < 2^-9 flushes to 0.",
    ]
    return "\n".join(lines) + "\n"


_PACKAGES = ("tensorflow-cpu", "tensorflow", "jax", "jaxlib", "flax", "numpy", "ml_dtypes", "asv", "safetensors")


def environment_info() -> dict[str, str]:
    """Versions of the stack and a description of the machine, without importing TensorFlow or JAX."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name != "tensorflow":  # tensorflow-cpu provides it
                info[name] = "not installed"
    mem = "unknown"
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    info["device"] = f"{platform.machine()} CPU, {os.cpu_count()} cores, {mem} RAM"
    gpus = "none found (nvidia-smi absent)"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
            gpus = out.replace("\n", "; ") or "none listed by nvidia-smi"
        except (OSError, subprocess.SubprocessError) as e:
            gpus = f"nvidia-smi failed: {e}"
    info["accelerators"] = gpus
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=os.path.dirname(os.path.abspath(__file__)))
        info["commit"] = commit.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "unknown"
    return info


def report_template(config: str = "tiny", log_text: str | None = None) -> str:
    """An issue report with the environment, the config and (given a log) its diagnosis filled in.

    Args:
        config: a preset name or JSON path accepted by ModelConfig.named.
        log_text: the failing log, or None for a blank error section.

    Returns:
        markdown text.
    """
    from harness.config import ConfigError, ModelConfig

    try:
        cfg_text = json.dumps(ModelConfig.named(config).to_dict(), indent=2, sort_keys=True)
    except ConfigError as e:
        cfg_text = f"(config {config!r} could not be loaded: {e})"
    env = environment_info()
    diagnoses = diagnose_text(log_text) if log_text else []
    category = diagnoses[0].issue.title if diagnoses else "[category]"
    tail = "\n".join(log_text.splitlines()[-40:]) if log_text else "[paste the full error message and traceback]"
    lines = [
        f"# Issue report: {category}",
        "",
        "## Issue description",
        "[What were you doing, and what went wrong?]",
        "",
        "## Environment",
        *[f"- **{k}**: {v}" for k, v in env.items()],
        "",
        f"## Model config (`{config}`)",
        "```json", cfg_text, "```",
        "",
        "## Error messages",
        "```", tail, "```",
        "",
        "## Automatic diagnosis",
        *([f"- `{d.issue.id}` {d.issue.title}: confidence {d.confidence:.2f}" for d in diagnoses[:3]]
          or ["- no known issue matched" if log_text else "- (no log attached)"]),
        "",
        "## Steps to reproduce",
        "1. [command]",
        "",
        "## Expected behaviour",
        "[...]",
        "",
        "## Actual behaviour",
        "[...]",
        "",
        "## Attempted solutions",
        "[Which of the guide's solutions did you try?]",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI ``python -m harness diagnose``; returns 0 on a match or written guide/template, 1 on no match, 2 on errors."""
    parser = argparse.ArgumentParser(prog="python -m harness diagnose", description="Diagnose a failure log against the knowledge base.")
    parser.add_argument("logfile", nargs="?", help="log file to diagnose, or - for stdin")
    parser.add_argument("--top", type=int, default=3, help="how many diagnoses to show (default 3)")
    parser.add_argument("--json", action="store_true", help="print the ranked diagnosis as JSON")
    parser.add_argument("--guide", nargs="?", const="-", metavar="PATH", help="write the markdown guide to PATH (default: print)")
    parser.add_argument("--report-template", action="store_true", help="print an issue report with the environment filled in")
    parser.add_argument("--config", default="tiny", help="config for the report template (preset or JSON path)")
    args = parser.parse_args(argv)

    if args.guide:
        text = guide_markdown()
        if args.guide == "-":
            sys.stdout.write(text)
        else:
            with open(args.guide, "w") as f:
                f.write(text)
            print(f"wrote {args.guide} ({len(KNOWLEDGE_BASE)} issues)")
        if not (args.logfile or args.report_template):
            return 0
    log_text = None
    if args.logfile:
        try:
            if args.logfile == "-":
                log_text = sys.stdin.read()
            else:
                with open(args.logfile, errors="replace") as f:
                    log_text = f.read()
        except OSError as e:
            print(f"diagnose: cannot read {args.logfile}: {e}", file=sys.stderr)
            return 2
    if args.report_template:
        sys.stdout.write(report_template(args.config, log_text))
        return 0
    if log_text is None:
        parser.print_usage(sys.stderr)
        print("diagnose: give a LOGFILE (or - for stdin), --guide or --report-template", file=sys.stderr)
        return 2
    diagnoses = diagnose_text(log_text)
    if args.json:
        payload = {
            "matched": bool(diagnoses),
            "diagnoses": [{"id": d.issue.id, "title": d.issue.title, "confidence": d.confidence,
                           "evidence": [e.excerpt for e in d.evidence]} for d in diagnoses[: args.top]],
            "closest": [] if diagnoses else [{"id": i.id, "overlap": s} for i, s in closest_issues(log_text)],
        }
        print(json.dumps(payload, indent=2))
    else:
        sys.stdout.write(format_diagnosis(log_text, diagnoses, args.top))
    return 0 if diagnoses else 1
