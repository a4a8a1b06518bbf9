"""Held-out failures: captured after the knowledge base was frozen; no pattern is ever written from them.

Each program and its expected issue were written and committed before the first capture (the protocol
is in ``tests/qa/fixtures/README.md``). ``expect`` is what the failure really is, decided from the
program, not from its output; an id the knowledge base lacks (``dtype_mismatch``) stays a miss.

Three scenarios written with these did not fail when captured and were dropped, not changed: the
Trainer on tiny at lr=10 (40 steps ran with finite losses), a variable created outside
``MirroredStrategy.scope()`` assigned in ``strategy.run`` (TF accepted it), and
``XLA_PYTHON_CLIENT_MEM_FRACTION=1.5`` on the GPU machine (jax ran).
"""

from __future__ import annotations

from failure_scenarios import Scenario

_GPU = {"JAX_PLATFORMS": None, "CUDA_VISIBLE_DEVICES": None}

SCENARIOS: tuple[Scenario, ...] = tuple(Scenario(*args, **kw, set="held_out") for args, kw in (
    (("ho_tf_dtype_mismatch", "dtype_mismatch", "TF matmul of float32 activations with float16 weights", """
        import tensorflow as tf
        x = tf.ones([2, 64])                          # [M, D] float32
        wq_a = tf.ones([64, 32], dtype=tf.float16)    # [D, Q] half precision
        q = tf.matmul(x, wq_a)
    """), {}),
    (("ho_tf_log_zero_loss", "nan_inf_loss", "TF cross-entropy of a probability of exactly 0, check_numerics on the loss", """
        import tensorflow as tf
        probs = tf.constant([[1.0, 0.0], [0.5, 0.5]])            # [B, V] softmax output with an exact 0
        labels = tf.constant([1, 0])
        nll = -tf.math.log(tf.gather(probs, labels, batch_dims=1))  # log(0) = -inf
        loss = tf.reduce_mean(nll)
        tf.debugging.check_numerics(loss, "cross-entropy loss")
    """), {}),
    (("ho_jax_reshape_under_jit", "shape_mismatch", "jax.jit splitting D=8 into 3 heads", """
        import jax
        import jax.numpy as jnp

        @jax.jit
        def split_heads(x):
            return x.reshape(x.shape[0], x.shape[1], 3, -1)   # [B, T, D] -> [B, T, N, H]

        split_heads(jnp.ones((2, 4, 8)))
    """), {}),
    (("ho_state_missing_tensor", "config_mismatch", "tf_impl Transformer(tiny).load_state_dict of a state without norm.weight", """
        from harness.config import ModelConfig
        from tf_impl import Transformer

        model = Transformer(ModelConfig.tiny(), seed=0)
        state = model.state_dict()
        del state["norm.weight"]
        model.load_state_dict(state)
    """), {}),
    (("ho_checkpoint_empty_file", "checkpoint_corruption", "harness.io.load_safetensors of a 0-byte file", """
        import os, tempfile
        from harness.io import load_safetensors

        path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        open(path, "wb").close()  # a copy that never got its bytes
        load_safetensors(path)
    """), {}),
    (("ho_jax_tracer_bool", "xla_compilation", "Python if on a traced value under jax.jit", """
        import jax
        import jax.numpy as jnp

        @jax.jit
        def clip_logits(logits, limit):
            if jnp.max(jnp.abs(logits)) > limit:
                logits = jnp.clip(logits, -limit, limit)
            return logits

        clip_logits(jnp.ones((2, 8)), 30.0)
    """), {}),
    (("ho_tf_data_ragged_batch", "shape_mismatch", "tf.data batching documents of different lengths", """
        import tensorflow as tf
        docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
        ds = tf.data.Dataset.from_generator(lambda: iter(docs), output_signature=tf.TensorSpec([None], tf.int32))
        for batch in ds.batch(2):
            print(batch)
    """), {}),
    (("ho_tf_oom_rlimit", "out_of_memory", "TF allocates 16 GiB under RLIMIT_AS = 8 GiB", """
        import tensorflow as tf
        kv_cache = tf.zeros([2**16, 2**16])  # [S, C] 16 GiB of float32
        print(float(tf.reduce_sum(kv_cache)))
    """), {"address_space_gib": 8.0}),
    (("ho_jax_shard_map_indivisible", "distributed_failure", "shard_map over a 3-device CPU mesh of a batch of 4", """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
        from functools import partial
        import jax
        import jax.numpy as jnp
        import numpy as np
        from jax.sharding import Mesh, PartitionSpec as P

        mesh = Mesh(np.array(jax.devices()), ("M",))

        @partial(jax.shard_map, mesh=mesh, in_specs=P("M"), out_specs=P("M"))
        def local_sum(x):
            return x * 2.0

        print(local_sum(jnp.ones((4, 16))))
    """), {}),
    (("ho_jax_psum_unbound_axis", "distributed_failure", "jax.lax.psum over an axis name outside any mapped context", """
        import jax
        import jax.numpy as jnp

        @jax.jit
        def all_reduce(grads):
            return jax.lax.psum(grads, axis_name="data")

        all_reduce(jnp.ones(4))
    """), {}),
    (("ho_tf_gpu_memory_growth", "gpu_not_found", "tf.config.experimental.set_memory_growth on the first GPU of tensorflow-cpu", """
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        tf.config.experimental.set_memory_growth(gpus[0], True)
    """), {}),
    (("ho_jax_device_put_cuda", "gpu_not_found", "jax.device_put onto jax.devices('cuda')[0] with the CPU-only jaxlib", """
        import jax
        import jax.numpy as jnp
        weights = jax.device_put(jnp.ones((4, 4)), jax.devices("cuda")[0])
    """), {}),
    (("ho_tf_sqrt_zero_grad", "nan_inf_loss", "TF gradient of sqrt at 0 in the first step, before any update", """
        import tensorflow as tf
        scale = tf.Variable(tf.zeros([4]))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sqrt(scale))      # d sqrt(x)/dx = inf at 0
        grads = tape.gradient(loss, [scale])
        print(f"step 0 loss={float(loss):.4g} grad_norm={float(tf.linalg.global_norm(grads))}", flush=True)
        tf.debugging.check_numerics(grads[0], "gradient of scale")
    """), {}),
    (("ho_config_unknown_key", "config_mismatch", "ModelConfig.from_json of a JSON config with a misspelt key", """
        import json, os, tempfile
        from harness.config import ModelConfig

        path = os.path.join(tempfile.mkdtemp(), "config.json")
        cfg = ModelConfig.tiny().to_dict()
        cfg["n_routed_expert"] = cfg.pop("n_routed_experts")
        with open(path, "w") as f:
            json.dump(cfg, f)
        ModelConfig.from_json(path)
    """), {}),
    (("ho_tf_checkpoint_shape", "config_mismatch", "tf.train.Checkpoint restored into a variable of another shape", """
        import os, tempfile
        import tensorflow as tf

        prefix = os.path.join(tempfile.mkdtemp(), "ckpt")
        saved = tf.train.Checkpoint(embed=tf.Variable(tf.zeros([256, 64]))).save(prefix)   # [V, D]
        tf.train.Checkpoint(embed=tf.Variable(tf.zeros([512, 64]))).restore(saved).assert_consumed()
    """), {}),
    # ---- on a CUDA machine
    (("ho_jax_gpu_oom_matmul", "out_of_memory", "a jitted a @ a.T whose [2^19, 2^19] result needs 1 TiB on the GPU", """
        import jax
        import jax.numpy as jnp
        scores = jax.jit(lambda a: a @ a.T)(jnp.ones((2**19, 2**10)))   # [T, D] @ [D, T] -> [T, T]
        print(scores.block_until_ready().shape)
    """), {"host": "gpu", "env": _GPU}),
    (("ho_jax_second_gpu", "gpu_not_found", "jax.devices('gpu')[1] on a one-GPU machine", """
        import jax
        import jax.numpy as jnp
        shard = jax.device_put(jnp.ones((4, 4)), jax.devices("gpu")[1])
    """), {"host": "gpu", "env": _GPU}),
    (("ho_jax_platform_typo", "gpu_not_found", "JAX_PLATFORMS=gpu0 on a CUDA machine", """
        import jax
        print(jax.devices())
    """), {"host": "gpu", "env": {**_GPU, "JAX_PLATFORMS": "gpu0"}}),
))
