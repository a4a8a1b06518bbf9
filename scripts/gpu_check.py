#!/usr/bin/env python3
"""Check that the JAX path (the Flax reference) runs on a GPU and computes what it computes on CPU.

The developers' rule: when a task is lent a GPU machine, check that the TF and JAX paths also run on
GPU, without any test depending on it. The lent machine has JAX with CUDA but no TensorFlow, and a CUDA
TensorFlow wheel is far over the 64 MiB that can be carried there, so the TF side is compared only
through its CPU outputs: the GPU run checks the Flax reference against expectations that both models
computed here on CPU. Two modes:

    .venv/bin/python scripts/gpu_check.py --make-expected DIR     # here, on CPU: TF and Flax expectations
    python3 scripts/gpu_check.py --check DIR --out OUTDIR           # there, on the GPU (add --allow-cpu to dry-run)

DIR holds no weights: the canonical state (``benchmarks.common.canonical_state``, numpy only) is
regenerated from its seed on the GPU side, and its sha256 is checked against the one recorded here,
so a numpy that drew different numbers is caught instead of compared. Per config (``tiny``, ``bench``)
DIR holds the input tokens, the forward logits of TF, of Flax and of Flax in float64 (the oracle of
``harness.interop.equivalence_f64``), the greedy decode tokens and per-step logits (absorbed cache)
of both models, and the loss parts and per-tensor gradient norms of one batch, before and after one
AdamW step.

The equivalence part runs with ``jax_default_matmul_precision="highest"`` (fp32 matmuls in fp32) and
is judged by ``harness.interop.tolerances.TOLERANCES``, as the equivalence suite judges TF against
Flax; it is then repeated under JAX's default precision, which on NVIDIA GPUs since Ampere lets fp32
matmuls run in TF32 (10-bit mantissa), and shown as INFO: how far a user's default GPU run is off.
Last, informational GPU timings at ``bench`` (prefill, decode step, train step) and the peak device
memory. Every step runs in its own try/except, so one failure is reported and the rest still runs.
Exit status: 0 when every gating comparison passed, 1 otherwise, 2 for unusable arguments.

This file imports neither TensorFlow nor anything that imports it in ``--check`` mode (stdlib, numpy,
jax, flax/optax through ``reference``, ``harness.config``/``state``/``interop.rows``/``interop.tolerances``
and ``benchmarks.common``): ``tests/scripts/test_gpu_check.py`` checks that.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def _repo_root() -> Path:
    """The checkout holding ``reference/`` and ``harness/``: the script lives one level below it
    (``scripts/`` in the repository, ``.gpucheck/`` in the copy sent to the GPU machine)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "reference").is_dir() and (parent / "harness").is_dir():
            return parent
    raise SystemExit("gpu_check: no repository root (a folder with reference/ and harness/) above "
                     f"{Path(__file__).resolve()}; run the script from inside a checkout")


sys.path.insert(0, str(_repo_root()))

import numpy as np  # noqa: E402

CONFIGS = ("tiny", "bench")
SEED = 0                 # canonical_state's seed, the one the benchmarks use
FORWARD_SHAPE = {"tiny": (2, 16), "bench": (2, 32)}  # (B, T) of the forward pass and of the train batch
PROMPT_SHAPE = (2, 8)    # (B, T) of the decode prompt
DECODE_STEPS = 6         # greedy tokens generated (1 from the prefill, then decode steps)
TOKEN_SEEDS = {"forward": 11, "prompt": 12, "train": 13}
TF_NOTE = ("TF path NOT MEASURED on the GPU: the lent image has no tensorflow and no package registry, and a "
           "CUDA TensorFlow wheel exceeds the 64 MiB that can be carried to the machine. TF enters only through "
           "its CPU outputs in the expectations (the 'vs TF-CPU' rows).")
FORMAT = 1


def train_config():
    """AdamW with lr 1e-3 at step 0 (``warmup_steps=1``), the equivalence suite's train-step settings."""
    from harness.config import TrainConfig

    return TrainConfig(lr=1e-3, warmup_steps=1, total_steps=10, min_lr_ratio=0.1, weight_decay=0.1, b1=0.9,
                       b2=0.95, eps=1e-8, clip_norm=1.0)


