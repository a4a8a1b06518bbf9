"""Speed of the TensorFlow model against its Flax peer at ``ModelConfig.bench()``.

Criteria: PX.tf_prefill_speed and PX.tf_decode_speed ("TF at least as fast as Flax under jax.jit").
``Throughput.track_tf_over_flax`` is the number the criteria gate on; the ``time_``/``peakmem_``
benchmarks are the same workloads per framework, side by side in the HTML (same class, same method,
one ``framework`` parameter), so a ratio that moves can be traced to the side that moved.

Everything is built, compiled and warmed up in ``setup``; the timed code waits for its result
(``.numpy()`` for TF, ``block_until_ready()`` for JAX). Both frameworks load the same weights
(``common.canonical_state``) and the same tokens, so they route the same tokens to the same experts.
"""

from __future__ import annotations

from . import common
from .common import BATCH, FRAMEWORKS, PROMPT_LEN

TRAIN_FRAMEWORKS = ("tf-eager", "tf-graph", "flax-jit")


class _Timed:
    """asv sampling for model calls that take 0.05-5 s: compiled and warmed up in setup, so one call
    per sample and three samples; ``rounds = 1`` because each process costs a TF/JAX import."""

    number = 1
    repeat = 3
    rounds = 1
    warmup_time = 0.0
    timeout = 300


class Throughput:
    """TF tokens/s over Flax tokens/s, both compiled, timed alternately in one process.

    Serves PX.tf_prefill_speed (phase=prefill) and PX.tf_decode_speed (phase=decode).
    """

    params = [("prefill", "decode")]
    param_names = ["phase"]
    timeout = 400
    reps = 9  # alternating Flax/TF timing pairs: >= 7 per side lets asv's Mann-Whitney test reach p < 0.002
    version = "2"  # 2: the median of per-pair ratios, with their spread (was: ratio of the two medians)

    def setup(self, phase):
        cfg = common.config("bench")
        tf_model = common.build_model("tf-xla", cfg)
        flax_model = common.build_model("flax-jit", cfg)
        if phase == "prefill":
            self.tf_call = common.prefill_call("tf-xla", tf_model, BATCH, PROMPT_LEN)
            self.flax_call = common.prefill_call("flax-jit", flax_model, BATCH, PROMPT_LEN)
        else:
            self.tf_call = common.decode_call("tf-xla", tf_model, BATCH, PROMPT_LEN, "absorb")
            self.flax_call = common.decode_call("flax-jit", flax_model, BATCH, PROMPT_LEN, "absorb")
        common.warm_up(self.tf_call)
        common.warm_up(self.flax_call)

    def track_tf_over_flax(self, phase):
        """PX.tf_prefill_speed / PX.tf_decode_speed: throughput TF (XLA) / throughput Flax (jax.jit).

        prefill: B=8 x T=256 prompt into an empty absorbed cache; decode: one token for each of B=8
        sequences after a 256-token absorbed cache. Same tokens both sides, so each pair's throughput
        ratio is the Flax time over the TF time; asv records the median of the pairs and their spread.
        """
        return common.sampled(common.ratio_samples(self.flax_call, self.tf_call, self.reps))

    track_tf_over_flax.unit = "ratio"
    track_tf_over_flax.pretty_name = "Throughput TF-XLA / Flax-jit (bench config, B=8, 256-token prompt/cache)"


class Prefill(_Timed):
    """Prompt processing, B=8 sequences of ``seq_len`` tokens into an empty absorbed cache.

    Context for PX.tf_prefill_speed: the per-framework times behind Throughput.track_tf_over_flax.
    """

    params = [FRAMEWORKS, (64, 256)]
    param_names = ["framework", "seq_len"]

    def setup(self, framework, seq_len):
        model = common.build_model(framework, common.config("bench"))
        self.call = common.prefill_call(framework, model, BATCH, seq_len)
        common.warm_up(self.call, calls=1 if framework == "tf-eager" else 2)  # eager compiles nothing

    def time_prefill(self, framework, seq_len):
        """PX.tf_prefill_speed (context): one prefill of 8 x seq_len tokens, logits materialised."""
        self.call()

    time_prefill.pretty_name = "Prefill time, bench config, B=8"


