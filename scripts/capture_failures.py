"""Provoke each known failure for real and keep its output as a fixture for the troubleshooter.

Every scenario is a small Python program run in its own subprocess (bounded by a timeout and,
where the failure is an allocation, by RLIMIT_AS or by asking for an absurd tensor that the
allocator refuses at once). Its combined stdout/stderr, trimmed to the tail and with machine paths
replaced by ``<repo>``/``<tmp>``, becomes ``tests/qa/fixtures/<name>.log``; ``MANIFEST.json`` records
which knowledge-base issue each log must be diagnosed as and its exit status, and the environment
(library versions, machine, commit) of the latest capture run.

    .venv/bin/python scripts/capture_failures.py            # all scenarios (about 3 minutes on 2 cores)
    .venv/bin/python scripts/capture_failures.py --only tf_oom jax_oom
    .venv/bin/python scripts/capture_failures.py --list

Every scenario must fail (non-zero exit); one that does not is reported and the script exits 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from harness.troubleshoot import environment_info  # noqa: E402 (needs the repo on the path when run as a script)

FIXTURES = os.path.join(REPO, "tests", "qa", "fixtures")
TAIL_LINES = 45
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Scenario:
    """A program that provokes one failure, the issue it must be diagnosed as, and its limits."""

    name: str
    expect: str | None  # knowledge-base issue id; None = must match no known issue
    what: str
    code: str
    address_space_gib: float | None = None
    timeout_s: int = 240


SCENARIOS = (
    Scenario("tf_oom", "out_of_memory", "TF allocates a [2^20, 2^20, 64] float tensor (256 TiB)", """
        import tensorflow as tf
        attn_scores = tf.zeros([2**20, 2**20, 64])  # [T, S, N] for a 1M-token context
    """),
    Scenario("jax_oom", "out_of_memory", "JAX allocates a (2^20, 2^20, 64) float array", """
        import jax.numpy as jnp
        attn_scores = jnp.zeros((2**20, 2**20, 64)).block_until_ready()
    """),
    Scenario("numpy_oom_rlimit", "out_of_memory", "numpy allocates 8 GiB under RLIMIT_AS = 2 GiB", """
        import numpy as np
        state = np.ones((1 << 15, 1 << 15))  # 8 GiB of float64
    """, address_space_gib=2.0),
    Scenario("tf_nan_loss", "nan_inf_loss", "TF linear regression with learning rate 5 diverges; check_numerics stops it", """
        import tensorflow as tf
        tf.random.set_seed(0)
        x = tf.random.normal([64, 8])
        y = tf.reduce_sum(x, -1, keepdims=True)
        w = tf.Variable(tf.zeros([8, 1]))
        for step in range(500):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((x @ w - y) ** 2)
            tf.debugging.check_numerics(loss, "training loss")
            print(f"step {step} loss={loss.numpy():.6g}", flush=True)
            w.assign_sub(5.0 * tape.gradient(loss, w))  # learning rate far too high
    """),
    Scenario("jax_nan_loss", "nan_inf_loss", "JAX naive softmax cross-entropy on large logits under jax_debug_nans", """
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_debug_nans", True)

        @jax.jit
        def loss_fn(logits, labels):
            probs = jnp.exp(logits) / jnp.sum(jnp.exp(logits), -1, keepdims=True)  # overflows: inf / inf
            return -jnp.mean(jnp.log(jnp.take_along_axis(probs, labels[:, None], -1)))

        logits = jax.random.normal(jax.random.key(0), (4, 16)) * 200.0
        print("loss", loss_fn(logits, jnp.arange(4)))
    """),
    Scenario("tf_fp8_overflow", "fp8_range", "TF casts activations with outliers to float8_e4m3fn without a scale", """
        import sys
        import tensorflow as tf
        from tensorflow.python.framework.dtypes import float8_e4m3fn
        from harness.troubleshoot import diagnose_fp8_range

        act = tf.random.stateless_normal([4, 128], seed=[0, 0]) * 300.0  # [M, D] activations with outliers
        for finding in diagnose_fp8_range(act.numpy(), scale=1.0):
            print(finding.message, flush=True)
        dequant = tf.cast(tf.cast(act, float8_e4m3fn), tf.float32)  # no block scale: > 448 becomes NaN
        tf.debugging.check_numerics(dequant, "dequantized activations")
    """),
    Scenario("jax_fp8_overflow", "fp8_range", "JAX casts values > 448 to float8_e4m3fn under jax_debug_nans", """
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_debug_nans", True)

        @jax.jit
        def quantize(x):
            return x.astype(jnp.float8_e4m3fn)  # no block scale

        print(quantize(jnp.array([1.0, 300.0, 1000.0])))
    """),
    Scenario("tf_xla_py_function", "xla_compilation", "tf.function(jit_compile=True) around tf.py_function", """
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(x):
            y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
            return y + 1.0

        step(tf.ones([2]))
    """),
    Scenario("jax_jit_traced_shape", "xla_compilation", "jax.jit of a mask whose shape is a traced argument", """
        import jax
        import jax.numpy as jnp

        @jax.jit
        def causal_mask(seq_len):
            return jnp.tril(jnp.ones((seq_len, seq_len)))

        causal_mask(8)
    """),
    Scenario("tf_matmul_shape", "shape_mismatch", "TF x @ W with W stored [out, in] and not transposed", """
        import tensorflow as tf
        x = tf.ones([2, 64])        # [M, D]
        wq_a = tf.ones([32, 64])    # [Q, D], canonical [out, in]
        q = tf.matmul(x, wq_a)      # should be transpose_b=True
    """),
    Scenario("jax_dot_shape", "shape_mismatch", "jnp.dot(x, W) with W stored [out, in] and not transposed", """
        import jax.numpy as jnp
        x = jnp.ones((2, 64))       # [M, D]
        wq_a = jnp.ones((32, 64))   # [Q, D], canonical [out, in]
        q = jnp.dot(x, wq_a)        # should be x @ wq_a.T
    """),
    Scenario("config_error", "config_mismatch", "ModelConfig.tiny(n_activated_experts=16) with 8 routed experts", """
        from harness.config import ModelConfig
        cfg = ModelConfig.tiny(n_activated_experts=16)
    """),
    Scenario("state_mismatch", "config_mismatch", "a tiny checkpoint loaded under a config with 10 routed experts", """
        import os, tempfile
        import numpy as np
        from harness.config import ModelConfig
        from harness.io import load_safetensors, save_safetensors
        from harness.state import check_state, expected_shapes

        path = os.path.join(tempfile.mkdtemp(), "tiny.safetensors")
        save_safetensors({k: np.zeros(s, np.float32) for k, s in expected_shapes(ModelConfig.tiny()).items()}, path)
        check_state(load_safetensors(path), ModelConfig.tiny(n_routed_experts=10), source=path)
    """),
    Scenario("checkpoint_truncated", "checkpoint_corruption", "a saved tiny checkpoint truncated to 60% and loaded", """
        import os, tempfile
        import numpy as np
        from harness.config import ModelConfig
        from harness.io import load_safetensors, save_safetensors
        from harness.state import expected_shapes

        path = os.path.join(tempfile.mkdtemp(), "step_1000.safetensors")
        save_safetensors({k: np.zeros(s, np.float32) for k, s in expected_shapes(ModelConfig.tiny()).items()}, path)
        os.truncate(path, int(os.path.getsize(path) * 0.6))  # an interrupted copy
        load_safetensors(path)
    """),
    Scenario("moe_collapse", "moe_routing_collapse", "tiny-config sigmoid gate with a gate bias skewed to experts 0 and 1", """
        import sys
        import numpy as np
        from harness.config import ModelConfig
        from harness.troubleshoot import diagnose_expert_load

        cfg = ModelConfig.tiny()
        E, K, G = cfg.n_routed_experts, cfg.n_activated_experts, cfg.n_expert_groups
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1000, cfg.dim)).astype(np.float32)                 # [M, D]
        weight = rng.standard_normal((E, cfg.dim)).astype(np.float32) * cfg.dim**-0.5  # [E, D]
        bias = np.zeros(E, np.float32)
        bias[:2] = 10.0  # a broken bias update pushed two experts far up
        scores = 1.0 / (1.0 + np.exp(-(x @ weight.T)))                              # [M, E]
        select = (scores + bias).reshape(len(x), G, E // G)                          # [M, G, E/G]
        group_score = np.sort(select, -1)[..., -2:].sum(-1)                          # [M, G]
        keep = np.argsort(-group_score, -1)[:, : cfg.n_limited_groups]               # [M, kept groups]
        mask = np.full_like(group_score, -np.inf)
        np.put_along_axis(mask, keep, 0.0, -1)
        masked = (select + mask[..., None]).reshape(len(x), E)                       # [M, E]
        indices = np.argsort(-masked, -1)[:, :K]                                     # [M, K]
        load = np.bincount(indices.reshape(-1), minlength=E)
        print(f"step 120 layer 1 expert_load={load.tolist()}", flush=True)
        findings = diagnose_expert_load(load, layer=1)
        for finding in findings:
            print(finding.message, flush=True)
        sys.exit(1 if findings else 0)
    """),
    Scenario("slow_input_pipeline", "slow_input_pipeline", "tf.data map with a 20 ms py_function, no parallelism, no prefetch", """
        import os, time
        import numpy as np
        import tensorflow as tf
        from harness.troubleshoot import diagnose_input_pipeline

        def tokenize(i):
            time.sleep(0.02)  # stands in for Python-side tokenisation
            return np.full([64], i, np.int32)

        ds = tf.data.Dataset.range(64).map(lambda i: tf.py_function(tokenize, [i], tf.int32)).batch(4)
        w = tf.ones([64, 64])
        it = iter(ds)
        wait = total = 0.0
        for step in range(15):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            out = tf.matmul(tf.cast(batch, tf.float32), w).numpy()  # the "train step"
            t2 = time.perf_counter()
            if step >= 3:  # skip warm-up
                wait, total = wait + (t1 - t0), total + (t2 - t0)
            print(f"step {step} data_wait={1000 * (t1 - t0):.1f}ms compute={1000 * (t2 - t1):.1f}ms", flush=True)
        findings = diagnose_input_pipeline(wait, total)
        for finding in findings:
            print(finding.message, flush=True)
        os._exit(1 if findings else 0)  # sys.exit can hang joining tf.data's py_function threads
    """),
    Scenario("tf_jax_rope_divergence", "tf_jax_divergence", "RoPE on interleaved pairs in TF but on halves in JAX", """
        import numpy as np
        import tensorflow as tf
        import jax.numpy as jnp

        x = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(np.float32)   # [B, T, R]
        freqs = 10000.0 ** (-np.arange(0, 8, 2) / 8)                                 # [R/2]
        angles = np.arange(4)[:, None] * freqs[None, :]                              # [T, R/2]
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

        def rope_tf(x):  # interleaved pairs (0,1),(2,3)...: DeepSeek-V3's convention
            pairs = tf.reshape(x, [1, 4, 4, 2])                                      # [B, T, R/2, 2]
            a, b = pairs[..., 0], pairs[..., 1]
            return tf.reshape(tf.stack([a * cos - b * sin, a * sin + b * cos], -1), [1, 4, 8])

        def rope_jax(x):  # halves (0,4),(1,5)...: the GPT-NeoX convention, wrong here
            a, b = x[..., :4], x[..., 4:]
            return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

        np.testing.assert_allclose(rope_tf(x).numpy(), np.asarray(rope_jax(jnp.asarray(x))), rtol=1e-5, atol=1e-6,
                                   err_msg="rope: tf_impl vs reference (tiny)")
    """),
    Scenario("missing_module", "missing_dependency", "import of a package that is not installed", """
        import tensorflow_addons as tfa
    """),
    Scenario("unknown_value_error", None, "an unrelated ValueError (must match no known issue)", """
        n_steps = int("12 steps")
    """),
)


def _limits(address_space_gib: float | None):
    def apply() -> None:
        if address_space_gib is not None:
            limit = int(address_space_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _trim(text: str, tmpdir: str) -> str:
    text = text.replace(tmpdir, "<tmp>").replace(REPO, "<repo>")
    lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
    while len("\n".join(lines)) > TAIL_CHARS and len(lines) > 1:
        lines.pop(0)
    return "\n".join(lines) + "\n"


def run_scenario(scenario: Scenario) -> tuple[int, str]:
    """Run one scenario in a subprocess; returns (exit status, trimmed combined output)."""
    with tempfile.TemporaryDirectory(prefix="capture-") as tmpdir:
        script = os.path.join(tmpdir, f"{scenario.name}.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(scenario.code).lstrip())
        env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
        try:
            proc = subprocess.run([sys.executable, script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=scenario.timeout_s,
                                  preexec_fn=_limits(scenario.address_space_gib))
            return proc.returncode, _trim(proc.stdout, tmpdir)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, _trim(out + f"\n[capture: timed out after {scenario.timeout_s}s]", tmpdir)


def main(argv: list[str] | None = None) -> int:
    """Capture the selected scenarios into fixtures; exit 1 when a scenario failed to fail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="scenarios to run (default: all)")
    parser.add_argument("--out", default=FIXTURES, help="fixture directory (default tests/qa/fixtures)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run at once (default 2)")
    args = parser.parse_args(argv)
    by_name = {s.name: s for s in SCENARIOS}
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:24s} -> {s.expect or '(no match)':22s} {s.what}")
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in args.only] if args.only else list(SCENARIOS)
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "MANIFEST.json")
    scenarios = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            scenarios = json.load(f).get("scenarios", {})
    environment = environment_info()
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for scenario, (rc, text) in zip(chosen, pool.map(run_scenario, chosen)):
            with open(os.path.join(args.out, f"{scenario.name}.log"), "w") as f:
                f.write(text)
            scenarios[scenario.name] = {"expect": scenario.expect, "what": scenario.what, "exit_status": rc,
                                        "commit": environment["commit"]}
            status = "ok" if rc not in (0, 124) else "DID NOT FAIL" if rc == 0 else "TIMED OUT"
            if status != "ok":
                bad.append(scenario.name)
            print(f"{scenario.name:24s} exit {rc:4d}  {len(text):5d} chars  {status}", flush=True)
    with open(manifest_path, "w") as f:
        json.dump({"environment": environment, "scenarios": dict(sorted(scenarios.items()))}, f, indent=2)
        f.write("\n")
    if bad:
        print(f"scenarios that did not fail as intended: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
