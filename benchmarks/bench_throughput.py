"""Speed of the TensorFlow model against its Flax peer at ``ModelConfig.bench()``.

Criteria: PX.tf_prefill_speed, PX.tf_decode_speed and PX.tf_train_speed ("TF at least as fast as Flax
under jax.jit"). ``Throughput.track_tf_over_flax`` and ``TrainThroughput.track_tf_over_flax_train`` are
the numbers the criteria gate on (ratios of interleaved timings in one process); the ``time_``/``peakmem_``
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
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    time_prefill.version = "a37fc5ceb6cad9b5ff3e69e5c59f3d21ce657ad63a1124dcb45a1a5978e2e591"


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
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    time_decode.version = "21a68dfc71350f399d4fa1899c39c73aeaf1b0f46d1d33097a64c12fa958e077"


def _train_step_call(framework: str, batch: int, seq_len: int):
    """A no-argument call running one optimizer step of the bench model on ``batch`` x ``seq_len`` tokens.

    tf-graph: ``tf_impl.train.Trainer``'s default path, its step as a ``tf.function`` without XLA;
    tf-eager: the same step under ``tf.config.run_functions_eagerly``; flax-jit:
    ``reference.train.train_step`` under ``jax.jit``. Both frameworks start from the canonical
    weights and take the same tokens; each call waits for the loss (TF returns floats, JAX is
    synchronised with ``block_until_ready``).
    """
    cfg = common.config("bench")
    toks = common.tokens(batch, seq_len, cfg.vocab_size)
    model = common.build_model("flax-jit" if framework == "flax-jit" else "tf-eager", cfg)
    if framework.startswith("tf-"):
        import tensorflow as tf

        from tf_impl.train import Trainer

        tf.config.run_functions_eagerly(framework == "tf-eager")
        trainer = Trainer(model, cfg, progress=False, jit_compile=False)
        tokens = tf.constant(toks)
        return lambda: trainer.train_step(tokens)  # returns floats: synchronised
    from reference import train  # submodule import: works whichever way the package is installed

    state = {"opt": train.init_optimizer(model), "step": 0}

    def step():
        state["opt"], loss, _ = train.train_step(model, state["opt"], toks, state["step"])
        state["step"] += 1
        loss.block_until_ready()

    return step


class TrainStep(_Timed):
    """One optimizer step (forward with MTP, losses, backward, AdamW, gate-bias update).

    B=2 sequences of 64 tokens at the bench config (``_train_step_call``). There is no tf-xla here:
    XLA compiling the bench training step took over 5 minutes on 2 cores, a third of the suite's
    budget (the Trainer defaults to graph mode for the same reason). Context for PX.tf_train_speed:
    the per-framework times behind TrainThroughput.track_tf_over_flax_train.
    """

    version = "1"
    params = [TRAIN_FRAMEWORKS]
    param_names = ["framework"]
    batch, seq_len = 2, 64
    repeat = 2

    def setup(self, framework):
        self.step = _train_step_call(framework, self.batch, self.seq_len)
        common.warm_up(self.step, calls=1)

    def teardown(self, framework):
        if framework == "tf-eager":
            import tensorflow as tf

            tf.config.run_functions_eagerly(False)

    def time_train_step(self, framework):
        """PX.tf_train_speed (context): one training step on 2 x 64 tokens."""
        self.step()

    time_train_step.pretty_name = "Training step time, bench config, B=2, T=64"


class TrainThroughput:
    """TF training steps/s over Flax training steps/s, both warmed up, timed alternately in one process.

    Serves PX.tf_train_speed. TF runs the Trainer's default step (``tf.function``, no XLA), Flax runs
    ``reference.train.train_step`` under ``jax.jit``; same canonical weights, same 2 x 64 tokens, the
    same work per step (forward with MTP, losses, backward, AdamW, gate-bias update).
    """

    version = "1"
    timeout = 600
    reps = 5  # alternating TF/Flax steps per side (~7 s a pair on 2 cores); the median of each is used
    batch, seq_len = TrainStep.batch, TrainStep.seq_len

    def setup(self):
        self.tf_step = _train_step_call("tf-graph", self.batch, self.seq_len)
        self.flax_step = _train_step_call("flax-jit", self.batch, self.seq_len)
        common.warm_up(self.tf_step, calls=2)  # trace, then one step on the traced graph
        common.warm_up(self.flax_step, calls=2)

    def track_tf_over_flax_train(self):
        """PX.tf_train_speed: training throughput TF (Trainer, tf.function) / Flax (jax.jit), bench config,
        B=2 x T=64: the median Flax step time over the median TF step time, steps alternating."""
        return common.median_ratio(self.flax_step, self.tf_step, self.reps)

    track_tf_over_flax_train.unit = "ratio"
    track_tf_over_flax_train.pretty_name = "Training throughput TF-graph / Flax-jit (bench config, B=2, T=64)"


class TrainMemoryFull:
    """Peak resident memory of a process that built the bench model and ran TF training steps.

    B=2 x T=64, the size the training benchmarks use: at B=4 x T=128 the second TF step is killed for
    memory on the 24 GB shared benchmark host today (issue 13). Context for PX.tf_train_speed. Full tier
    (``python -m harness run --full``): its process took 2 minutes on the shared 2-core host, for a number
    no verdict depends on.
    """

    version = "1"
    timeout = 300
    batch, seq_len = TrainStep.batch, TrainStep.seq_len

    def setup(self):
        self.step = _train_step_call("tf-graph", self.batch, self.seq_len)

    def peakmem_train_step(self):
        """PX.tf_train_speed (context): peak RSS after two TF training steps (trace + one on the graph)."""
        self.step()
        self.step()

    peakmem_train_step.pretty_name = "Peak memory, TF training step B=2 x 64, bench config"


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
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    peakmem_prefill.version = "694f9dd0bd1dadf5cfa06feecd7a9e696366c4cbe6e767061662bbdcc8d621b8"

    def peakmem_decode(self, framework):
        """PX.tf_decode_speed (context): peak RSS after one decode step from a 256-token absorbed cache."""
        common.decode_call(framework, self.model, BATCH, PROMPT_LEN, "absorb")()

    peakmem_decode.pretty_name = "Peak memory, decode B=8 after 256 tokens, bench config"
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    peakmem_decode.version = "c27adcada97912f02a855e16f7f4d5679cb79260238e2bcafb7e5c8a2d580847"