class Decode(_Timed):
    """One decoding step for B=8 sequences after a 256-token prompt, absorbed or naive cache.

    Context for PX.tf_decode_speed; absorb vs naive shows what the absorbed MLA cache buys.
    """

    params = [FRAMEWORKS, ("absorb", "naive")]
    param_names = ["framework", "cache"]

    def setup(self, framework, cache):
        model = common.build_model(framework, common.config("bench"))
        self.call = common.decode_call(framework, model, BATCH, PROMPT_LEN, cache)
        common.warm_up(self.call, calls=1 if framework == "tf-eager" else 2)

    def time_decode(self, framework, cache):
        """PX.tf_decode_speed (context): one decode step (8 tokens) at position 256, logits materialised."""
        self.call()

    time_decode.pretty_name = "Decode step time, bench config, B=8, 256 cached tokens"


class TrainStep(_Timed):
    """One optimizer step (forward with MTP, losses, backward, AdamW, gate-bias update).

    B=2 sequences of 64 tokens at the bench config. tf-eager runs ``tf_impl.train.Trainer``'s step
    under ``tf.config.run_functions_eagerly``; tf-graph is the Trainer's default, a ``tf.function``
    without XLA; flax-jit is ``reference.train.train_step``. There is no tf-xla here: XLA compiling
    the bench training step took over 5 minutes on 2 cores, a third of the suite's budget (the
    Trainer defaults to graph mode for the same reason). Context for PX.tf_prefill_speed.
    """

    params = [TRAIN_FRAMEWORKS]
    param_names = ["framework"]
    batch, seq_len = 2, 64
    repeat = 2

    def setup(self, framework):
        cfg = common.config("bench")
        toks = common.tokens(self.batch, self.seq_len, cfg.vocab_size)
        model = common.build_model("flax-jit" if framework == "flax-jit" else "tf-eager", cfg)
        if framework.startswith("tf-"):
            import tensorflow as tf

            from tf_impl.train import Trainer

            tf.config.run_functions_eagerly(framework == "tf-eager")
            trainer = Trainer(model, cfg, progress=False, jit_compile=False)
            batch = tf.constant(toks)
            self.step = lambda: trainer.train_step(batch)  # returns floats: synchronised
        else:
            from reference import train  # submodule import: works whichever way the package is installed

            state = {"opt": train.init_optimizer(model), "step": 0}

            def step():
                state["opt"], loss, _ = train.train_step(model, state["opt"], toks, state["step"])
                state["step"] += 1
                loss.block_until_ready()

            self.step = step
        common.warm_up(self.step, calls=1)

    def teardown(self, framework):
        if framework == "tf-eager":
            import tensorflow as tf

            tf.config.run_functions_eagerly(False)

    def time_train_step(self, framework):
        """PX.tf_prefill_speed (context): one training step on 2 x 64 tokens."""
        self.step()

    time_train_step.pretty_name = "Training step time, bench config, B=2, T=64"


class Memory:
    """Peak resident memory of a process that built the bench model and ran prefill or decode.

    asv's ``peakmem_`` is the process's maximum RSS, so it includes the framework runtime, the
    weights, the compiled programs and the cache. Context for PX.tf_prefill_speed / PX.tf_decode_speed.
    """

    params = [FRAMEWORKS]
    param_names = ["framework"]
    timeout = 300

    def setup(self, framework):
        self.model = common.build_model(framework, common.config("bench"))

    def peakmem_prefill(self, framework):
        """PX.tf_prefill_speed (context): peak RSS after prefilling 8 x 256 tokens (absorbed cache)."""
        common.prefill_call(framework, self.model, BATCH, PROMPT_LEN)()

    peakmem_prefill.pretty_name = "Peak memory, prefill B=8 x 256, bench config"

    def peakmem_decode(self, framework):
        """PX.tf_decode_speed (context): peak RSS after one decode step from a 256-token absorbed cache."""
        common.decode_call(framework, self.model, BATCH, PROMPT_LEN, "absorb")()

    peakmem_decode.pretty_name = "Peak memory, decode B=8 after 256 tokens, bench config"
