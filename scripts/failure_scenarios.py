"""The failures that ``scripts/capture_failures.py`` provokes, one small program each.

``dev`` scenarios are the ones the knowledge base's patterns were written against. ``host`` says where
a scenario can run: ``cpu`` on any machine with the project's venv, ``gpu`` only on a machine with a
CUDA GPU and a CUDA-enabled jax (its output is captured there and copied into the fixtures). The
held-out scenarios live apart, in ``held_out_scenarios.py``, and follow the protocol in
``tests/qa/fixtures/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    """A program that provokes one failure, the issue it must be diagnosed as, where and how it runs.

    ``expect`` is a knowledge-base issue id, or None when the log must match no known issue (for a
    held-out scenario it may name an issue the knowledge base lacks). ``env`` overrides the
    environment (by default JAX and TF see no GPU: ``JAX_PLATFORMS=cpu``, ``CUDA_VISIBLE_DEVICES=``;
    None removes a variable). ``warning_only`` marks a program whose problem shows only as a warning
    (it exits 0); every other scenario must exit non-zero.
    """

    name: str
    expect: str | None
    what: str
    code: str
    address_space_gib: float | None = None
    timeout_s: int = 240
    host: str = "cpu"
    set: str = "dev"
    env: dict = field(default_factory=dict)
    warning_only: bool = False


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
        from harness.qa.troubleshoot import diagnose_fp8_range

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
        from harness.qa.troubleshoot import diagnose_expert_load

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
        from harness.qa.troubleshoot import diagnose_input_pipeline

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
    Scenario("tf_retracing_warning", "slow_training", "a tf.function train step called with a new Python float lr each step", """
        import tensorflow as tf
        w = tf.Variable(tf.ones([64, 64]))

        @tf.function
        def step(x, lr):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(x @ w))
            w.assign_sub(lr * tape.gradient(loss, w))
            return loss

        x = tf.ones([8, 64])
        for i in range(8):
            print(f"step {i} loss={float(step(x, 1e-3 / (i + 1))):.4g}", flush=True)  # a Python float: retrace
    """, warning_only=True),
    # ---- GPU / CUDA setups, on this CPU-only machine (the messages a GPU request gets when none exists)
    Scenario("jax_devices_gpu", "gpu_not_found", "jax.devices('gpu') with the CPU-only jaxlib", """
        import jax
        print(jax.devices("gpu"))
    """),
    Scenario("jax_platforms_cuda", "gpu_not_found", "JAX_PLATFORMS=cuda with the CPU-only jaxlib", """
        import jax
        print(jax.devices())
    """, env={"JAX_PLATFORMS": "cuda"}),
    Scenario("tf_gpu_placement", "gpu_not_found", "tf.device('/GPU:0') with soft placement off on tensorflow-cpu", """
        import tensorflow as tf
        print("GPUs:", tf.config.list_physical_devices("GPU"), flush=True)
        tf.config.set_soft_device_placement(False)
        with tf.device("/GPU:0"):
            scores = tf.matmul(tf.ones([2, 4]), tf.ones([4, 2]))
    """),
    Scenario("tf_trt_unavailable", "tensorrt_failure", "TF-TRT conversion of a SavedModel on tensorflow-cpu", """
        import os, tempfile
        import tensorflow as tf
        from tensorflow.python.compiler.tensorrt import trt_convert as trt

        module = tf.Module()
        module.f = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([2], tf.float32)])
        path = os.path.join(tempfile.mkdtemp(), "saved_model")
        tf.saved_model.save(module, path)
        trt.TrtGraphConverterV2(input_saved_model_dir=path).convert()
    """),
    # ---- distributed runs on logical CPU devices (ARCHITECTURE.md decision 5)
    Scenario("tf_collective_shape_mismatch", "distributed_failure",
             "MirroredStrategy on 2 logical CPUs, all-reduce of per-replica gradients of different lengths", """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

        def step():
            ctx = tf.distribute.get_replica_context()
            grad = tf.ones(tf.stack([ctx.replica_id_in_sync_group + 2]))  # [2] on replica 0, [3] on replica 1
            return ctx.all_reduce("sum", grad)

        print(strategy.run(tf.function(step)))
    """),
    Scenario("jax_mesh_indivisible", "distributed_failure",
             "jax NamedSharding over a 4-device CPU mesh of an array whose axis 0 is 6", """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax
        import jax.numpy as jnp
        import numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.array(jax.devices()).reshape(4), ("M",))   # [M] devices
        tokens = jnp.ones((6, 8))                                   # [B, T], B = 6 not divisible by 4
        jax.device_put(tokens, NamedSharding(mesh, P("M", None)))
    """),
    Scenario("dtensor_mesh_devices", "distributed_failure", "DTensor mesh of 4 over 2 logical CPU devices", """
        import tensorflow as tf
        from tensorflow.experimental import dtensor
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        mesh = dtensor.create_mesh([("batch", 4)], device_type="CPU")
    """),
    Scenario("tf_collective_no_ordering_token", "collective_timeout_no_ordering_token",
             "all_reduce_v2 over 2 logical CPU devices in one tf.function, no ordering_token (issue 14)", """
        import tensorflow as tf
        from tensorflow.python.ops import collective_ops
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]

        @tf.function
        def step():
            out = []
            for i, device in enumerate(devices):
                with tf.device(device):
                    out.append(collective_ops.all_reduce_v2(tf.fill([2], float(i)), 2, 1, 1, timeout=5))
            return out

        print(step())
    """),
    Scenario("expert_axis_does_not_divide", "mesh_does_not_fit_model",
             "64 routed experts on a 6-way expert axis (issue 14)", """
        from harness.config import MeshConfig, ModelConfig
        cfg = ModelConfig.bench(n_routed_experts=64, n_expert_groups=8, n_limited_groups=4)
        MeshConfig.for_devices(6).check_layout(cfg)
    """),
    Scenario("dualpipe_odd_ranks", "pipeline_schedule_invalid",
             "DualPipe schedule with PP=3 pipeline ranks (issue 14)", """
        from tf_impl.pipeline.schedules import build
        build("dualpipe", 3, 12)
    """),
    Scenario("pipeline_too_few_devices", "pipeline_schedule_invalid",
             "a 4-rank 1F1B schedule executed on the 1 CPU device of an unconfigured process (issue 14)", """
        import numpy as np
        from harness.config import ModelConfig
        from tf_impl import Transformer
        from tf_impl.pipeline import execute
        from tf_impl.pipeline.schedules import build
        cfg = ModelConfig.tiny(n_layers=4)
        execute.run(Transformer(cfg, seed=0), build("1f1b", 4, 4), np.zeros((4, 16), np.int32))
    """),
    Scenario("jax_pmap_too_many", "distributed_failure", "jax.pmap over a leading axis of 4 with 1 CPU device", """
        import jax
        import jax.numpy as jnp
        per_device = jax.pmap(lambda x: x * 2.0)
        print(per_device(jnp.ones((4, 3))))  # [M, D] with M = 4 > jax.device_count()
    """),
    # ---- divergence after a learning-rate change (issue 10 item 11), the project's own Trainer
    Scenario("trainer_lr_1e4", "lr_divergence", "tf_impl Trainer on tiny with TrainConfig(lr=1e4), 20 steps", """
        from harness.config import ModelConfig, TrainConfig
        from tf_impl import Transformer
        from tf_impl.data import DataConfig
        from tf_impl.train import Trainer

        cfg = ModelConfig.tiny()
        trainer = Trainer(Transformer(cfg, seed=0), cfg, TrainConfig(lr=1e4, total_steps=20),
                          DataConfig(batch_size=2, seq_len=32, seed=0))
        trainer.fit(20)
    """),
    Scenario("trainer_lr_1e38", "lr_divergence", "tf_impl Trainer on tiny with TrainConfig(lr=1e38), 20 steps", """
        from harness.config import ModelConfig, TrainConfig
        from tf_impl import Transformer
        from tf_impl.data import DataConfig
        from tf_impl.train import Trainer

        cfg = ModelConfig.tiny()
        trainer = Trainer(Transformer(cfg, seed=0), cfg, TrainConfig(lr=1e38, total_steps=20),
                          DataConfig(batch_size=2, seq_len=32, seed=0))
        trainer.fit(20)
    """),
    # ---- on a CUDA machine (host="gpu": CUDA-enabled jax there, outputs copied into the fixtures)
    Scenario("jax_cuda_no_visible_device", "gpu_not_found",
             "CUDA-enabled jax with JAX_PLATFORMS=cuda but CUDA_VISIBLE_DEVICES empty", """
        import jax
        print(jax.devices())
    """, host="gpu", env={"JAX_PLATFORMS": "cuda", "CUDA_VISIBLE_DEVICES": ""}),
    Scenario("jax_gpu_oom", "out_of_memory", "CUDA-enabled jax allocates a (2^20, 2^20, 64) float array on the GPU", """
        import jax
        import jax.numpy as jnp
        print(jax.devices(), flush=True)
        attn_scores = jnp.zeros((2**20, 2**20, 64)).block_until_ready()  # [T, S, N] for a 1M-token context
    """, host="gpu", env={"JAX_PLATFORMS": None, "CUDA_VISIBLE_DEVICES": None}),
    Scenario("unknown_value_error", None, "an unrelated ValueError (must match no known issue)", """
        n_steps = int("12 steps")
    """),
)
