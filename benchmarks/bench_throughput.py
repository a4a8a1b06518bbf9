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

from . import common, roofline
from .common import BATCH, FRAMEWORKS, PROMPT_LEN

TRAIN_FRAMEWORKS = ("tf-xla", "tf-graph", "flax-jit")


class _Timed:
    """asv sampling for model calls that take 0.05-5 s: compiled and warmed up in setup, so one call
    per sample and three samples; ``rounds = 1`` because each process costs a TF/JAX import."""

    number = 1
    repeat = 3
    rounds = 1
    warmup_time = 0.0
    timeout = 300


ROOFLINE_FRAMEWORKS = ("tf-xla", "flax-jit")
# Rows through a product in a decode step at bench: 1 (one sequence, as in MTP speculative decoding), ~2
# (a routed expert's tile at B=8, K=4, E=32) and 8 (the dense layers and attention projections at B=8).
MATMUL_ROWS = (1, 2, 8)


def _experts_read(model, cfg) -> list[int]:
    """Per MoE layer of the trunk, the routed experts the B tokens of the benchmarked decode step go to.

    The step decodes ``tokens(BATCH, 0, seed=SEED + 1)`` after ``tokens(BATCH, PROMPT_LEN)`` (as
    ``common.decode_call``); the causal forward of the concatenated sequence routes its last position as
    that step does. Run eagerly (nothing compiled for it); the Flax model loads the same weights, so it
    reads the same experts up to near-tie flips.
    """
    import numpy as np

    prompt = common.tokens(BATCH, PROMPT_LEN, cfg.vocab_size)
    nxt = common.tokens(BATCH, 0, cfg.vocab_size, seed=common.SEED + 1)
    compiled, model.compiled = model.compiled, False
    _, aux = model.forward_aux(np.concatenate([prompt, nxt[:, None]], 1))  # [B, PROMPT_LEN + 1]
    model.compiled = compiled
    trunk = cfg.n_layers - cfg.n_dense_layers                              # MTP blocks come after the trunk
    return roofline.distinct_experts(np.asarray(aux["router_indices"])[:trunk, :, -1])  # [L, B, K] -> L counts


def _throughput_numbers(reps: int) -> dict:
    """Everything ``Throughput`` reports, measured in one process (see its docstring)."""
    common.reuse_jax_compiles()
    cfg = common.config("bench")
    models = {fw: common.build_model(fw, cfg) for fw in ROOFLINE_FRAMEWORKS}
    gemms = {engine: common.gemm_call(engine) for engine in common.GEMM_ENGINES}
    gflops = {engine: common.best_rate(*gemms[engine]) / 1e9 for engine in common.GEMM_ENGINES}
    gemm, gemm_flops = gemms[max(gflops, key=gflops.get)]                  # the machine's best fp32 GEMM
    copy, moved = common.stream_copy_call()
    copy()                                                                 # first touch of its pages
    out = {"gemm_gflops": gflops, "ratio": {}, "mfu": {}, "over_floor": {}}

    calls = [common.prefill_call(fw, models[fw], BATCH, PROMPT_LEN) for fw in ("flax-jit", "tf-xla")]
    for call in calls:
        common.warm_up(call)
    flops = roofline.forward_flops(cfg, BATCH, PROMPT_LEN, mode="absorb")
    rounds = common.interleaved_seconds([*calls, gemm], reps)              # [reps][flax, tf, gemm]
    out["ratio"]["prefill"] = [flax / tf for flax, tf, _ in rounds]
    for j, fw in enumerate(("flax-jit", "tf-xla")):
        out["mfu"][fw] = [(flops / r[j]) / (gemm_flops / r[2]) for r in rounds]

    calls = [common.decode_call(fw, models[fw], BATCH, PROMPT_LEN, "absorb") for fw in ("flax-jit", "tf-xla")]
    for call in calls:
        common.warm_up(call)
    out["experts_read"] = _experts_read(models["tf-xla"], cfg)
    out["decode_bytes"] = roofline.decode_bytes(cfg, BATCH, PROMPT_LEN, out["experts_read"], "absorb")
    rounds = common.interleaved_seconds([*calls, copy], reps)              # [reps][flax, tf, copy]
    out["ratio"]["decode"] = [flax / tf for flax, tf, _ in rounds]
    for j, fw in enumerate(("flax-jit", "tf-xla")):
        out["over_floor"][fw] = [r[j] / (out["decode_bytes"] / (moved / r[2])) for r in rounds]
    out["stream_gbs"] = [moved / r[2] / 1e9 for r in rounds]              # the bandwidth each round's floor used
    out["matmul_read_gbs"] = {rows: common.best_rate(*common.matmul_read_call(rows)) / 1e9 for rows in MATMUL_ROWS}
    return out