def state_sha256(state: dict[str, np.ndarray]) -> str:
    """sha256 over the names, shapes and float32 bytes of a canonical state, in its order."""
    digest = hashlib.sha256()
    for name, value in state.items():
        digest.update(f"{name}{list(value.shape)}".encode())
        digest.update(np.ascontiguousarray(value, np.float32).tobytes())
    return digest.hexdigest()


def inputs(name: str, cfg) -> dict[str, np.ndarray]:
    """The token ids of one config: forward/train batch, and the decode prompt (int32)."""
    from benchmarks.common import tokens

    b, t = FORWARD_SHAPE[name]
    return {"forward_tokens": np.array(tokens(b, t, cfg.vocab_size, TOKEN_SEEDS["forward"])),
            "prompt": np.array(tokens(*PROMPT_SHAPE, cfg.vocab_size, TOKEN_SEEDS["prompt"])),
            "train_tokens": np.array(tokens(b, t, cfg.vocab_size, TOKEN_SEEDS["train"]))}


# ------------------------------------------------------------------ what both frameworks run (same public API)
def greedy(model, prompt: np.ndarray, steps: int, cache=None, follow: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy decoding with the absorbed cache: (tokens int32 [B, steps], logits [B, steps, V]); the first
    token comes from the prefill's last position, each later one from a decode step. ``follow`` [B, steps]:
    feed these tokens instead of the argmax (the float64 oracle walks the fp32 model's path)."""
    cache = model.new_cache(prompt.shape[0], "absorb") if cache is None else cache
    logits, cache = model.prefill(prompt, cache)
    rows = [np.asarray(logits)[:, -1]]  # [B, V]
    toks = [rows[-1].argmax(-1).astype(np.int32)]
    for i in range(steps - 1):
        logits, cache = model.decode_step(toks[-1] if follow is None else follow[:, i], cache)
        rows.append(np.asarray(logits))
        toks.append(rows[-1].argmax(-1).astype(np.int32))
    return np.stack(toks, 1), np.stack(rows, 1)


def float64_decode_logits(model, prompt: np.ndarray, follow: np.ndarray) -> np.ndarray:
    """The Flax reference's decode logits in float64 along ``follow``'s tokens: weights and cache buffers
    widened under ``jax.enable_x64``, as ``harness.interop.equivalence_f64`` does for the forward pass.
    At ``tiny`` they equal the float64 forward logits of the whole sequence to ~1e-15 (checked by hand)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    widen = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    with jax.enable_x64(True):
        twin = copy.copy(model)  # a shallow copy: the fp32 model keeps its own weights
        twin.params, twin.biases = jax.tree.map(widen, model.params), jax.tree.map(widen, model.biases)
        cache = model.new_cache(prompt.shape[0], "absorb")
        cache = dataclasses.replace(cache, layers=jax.tree.map(widen, cache.layers))
        return greedy(twin, prompt, follow.shape[1], cache, follow)[1].astype(np.float64)


def flax_train(model, toks: np.ndarray) -> dict[str, Any]:
    """Flax: loss parts, per-tensor gradient norms, and the loss after one AdamW step (the model is unchanged)."""
    from reference import train

    loss, parts = train.total_loss(model, toks)
    grads = train.gradients(model, toks)
    stepped = copy.copy(model)  # train_step replaces the copy's params; model keeps the originals
    tc = train_config()
    _, loss_before, _ = train.train_step(stepped, train.init_optimizer(stepped, tc), toks, 0, tc)
    after, _ = train.total_loss(stepped, toks)
    return {"parts": {"loss": float(loss), **{k: float(v) for k, v in parts.items()}},
            "loss_step": float(loss_before), "loss_after": float(after), **grad_stats(grads)}


def grad_stats(grads: dict[str, np.ndarray]) -> dict[str, Any]:
    names = sorted(grads)
    return {"grad_names": names,
            "grad_norm": np.array([np.linalg.norm(np.asarray(grads[n], np.float64)) for n in names]),
            "grad_max": np.array([np.abs(np.asarray(grads[n], np.float64)).max() for n in names]),
            "grad_size": np.array([np.asarray(grads[n]).size for n in names], np.int64)}


# ------------------------------------------------------------------ --make-expected (CPU, TF and Flax)
def make_expected(out: Path, configs: list[str], force: bool) -> int:
    import jax

    from benchmarks.common import canonical_state
    from harness.config import ModelConfig
    from harness.interop.bridge import build_model, tf_loss_and_gradients
    from harness.interop.equivalence_f64 import float64_logits
    from tf_impl.train import Trainer

    if out.exists() and any(out.iterdir()) and not force:
        raise SystemExit(f"gpu_check: {out} exists and is not empty; choose another folder or pass --force "
                         "to overwrite the expectations in it")
    if jax.devices()[0].platform != "cpu":
        raise SystemExit("gpu_check: --make-expected computes the CPU expectations; run it with JAX_PLATFORMS=cpu")
    jax.config.update("jax_default_matmul_precision", "highest")
    out.mkdir(parents=True, exist_ok=True)
    import flax
    import tensorflow as tf

    meta: dict[str, Any] = {"format": FORMAT, "seed": SEED, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "versions": {"numpy": np.__version__, "jax": jax.__version__, "flax": flax.__version__,
                                         "tensorflow": tf.__version__, "python": platform.python_version()},
                            "configs": {}}
    for name in configs:
        t0 = time.perf_counter()
        cfg = ModelConfig.named(name)
        state = dict(canonical_state(cfg, SEED))
        data = inputs(name, cfg)
        tfm = build_model("tf", cfg, state, compiled=False)
        fxm = build_model("flax", cfg, state)
        data["logits_tf"] = np.asarray(tfm(data["forward_tokens"]), np.float32)
        data["logits_flax"] = np.asarray(fxm(data["forward_tokens"]), np.float32)
        data["logits_f64"] = float64_logits(fxm, data["forward_tokens"])[0][0]
        for side, model in (("tf", tfm), ("flax", fxm)):
            data[f"decode_tokens_{side}"], data[f"decode_logits_{side}"] = greedy(model, data["prompt"], DECODE_STEPS)
        data["decode_logits_f64"] = float64_decode_logits(fxm, data["prompt"], data["decode_tokens_flax"])
        flax_side = flax_train(fxm, data["train_tokens"])
        parts_t, grads_t = tf_loss_and_gradients(tfm, data["train_tokens"])
        stepped = build_model("tf", cfg, state, compiled=False)
        rec = Trainer(stepped, cfg, train_config(), progress=False).train_step(data["train_tokens"])
        after_t, _ = tf_loss_and_gradients(stepped, data["train_tokens"], with_gradients=False)
        tf_side = {"parts": parts_t, "loss_step": rec["loss"], "loss_after": after_t["loss"], **grad_stats(grads_t)}
        if tf_side["grad_names"] != flax_side["grad_names"]:
            raise SystemExit(f"gpu_check: TF and Flax gradients name different tensors at {name}")
        for side, values in (("tf", tf_side), ("flax", flax_side)):
            for key in ("grad_norm", "grad_max"):
                data[f"{key}_{side}"] = values[key]
        data["grad_size"] = flax_side["grad_size"]
        floor = lambda a, key: float(np.abs(np.asarray(a, np.float64) - data[key]).max())  # noqa: E731
        meta["configs"][name] = {
            "state_sha256": state_sha256(state), "grad_names": flax_side["grad_names"],
            "train": {side: {k: v[k] for k in ("parts", "loss_step", "loss_after")}
                      for side, v in (("tf", tf_side), ("flax", flax_side))},
            # The CPU references' own fp32 error, measured here: a GPU-vs-reference row cannot decide where
            # the reference alone is more than half the tolerance from exact (see equivalence_f64).
            "floor": {f"{what}_{side}": floor(data[f"{what}_{side}"], f"{what}_f64")
                      for what in ("logits", "decode_logits") for side in ("tf", "flax")},
            "decode_tokens_equal_tf_flax": bool((data["decode_tokens_tf"] == data["decode_tokens_flax"]).all()),
            # The smallest gap between the best and second-best logit over the greedy steps: a GPU run whose
            # tokens differ although its logits are within this of the CPU ones met a near-tie, not a bug.
            "decode_min_margin": float(np.diff(np.sort(data["decode_logits_flax"], -1)[..., -2:], axis=-1).min()),
        }
        np.savez_compressed(out / f"{name}.npz", **data)
        print(f"{name}: expectations written ({time.perf_counter() - t0:.0f} s); distances from float64 "
              f"{meta['configs'][name]['floor']}", flush=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {total / 2**20:.1f} MiB", flush=True)
    return 0


# ------------------------------------------------------------------ --check (GPU, Flax only)
class Report:
    """Collects the steps' results; ``step`` runs one in try/except so a failure never stops the rest."""

    def __init__(self, out: Path):
        self.out = out
        self.data: dict[str, Any] = {"tf": TF_NOTE, "ok": None, "complete": False, "steps": {}, "rows": [],
                                     "errors": []}

    def save(self) -> None:
        """Write gpu_check.json now: after every step, so a run killed at its time limit still leaves its results."""
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=_jsonable) + "\n")

    def step(self, label: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, and the next step runs
            message = f"{type(exc).__name__}: {exc}"
            self.data["errors"].append({"step": label, "error": message,
                                        "traceback": traceback.format_exc(limit=8)})
            print(f"    FAILED: {message}", flush=True)
            result = None
        self.data["steps"][label] = round(time.perf_counter() - t0, 2)
        self.save()
        return result

    def row(self, config: str, precision: str, what: str, a, b, key: str, gate: bool = True, note: str = "") -> None:
        """``a`` (GPU) against ``b`` (a CPU expectation) judged by ``TOLERANCES[key]``; INFO rows never fail."""
        from harness.interop.rows import compare_row

        r = compare_row(what, a, b, key, note=note)
        verdict = "INFO" if not gate else "PASS" if r.passed else "FAIL"
        self.data["rows"].append({"config": config, "precision": precision, "what": what, "verdict": verdict,
                                  "ok": r.passed, "max_abs": r.max_abs_err, "max_rel": r.max_rel_err,
                                  "over_tolerance": r.error_over_tolerance, "tolerance": f"{key}: {r.tolerance.text()}",
                                  "note": r.note})
        print(f"    {verdict:4} {config:5} {precision:7} {what:44} max_abs {r.max_abs_err:.2e}  max_rel "
              f"{r.max_rel_err:.2e}  ({key}: {r.tolerance.text()}){'  ' + r.note if r.note else ''}", flush=True)

    def exact(self, config: str, precision: str, what: str, a, b, gate: bool = True, note: str = "") -> None:
        a, b = np.asarray(a), np.asarray(b)
        same = a.shape == b.shape and bool((a == b).all())
        verdict = "INFO" if not gate else "PASS" if same else "FAIL"
        differ = int((a != b).sum()) if a.shape == b.shape else -1
        self.data["rows"].append({"config": config, "precision": precision, "what": what, "verdict": verdict,
                                  "ok": same, "differing": differ, "tolerance": "identical", "note": note})
        print(f"    {verdict:4} {config:5} {precision:7} {what:44} {'identical' if same else f'{differ} differ'}"
              f"{'  (' + note + ')' if note and not same else ''}", flush=True)


def check(expected: Path, out: Path, configs: list[str], precisions: list[str], allow_cpu: bool, timings: bool,
          force: bool, budget_s: float) -> int:
    started = time.perf_counter()
    meta = json.loads((expected / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise SystemExit(f"gpu_check: {expected}/meta.json has format {meta.get('format')}, this script reads "
                         f"{FORMAT}; make the expectations again with this script's --make-expected")
    missing = [c for c in configs if c not in meta["configs"]]
    if missing:
        raise SystemExit(f"gpu_check: {expected} has no expectations for {missing}; it has {sorted(meta['configs'])}")
    target = out / "gpu_check.json"
    if target.exists() and not force:
        raise SystemExit(f"gpu_check: {target} exists; choose another --out or pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    print(TF_NOTE, flush=True)
    report.data["expected_meta"] = {k: v for k, v in meta.items() if k != "configs"}

    def environment():
        import jax

        dev = jax.devices()[0]
        try:
            import flax
            flax_version = flax.__version__
        except Exception as exc:  # noqa: BLE001
            flax_version = f"unavailable: {exc}"
        env = {"platform": dev.platform, "device": str(dev), "device_kind": getattr(dev, "device_kind", "?"),
               "n_devices": len(jax.devices()), "jax": jax.__version__, "flax": flax_version, "numpy": np.__version__,
               "python": platform.python_version(), "default_backend": jax.default_backend(),
               "repo_root": str(_repo_root())}
        try:
            import reference
            env["reference_module"] = reference.__file__  # the checkout's, not an installed copy
        except Exception as exc:  # noqa: BLE001 - reported; the config steps will fail with the details
            env["reference_module"] = f"import failed: {type(exc).__name__}: {exc}"
        print(f"    {env}", flush=True)
        report.data["environment"] = env
        if dev.platform != "gpu" and not allow_cpu:
            raise RuntimeError(f"JAX runs on {dev.platform}, not gpu (pass --allow-cpu only for a CPU dry run)")
        return env

    env = report.step("environment", environment)
    if env is None and not allow_cpu:
        return finish(report, out)

    for name in configs:
        check_config(report, expected, meta["configs"][name], name, precisions)
    if timings:
        # Default precision first (what a user's GPU run gets); the highest-precision timings are the first
        # thing dropped when the run nears its time budget (the lent machine's minutes are few).
        for precision in sorted(precisions, key=lambda p: p != "default"):
            left = budget_s - (time.perf_counter() - started)
            if left < 60:
                report.data.setdefault("skipped", []).append(f"timings bench ({precision}): {left:.0f} s of the "
                                                             f"{budget_s:.0f} s budget left")
                print(f"    SKIPPED timings bench ({precision}): {left:.0f} s of the budget left", flush=True)
                continue
            report.step(f"timings bench ({precision} precision)", lambda: bench_timings(report, precision))
    report.step("peak device memory", lambda: peak_memory(report))
    report.data["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.data["tensorflow_imported"] = sys.modules.get("tensorflow") is not None  # None: blocked (a test)
    return finish(report, out)


def set_precision(precision: str) -> None:
    import jax

    jax.config.update("jax_default_matmul_precision", None if precision == "default" else precision)


def check_config(report: Report, expected: Path, meta: dict, name: str, precisions: list[str]) -> None:
    from benchmarks.common import canonical_state
    from harness.config import ModelConfig

    ctx: dict[str, Any] = {}

    def load():
        exp = dict(np.load(expected / f"{name}.npz"))
        cfg = ModelConfig.named(name)
        state = dict(canonical_state(cfg, SEED))
        sha = state_sha256(state)
        report.data.setdefault("state_sha256", {})[name] = {"here": sha, "expected": meta["state_sha256"]}
        report.exact(name, "-", "canonical state regenerated from the seed", np.array(sha == meta["state_sha256"]),
                     np.array(True))
        from reference import Transformer

        model = Transformer(cfg, seed=SEED)
        model.load_state_dict(state)
        ctx.update(exp=exp, cfg=cfg, model=model)

    report.step(f"{name}: load expectations, regenerate the state, build the Flax model", load)
    if "model" not in ctx:
        return
    exp, model, floor = ctx["exp"], ctx["model"], meta["floor"]

    for precision in precisions:
        gate = precision == "highest"
        tag = "" if gate else " (INFO: default precision, TF32 on NVIDIA GPUs)"

        def versus_cpu(what: str, key: str, got: np.ndarray) -> None:
            """``got`` against the float64 oracle (gating), then against Flax-CPU and TF-CPU. A row against a CPU
            side decides only where both sides are within half the tolerance of float64 (equivalence_f64's
            floor rule, applied to both: the GPU's own fp32 error is as large as the CPU's at bench)."""
            own = float(np.abs(got.astype(np.float64) - exp[f"{key}_f64"]).max())
            half = 0.5 * _tolerance(key).atol  # logits and decode_logits: atol only (rtol 0)
            report.row(name, precision, f"{what} vs float64 oracle (CPU)", got, exp[f"{key}_f64"], key, gate)
            for side in ("flax", "tf"):
                ref = floor[f"{key}_{side}"]
                decides = ref <= half and own <= half
                report.row(name, precision, f"{what} vs {side.upper()}-CPU", got, exp[f"{key}_{side}"], key,
                           gate and decides, "" if decides else f"cannot decide: this run is {own:.1e} and "
                           f"{side.upper()}-CPU {ref:.1e} from float64; the oracle row decides")

        def forward():
            set_precision(precision)
            versus_cpu("forward logits", "logits", np.asarray(model(exp["forward_tokens"])))

        def decode():
            set_precision(precision)
            toks, logits = greedy(model, exp["prompt"], DECODE_STEPS)
            for side in ("flax", "tf"):
                report.exact(name, precision, f"greedy decode tokens vs {side.upper()}-CPU", toks,
                             exp[f"decode_tokens_{side}"], gate,
                             f"smallest top-1/top-2 logit gap on CPU: {meta['decode_min_margin']:.1e}")
            versus_cpu("decode logits", "decode_logits", logits)

        def training():
            set_precision(precision)
            got = flax_train(model, exp["train_tokens"])
            for side in ("flax", "tf"):
                ref = meta["train"][side]
                for part in ("loss", "ce", "mtp", "balance"):
                    report.row(name, precision, f"loss part {part} vs {side.upper()}-CPU", got["parts"][part],
                               ref["parts"][part], "loss", gate)
                # |norm(a) - norm(b)| <= norm(a - b) <= sqrt(n) * (atol + rtol * max|b|) when every entry is
                # within the gradients tolerance: a bound derived from the table, not a new tolerance.
                tol = _tolerance("gradients")
                bound = np.sqrt(exp["grad_size"]) * (tol.atol + tol.rtol * exp[f"grad_max_{side}"])
                over = np.abs(got["grad_norm"] - exp[f"grad_norm_{side}"]) / bound
                worst = int(over.argmax())
                ok = bool(np.isfinite(got["grad_norm"]).all() and (over <= 1).all())
                verdict = "INFO" if not gate else "PASS" if ok else "FAIL"
                report.data["rows"].append({"config": name, "precision": precision, "verdict": verdict, "ok": ok,
                                            "what": f"gradient norms ({len(over)} tensors) vs {side.upper()}-CPU",
                                            "over_tolerance": float(over.max()), "worst": meta["grad_names"][worst],
                                            "tolerance": "gradients, as sqrt(n)*(atol + rtol*max|g|) on the norm"})
                print(f"    {verdict:4} {name:5} {precision:7} {'gradient norms vs ' + side.upper() + '-CPU':44} worst "
                      f"{float(over.max()):.2e} of its bound ({meta['grad_names'][worst]})", flush=True)
                report.row(name, precision, f"loss after one AdamW step vs {side.upper()}-CPU", got["loss_after"],
                           ref["loss_after"], "loss", False,
                           "INFO: each side's own update; AdamW amplifies gradient ulps near eps (step_floor)")

        report.step(f"{name}: forward{tag}", forward)
        report.step(f"{name}: greedy decode{tag}", decode)
        report.step(f"{name}: loss, gradients, one train step{tag}", training)
    set_precision("default")


def _tolerance(key: str):
    from harness.interop.tolerances import TOLERANCES

    return TOLERANCES[key]


def bench_timings(report: Report, precision: str, repeats: int = 10) -> None:
    """Median seconds of a few calls after warm-up at ``bench`` (informational: one GPU, one run)."""
    import jax

    from benchmarks import common
    from reference import Transformer
    from reference import train

    set_precision(precision)
    cfg = common.config("bench")
    model = Transformer(cfg, seed=SEED)
    model.load_state_dict(dict(common.canonical_state(cfg, SEED)))
    toks = common.tokens(4, 128, cfg.vocab_size)
    tc = train_config()
    state = {"opt": train.init_optimizer(model, tc), "step": 0}
    stepped = copy.copy(model)

    def train_call():
        state["opt"], loss, _ = train.train_step(stepped, state["opt"], toks, state["step"], tc)
        state["step"] += 1
        jax.block_until_ready((loss, state["opt"], stepped.params, stepped.biases))

    calls = {"prefill B=8 T=256 (absorb)": common.prefill_call("flax-jit", model, common.BATCH, common.PROMPT_LEN),
             "decode step B=8, 256 cached (absorb)": common.decode_call("flax-jit", model, common.BATCH,
                                                                        common.PROMPT_LEN, "absorb"),
             "train step B=4 T=128 (AdamW)": train_call}
    out = report.data.setdefault("timings", {}).setdefault(precision, {})
    for label, call in calls.items():
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        common.warm_up(call, 2)
        samples = [common.seconds(call) for _ in range(repeats)]
        stats = jax.devices()[0].memory_stats() or {}
        out[label] = {"median_s": statistics.median(samples), "min_s": min(samples), "first_call_s": first,
                      "repeats": repeats, "peak_bytes_in_use_so_far": stats.get("peak_bytes_in_use")}
        print(f"    {precision:7} {label:40} median {statistics.median(samples) * 1e3:9.3f} ms  (first call incl. "
              f"compile {first:.1f} s)", flush=True)
    set_precision("default")


def peak_memory(report: Report) -> None:
    import jax

    stats = jax.devices()[0].memory_stats()
    keep = {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit") if stats and k in stats}
    report.data["device_memory"] = keep or "memory_stats() not available on this device"
    print(f"    {keep or 'memory_stats() not available on this device'}", flush=True)


def finish(report: Report, out: Path) -> int:
    rows = report.data["rows"]
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    ok = not failed and not report.data["errors"] and any(r["verdict"] == "PASS" for r in rows)
    report.data["ok"] = ok
    report.data["complete"] = True
    report.data["summary"] = {"PASS": sum(r["verdict"] == "PASS" for r in rows), "FAIL": len(failed),
                              "INFO": sum(r["verdict"] == "INFO" for r in rows), "errors": len(report.data["errors"])}
    report.save()
    print(f"\nSUMMARY: {'OK' if ok else 'NOT OK'}  {report.data['summary']}", flush=True)
    for r in failed:
        print(f"  FAIL {r['config']} {r['precision']} {r['what']}: {r.get('max_abs', r.get('differing'))}", flush=True)
    for e in report.data["errors"]:
        print(f"  ERROR in {e['step']}: {e['error']}", flush=True)
    for r in rows:  # the precision finding: distance from exact at highest vs default (TF32 on NVIDIA GPUs)
        if "float64 oracle" in r["what"]:
            print(f"  {r['config']:5} {r['precision']:7} {r['what']:40} max_abs {r['max_abs']:.2e} ({r['verdict']})",
                  flush=True)
    print(f"  {TF_NOTE}\n  written: {out / 'gpu_check.json'}", flush=True)
    return 0 if ok else 1


def _jsonable(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--make-expected", metavar="DIR", type=Path, help="write CPU expectations (TF and Flax) to DIR")
    mode.add_argument("--check", metavar="DIR", type=Path, help="check JAX on the GPU against the expectations in DIR")
    parser.add_argument("--out", type=Path, help="--check: folder for gpu_check.json")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated presets (default: tiny,bench)")
    parser.add_argument("--allow-cpu", action="store_true", help="--check: accept a CPU backend (a dry run)")
    parser.add_argument("--precisions", default="highest,default",
                        help="--check: matmul precisions to run (highest gates; default is INFO)")
    parser.add_argument("--no-timings", action="store_true", help="--check: skip the bench timings")
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="--check: skip the optional highest-precision timings once less than 60 s of this is left")
    parser.add_argument("--force", action="store_true", help="overwrite existing expectations / gpu_check.json")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        parser.error(f"--configs {args.configs!r}: use a comma-separated subset of {','.join(CONFIGS)}")
    precisions = [p for p in args.precisions.split(",") if p]
    if not precisions or any(p not in ("highest", "default") for p in precisions):
        parser.error(f"--precisions {args.precisions!r}: use a comma-separated subset of highest,default")
    if args.make_expected is None:
        if args.out is None:
            parser.error("--check needs --out OUTDIR (the folder for gpu_check.json)")
        if not (args.check / "meta.json").is_file():
            parser.error(f"--check {args.check}: no meta.json there; make the expectations with --make-expected first")
    import jax

    # Restored at the end: a caller's process (a test) keeps its setting.
    before = getattr(jax.config, "jax_default_matmul_precision", None)
    try:
        if args.make_expected is not None:
            return make_expected(args.make_expected, configs, args.force)
        return check(args.check, args.out, configs, precisions, args.allow_cpu, not args.no_timings, args.force,
                     args.budget_s)
    finally:
        jax.config.update("jax_default_matmul_precision", before)


if __name__ == "__main__":
    sys.exit(main())