class Throughput:
    """TF tokens/s over Flax tokens/s, both compiled, timed alternately in one process; and both against
    this machine's fp32 GEMM peak (prefill) and stream bandwidth (decode), measured in the same rounds.

    Serves PX.tf_prefill_speed (phase=prefill), PX.tf_decode_speed (phase=decode), PX.prefill_mfu and
    PX.decode_roofline. One ``setup_cache`` process builds both bench models once, compiles and warms up
    their prefill and decode, and times ``reps`` rounds per phase: Flax, TF, then the machine's peak (the
    fastest of the TF, JAX and numpy GEMMs for prefill, a 2 x 128 MB parallel copy for decode). The
    ``track_`` methods read those numbers, so the six results cost one TF and one JAX import.
    """

    params = [("prefill", "decode")]
    param_names = ["phase"]
    timeout = 400
    reps = 9  # rounds per phase: >= 7 samples per side lets asv's Mann-Whitney test reach p < 0.002
    version = "2"  # 2: the median of per-pair ratios, with their spread (was: ratio of the two medians)

    def setup_cache(self):
        return _throughput_numbers(self.reps)

    setup_cache.timeout = 900

    def track_tf_over_flax(self, numbers, phase):
        """PX.tf_prefill_speed / PX.tf_decode_speed: throughput TF (XLA) / throughput Flax (jax.jit).

        prefill: B=8 x T=256 prompt into an empty absorbed cache; decode: one token for each of B=8
        sequences after a 256-token absorbed cache. Same tokens both sides, so each pair's throughput
        ratio is the Flax time over the TF time; asv records the median of the pairs and their spread.
        """
        return common.sampled(numbers["ratio"][phase])

    track_tf_over_flax.unit = "ratio"
    track_tf_over_flax.pretty_name = "Throughput TF-XLA / Flax-jit (bench config, B=8, 256-token prompt/cache)"

    def track_prefill_mfu(self, numbers, framework):
        """PX.prefill_mfu: model FLOP utilisation of a B=8 x T=256 prefill (absorbed cache, bench config).

        Per round, (model FLOPs / prefill seconds) / (GEMM FLOPs / seconds of the fastest fp32 GEMM timed
        right after it); model FLOPs per ``benchmarks.roofline.forward_flops``. Median of the rounds.
        """
        return common.sampled(numbers["mfu"][framework])

    track_prefill_mfu.params = [ROOFLINE_FRAMEWORKS]
    track_prefill_mfu.param_names = ["framework"]
    track_prefill_mfu.unit = "fraction"
    track_prefill_mfu.version = "1"
    track_prefill_mfu.pretty_name = "Prefill model FLOP utilisation vs the fp32 GEMM peak (bench, B=8, T=256)"

    def track_decode_over_floor(self, numbers, framework):
        """PX.decode_roofline: a decode step's time over its memory-bandwidth floor (bench, B=8, 256 cached).

        Per round, decode seconds / (bytes the step must read per ``benchmarks.roofline.decode_bytes``:
        active weights incl. only the routed experts its tokens use, plus the filled absorbed cache, over
        the copy bandwidth timed right after it). 1.0 is the floor. Median of the rounds.
        """
        return common.sampled(numbers["over_floor"][framework])

    track_decode_over_floor.params = [ROOFLINE_FRAMEWORKS]
    track_decode_over_floor.param_names = ["framework"]
    track_decode_over_floor.unit = "ratio"
    track_decode_over_floor.version = "1"
    track_decode_over_floor.pretty_name = "Decode step time / memory-bandwidth floor (bench, B=8, 256 cached)"

    def track_decode_bytes(self, numbers):
        """PX.decode_roofline (context): the bytes the floor divides, from the config and the step's routing."""
        return numbers["decode_bytes"]

    track_decode_bytes.params = []
    track_decode_bytes.param_names = []
    track_decode_bytes.unit = "bytes"
    track_decode_bytes.version = "1"
    track_decode_bytes.pretty_name = "Bytes a decode step must read (bench, B=8, 256 cached, absorbed)"

    def track_matmul_read_bandwidth(self, numbers, rows):
        """PX.decode_roofline (context): GB/s at which XLA:CPU's product reads its fp32 weights when ``rows``
        rows go through it (64 distinct [512, 256] weights, one compiled program, best of 5 after a warm-up;
        ``common.matmul_read_call``). Read beside track_stream_bandwidth: the decode floor assumes every
        weight byte moves at the copy's rate, and no decode step can beat the rate its products read at.
        """
        return numbers["matmul_read_gbs"][rows]

    track_matmul_read_bandwidth.params = [MATMUL_ROWS]
    track_matmul_read_bandwidth.param_names = ["rows"]
    track_matmul_read_bandwidth.unit = "GB/s"
    track_matmul_read_bandwidth.version = "1"
    track_matmul_read_bandwidth.pretty_name = "Weight read rate of an XLA product with few rows (64 x [512, 256] fp32)"

    def track_gemm_peak(self, numbers, engine):
        """PX.prefill_mfu (context): fp32 GEMM GFLOP/s of a 2048^3 matmul, best of 5, per engine; the
        fastest engine is the MFU's peak."""
        return numbers["gemm_gflops"][engine]

    track_gemm_peak.params = [common.GEMM_ENGINES]
    track_gemm_peak.param_names = ["engine"]
    track_gemm_peak.unit = "GFLOP/s"
    track_gemm_peak.version = "1"
    track_gemm_peak.pretty_name = "fp32 GEMM peak, 2048 x 2048 x 2048, best of 5"

    def track_stream_bandwidth(self, numbers):
        """PX.decode_roofline (context): copy bandwidth (read + write bytes) of a 128 MB fp32 array split
        over the CPUs, timed in each decode round right after the two decode steps: the bandwidth each
        round's floor is computed with; asv records the median of the rounds and their spread.

        Version 2: it was a best of 5 timed before the rounds, which could read 43 GB/s while the rounds'
        copies ran at ~70 (docs/performance.md, "A host state that doubles decode time").
        """
        return common.sampled(numbers["stream_gbs"])

    track_stream_bandwidth.params = []
    track_stream_bandwidth.param_names = []
    track_stream_bandwidth.unit = "GB/s"
    track_stream_bandwidth.version = "2"  # 2: the median of the decode rounds' copies (was: a best of 5 before them)
    track_stream_bandwidth.pretty_name = "Stream copy bandwidth, 128 MB, all CPUs, in the decode rounds"


class Prefill(_Timed):
    """Prompt processing, B=8 sequences of ``seq_len`` tokens into an empty absorbed cache.

    Context for PX.tf_prefill_speed: the per-framework times behind Throughput.track_tf_over_flax.
    """

    params = [FRAMEWORKS, (64, 256)]
    param_names = ["framework", "seq_len"]

    def setup(self, framework, seq_len):
        if framework == "flax-jit":
            common.reuse_jax_compiles()
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
        if framework == "flax-jit":
            common.reuse_jax_compiles()
        model = common.build_model(framework, common.config("bench"))
        self.call = common.decode_call(framework, model, BATCH, PROMPT_LEN, cache)
        common.warm_up(self.call, calls=1 if framework == "tf-eager" else 2)

    def time_decode(self, framework, cache):
        """PX.tf_decode_speed (context): one decode step (8 tokens) at position 256, logits materialised."""
        self.call()

    time_decode.pretty_name = "Decode step time, bench config, B=8, 256 cached tokens"
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    time_decode.version = "21a68dfc71350f399d4fa1899c39c73aeaf1b0f46d1d33097a64c12fa958e077"


def _train_step_call(framework: str, batch: int, seq_len: int, preset: str = "bench"):
    """A no-argument call running one optimizer step of the bench model on ``batch`` x ``seq_len`` tokens.

    tf-xla: ``tf_impl.train.Trainer``'s step compiled by XLA (``jit_compile=True``); tf-graph: the
    same ``tf.function`` without XLA (the Trainer's default); flax-jit: ``reference.train.train_step``
    under ``jax.jit``.
    Both frameworks start from the canonical weights and take the same tokens; each call returns when
    the whole step is done (TF returns floats after its one compiled function; JAX waits with
    ``block_until_ready`` on the loss, the optimizer state and the updated weights).
    """
    cfg = common.config(preset)
    toks = common.tokens(batch, seq_len, cfg.vocab_size)
    if framework == "flax-jit":
        common.reuse_jax_compiles()  # TrainStep[flax-jit] and TrainThroughput compile the same step
    model = common.build_model("flax-jit" if framework == "flax-jit" else "tf-eager", cfg)
    if framework.startswith("tf-"):
        import tensorflow as tf

        from tf_impl.train import Trainer

        trainer = Trainer(model, cfg, progress=False, jit_compile=framework == "tf-xla")
        tokens = tf.constant(toks)
        return lambda: trainer.train_step(tokens)  # returns floats: synchronised
    import jax

    from reference import train  # submodule import: works whichever way the package is installed

    state = {"opt": train.init_optimizer(model), "step": 0}

    def step():
        state["opt"], loss, _ = train.train_step(model, state["opt"], toks, state["step"])
        state["step"] += 1
        # Everything the step wrote, not just the loss: train_step is two jitted programs (loss and
        # gradients, then AdamW and the bias update), and the loss is ready before the update runs. Waiting
        # on the loss alone left the update running into the next timed call (the TF step, in the
        # alternating rounds): Flax's time lost its optimizer and TF's gained it (issue 13).
        jax.block_until_ready((loss, state["opt"], model.params, model.biases))

    return step


class TrainStep(_Timed):
    """One optimizer step (forward with MTP, losses, backward, AdamW, gate-bias update).

    B=2 sequences of 64 tokens at the bench config (``_train_step_call``): tf-xla (the Trainer's
    step under XLA) and tf-graph (the same step without XLA, the Trainer's default) beside flax-jit.
    Context for PX.tf_train_speed: the per-framework times behind
    TrainThroughput.track_tf_over_flax_train.
    """

    version = "3"  # 3: flax-jit timed to the end of its update (was: the loss); 2: tf-xla replaces tf-eager
    params = [TRAIN_FRAMEWORKS]
    param_names = ["framework"]
    batch, seq_len = 2, 64
    repeat = 2

    def setup(self, framework):
        self.step = _train_step_call(framework, self.batch, self.seq_len)
        common.warm_up(self.step, calls=1)

    def time_train_step(self, framework):
        """PX.tf_train_speed (context): one training step on 2 x 64 tokens."""
        self.step()

    time_train_step.pretty_name = "Training step time, bench config, B=2, T=64"


def _train_numbers(batch: int, seq_len: int, reps: int) -> dict:
    """What ``TrainThroughput`` reports, measured in one process: first-step and alternating step times.

    The first call of each step traces and compiles it (XLA for tf-xla, jax.jit for flax-jit); its
    time is the compile cost a user pays once per process. A second call runs the compiled step, then
    ``reps`` rounds alternate Flax and TF so both sides see the same machine state.
    """
    out = {"first_call": {}}
    steps = {}
    for fw in ("tf-xla", "flax-jit"):
        steps[fw] = _train_step_call(fw, batch, seq_len)
        out["first_call"][fw] = common.seconds(steps[fw])
        steps[fw]()
    rounds = common.interleaved_seconds([steps["flax-jit"], steps["tf-xla"]], reps)  # [reps][flax, tf]
    out["ratio"] = [flax / tf for flax, tf in rounds]
    return out


class TrainThroughput:
    """TF training steps/s over Flax training steps/s, both compiled, timed alternately in one process.

    Serves PX.tf_train_speed. TF runs the Trainer's step compiled by XLA (``jit_compile=True``),
    Flax runs ``reference.train.train_step`` under ``jax.jit``; same canonical weights, same 2 x 64
    tokens, the same work per step (forward with MTP, losses, backward, AdamW, gate-bias update).
    One ``setup_cache`` process times both compiles and the alternating rounds (``_train_numbers``).
    """

    version = "3"  # 3: the Flax step is timed to the end of its update; 2: TF side is the XLA-compiled step
    timeout = 600
    reps = 9  # alternating TF/Flax rounds (~1 s a pair on 2 cores): >= 7 samples for asv's Mann-Whitney test
    batch, seq_len = TrainStep.batch, TrainStep.seq_len

    def setup_cache(self):
        return _train_numbers(self.batch, self.seq_len, self.reps)

    setup_cache.timeout = 600

    def track_tf_over_flax_train(self, numbers):
        """PX.tf_train_speed: training throughput TF (Trainer, XLA) / Flax (jax.jit), bench config, B=2 x T=64:
        per alternating pair the Flax step time over the TF step time; the median of the pairs."""
        return common.sampled(numbers["ratio"])

    track_tf_over_flax_train.unit = "ratio"
    track_tf_over_flax_train.pretty_name = "Training throughput TF-XLA / Flax-jit (bench config, B=2, T=64)"

    def track_first_step_seconds(self, numbers, framework):
        """PX.tf_train_speed: seconds of the first training step in a fresh process (trace + compile + run),
        bench config, B=2 x T=64: what a user waits before training starts."""
        return numbers["first_call"][framework]

    track_first_step_seconds.params = [("tf-xla", "flax-jit")]
    track_first_step_seconds.param_names = ["framework"]
    track_first_step_seconds.unit = "seconds"
    track_first_step_seconds.version = "1"
    track_first_step_seconds.pretty_name = "First training step incl. compile (bench config, B=2, T=64)"


class TrainMemoryFull:
    """Peak resident memory of a process that built the bench model and ran three training steps.

    B=4 x T=128, per framework: ``tf-xla`` and ``tf-graph`` (the Trainer's default) beside ``flax-jit``
    (``reference.train.train_step``), so the TF peak reads against its peer's at the same batch (issue
    13's target: TF <= Flax, and flat across steps). Three steps, not one: the first traces/compiles, and
    a backward pass that held per-iteration tensors would grow from step to step. Measured 2026-11-26
    (load average ~15 on the 2-core host, ``ru_maxrss`` after each step): tf-graph 3.72, 3.98, 4.36 GB;
    flax-jit 4.00, 5.32, 6.38 GB. Context for PX.tf_train_speed. Full tier (``python -m harness run
    --full``): each process spends about a minute compiling, for a number no verdict gates on.
    """

    version = "3"  # 3: tf-xla added; 2: B=4 x T=128, three steps, framework parameter
    timeout = 600
    params = [("tf-xla", "tf-graph", "flax-jit")]
    param_names = ["framework"]
    batch, seq_len, steps = 4, 128, 3

    def setup(self, framework):
        self.step = _train_step_call(framework, self.batch, self.seq_len)

    def peakmem_train_step(self, framework):
        """PX.tf_train_speed (context): peak RSS after three training steps (trace/compile + two more)."""
        for _ in range(self.steps):
            self.step()

    peakmem_train_step.pretty_name = "Peak memory, training steps B=4 x 128, bench config"


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
