"""Shared fixtures of the asv suite: configs, weights, tokens and the framework adapters.

Rules (numpy's asv suite): fixed seeds, ``lru_cache`` fixtures, only append, never change a fixture
that recorded numbers depend on. TensorFlow and JAX are imported lazily inside the functions that
need them, so a benchmark that reads a ``setup_cache`` result, or runs one framework, never pays for
importing the other.

Frameworks (the ``framework`` parameter of the speed benchmarks):

* ``tf-eager``: ``tf_impl`` with ``compiled=False``, every op dispatched eagerly;
* ``tf-xla``: ``tf_impl`` with ``compiled=True``, i.e. ``tf.function(jit_compile=True)``;
* ``flax-jit``: ``reference`` (Flax NNX) under ``jax.jit``, the speed peer.

Every speed fixture loads the same canonical state (``canonical_state``) into both frameworks, so
the weights, the routing decisions and therefore the work done are identical.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.config import ModelConfig
from harness.state import expected_shapes

SEED = 0
FRAMEWORKS = ("tf-eager", "tf-xla", "flax-jit")
BATCH = 8            # sequences per prefill / decode call (the contract's B)
PROMPT_LEN = 256     # tokens in the cache before a decode step (the contract's 256-token cache)
REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ configs, weights, tokens
@functools.lru_cache(maxsize=None)
def config(name: str) -> ModelConfig:
    """A named preset (``tiny``, ``bench``); ``v3_671b`` is shape-only: never build a model from it."""
    return ModelConfig.named(name)


@functools.lru_cache(maxsize=None)
def canonical_state(cfg: ModelConfig, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded weights in the canonical layout, built with numpy only (no framework import).

    Linear weights [out, in] ~ N(0, 1/in), the embedding ~ N(0, 1), norms 1, gate biases 0: the
    scales ``tf_impl`` and ``reference`` initialise with, so activations stay O(1).
    """
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("norm.weight"):
            value = np.ones(shape, np.float32)
        elif name.endswith("gate.bias"):
            value = np.zeros(shape, np.float32)
        elif name == "embed.weight":
            value = rng.standard_normal(shape, dtype=np.float32)
        else:
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(shape[-1] ** -0.5)
        value.setflags(write=False)
        state[name] = value
    return state


@functools.lru_cache(maxsize=None)
def tokens(batch: int, length: int, vocab_size: int, seed: int = SEED) -> np.ndarray:
    """Read-only uniform random token ids, int32 of shape [batch, length] ([batch] when length is 0)."""
    rng = np.random.default_rng(seed)
    shape = (batch, length) if length else (batch,)
    out = rng.integers(0, vocab_size, shape).astype(np.int32)
    out.setflags(write=False)
    return out


def python_reference_corpus(directory: str | os.PathLike) -> Path:
    """Write the Python Language Reference topics that CPython ships (``pydoc_data.topics``) as one
    ``.txt`` file per topic into ``directory``: real English technical prose (79 documents, ~465 KB)
    that every Python install has, so a real tokenizer can be measured offline. Returns the directory."""
    from pydoc_data.topics import topics

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, text) in enumerate(sorted(topics.items())):
        (out / f"{i:03d}-{name}.txt").write_text(text, encoding="utf-8")
    return out


# ------------------------------------------------------------------ models
def check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework {framework!r} is unknown; use one of {FRAMEWORKS}")


def build_model(framework: str, cfg: ModelConfig):
    """``tf_impl.Transformer`` or ``reference.Transformer`` holding ``canonical_state(cfg)``.

    The one model builder is ``harness.interop.bridge.build_model``; a benchmark framework names a model
    framework plus how it runs (``tf-xla``: ``compiled=True``).
    """
    from harness.interop.bridge import build_model as build

    check_framework(framework)
    if framework.startswith("tf-"):
        return build("tf", cfg, canonical_state(cfg), seed=SEED, compiled=framework == "tf-xla")
    return build("flax", cfg, canonical_state(cfg), seed=SEED)


JAX_CACHE_DIR = REPO_ROOT / ".asv" / "jax-cache"
JAX_CACHE_BYTES = 1 << 30  # least recently used programs are evicted beyond 1 GB


def reuse_jax_compiles() -> None:
    """Keep JAX's compiled programs on disk (``.asv/jax-cache``) and reuse them in later processes.

    Each asv benchmark process compiles its Flax programs again (a prefill or decode of the bench model
    takes seconds on 2 cores), although the same program was compiled by the process before, or by the
    same benchmark at the previous commit. JAX's persistent compilation cache is keyed by the program, the
    compile options, jax/jaxlib versions and the device, so a hit returns the same executable. Call it in
    ``setup`` of benchmarks that time compiled calls (compiling is never timed there), not of ``peakmem_``
    benchmarks, whose peak RSS would then lose the compiler's memory on a hit; and call it before the
    process's first JAX operation, since JAX sets the cache up at its first compile. Programs that compile
    in under 0.5 s (the single operations run eagerly while loading weights) are not kept. TensorFlow has
    no usable counterpart on CPU: its ``--tf_xla_persistent_cache_directory`` entries failed to parse when
    read back (TF 2.21), and the program was compiled again.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE_DIR))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", JAX_CACHE_BYTES)


def sync(framework: str, value) -> None:
    """Wait until ``value`` is computed: ``.numpy()`` for TF, ``block_until_ready`` for JAX."""
    if framework.startswith("tf-"):
        value.numpy()
    else:
        value.block_until_ready()


def prefill_call(framework: str, model, batch: int, length: int, mode: str = "absorb") -> Callable[[], None]:
    """A no-argument call that prefills ``length`` tokens into an empty cache and waits for the logits.

    The cache is allocated once; each call starts again from position 0 (``cache.reset()``: TF empties
    it in place, Flax returns the same buffers at length 0), so no call pays for allocating cache memory.
    """
    toks = tokens(batch, length, model.cfg.vocab_size)
    cache = model.new_cache(batch, mode)

    def call():
        sync(framework, model.prefill(toks, cache.reset())[0])
    return call


def decode_call(framework: str, model, batch: int, prompt_len: int, mode: str) -> Callable[[], None]:
    """A no-argument call that decodes one token per sequence after a ``prompt_len``-token cache.

    The cache is filled once (TF: eagerly, so no prefill program is compiled just for this); each
    call then decodes at position ``prompt_len`` again (``cache.truncate(prompt_len)``: TF cuts it back
    in place, Flax returns the filled buffers at that length), so every call does the same work.
    """
    prompt = tokens(batch, prompt_len, model.cfg.vocab_size)
    nxt = tokens(batch, 0, model.cfg.vocab_size, seed=SEED + 1)
    cache = model.new_cache(batch, mode)
    if framework.startswith("tf-"):
        compiled, model.compiled = model.compiled, False
        _, filled = model.prefill(prompt, cache)
        model.compiled = compiled
    else:
        _, filled = model.prefill(prompt, cache)

    def call():
        sync(framework, model.decode_step(nxt, filled.truncate(prompt_len))[0])
    return call


# ------------------------------------------------------------------ timing helpers
def warm_up(call: Callable[[], None], calls: int = 2) -> None:
    """Run ``call`` until it is warm: the first call compiles, and tf_impl's compiled decode step has
    been seen to compile a second time on its second call, so two calls before any timing."""
    for _ in range(calls):
        call()


def seconds(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def ratio_samples(numerator: Callable[[], None], denominator: Callable[[], None], reps: int) -> list[float]:
    """Per repeat, time of ``numerator`` / time of ``denominator``, the two calls alternating.

    Alternating in one process exposes both to the same machine state (load, clocks, caches), and the
    per-pair ratios are the samples whose spread the regression gate tests (``sampled``).
    """
    out = []
    for _ in range(reps):
        num = seconds(numerator)
        out.append(num / seconds(denominator))
    return out


def sampled(samples: Sequence[float]) -> dict[str, object]:
    """A ``track_`` result that carries its spread: asv records the median of ``samples`` as the value.

    asv's runner protocol: a benchmark process whose result is ``{"samples": [...], "number": n}`` is
    treated as a sampled result (``asv.runner`` checks for exactly these keys), so asv computes the
    median, its 99% confidence interval and the quartiles (``asv_runner.statistics.compute_stats``)
    and, under ``--record-samples``, keeps the samples. ``harness.roadmap.gate`` tests significance on them
    as ``asv compare`` does. tests/harness/test_gate_end_to_end.py checks that asv still does this.
    """
    values = [float(x) for x in samples]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"sampled() needs finite samples, got {values}")
    return {"samples": values, "number": 1}


# ------------------------------------------------------------------ host calibrations (same run, same process)
def raw_hashed_io_seconds(nbytes: int, directory: str | os.PathLike | None = None, chunk: int = 8 << 20) -> float:
    """Seconds to write ``nbytes`` to a file with SHA-256 and fsync, then read it back with SHA-256.

    The least a verified checkpoint of that size costs on this host's disk and CPU right now: the
    calibration the checkpoint time is divided by.
    """
    block = np.random.default_rng(SEED).integers(0, 256, chunk, dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "calibration.bin")
        start = time.perf_counter()
        digest, left = hashlib.sha256(), nbytes
        with open(path, "wb") as f:
            while left > 0:
                piece = block[: min(chunk, left)]
                digest.update(piece)
                f.write(piece)
                left -= len(piece)
            f.flush()
            os.fsync(f.fileno())
        check = hashlib.sha256()
        with open(path, "rb") as f:
            while piece := f.read(chunk):
                check.update(piece)
        elapsed = time.perf_counter() - start
    if check.digest() != digest.digest():
        raise RuntimeError(f"calibration file {path} read back differently from what was written")
    return elapsed


# ------------------------------------------------------------------ machine peaks (same run, same process)
GEMM_N = 2048                  # 2 * 2048**3 = 17 GFLOP: ~0.1-0.5 s on 2 cores, far beyond every cache
GEMM_ENGINES = ("tf", "jax", "numpy")
STREAM_BYTES = 128 << 20       # per array: 4x the 32 MB L3 of the benchmark host, so copies stream from DRAM


def gemm_call(engine: str, n: int = GEMM_N) -> tuple[Callable[[], None], float]:
    """A no-argument call multiplying two fp32 [n, n] matrices, and its FLOPs (2 n^3).

    ``tf``: ``tf.linalg.matmul`` (oneDNN on CPU); ``jax``: ``jnp.matmul`` under ``jax.jit`` (XLA:CPU);
    ``numpy``: ``np.matmul`` (the BLAS numpy was built with). Each call waits for its result.
    """
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    if engine == "tf":
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)
        return (lambda: tf.linalg.matmul(ta, tb).numpy()), flops
    if engine == "jax":
        import jax
        import jax.numpy as jnp

        ja, jb, matmul = jnp.asarray(a), jnp.asarray(b), jax.jit(jnp.matmul)
        return (lambda: matmul(ja, jb).block_until_ready()), flops
    if engine == "numpy":
        out = np.empty_like(a)
        return (lambda: np.matmul(a, b, out=out)), flops
    raise ValueError(f"GEMM engine {engine!r} is unknown; use one of {GEMM_ENGINES}")


def stream_copy_call(nbytes: int = STREAM_BYTES, threads: int | None = None) -> tuple[Callable[[], None], float]:
    """A no-argument call copying an ``nbytes`` fp32 array into another, and the bytes it moves (2 nbytes:
    read + write, STREAM's "copy" convention).

    The copy is split into ``threads`` contiguous slices copied in parallel (numpy releases the GIL), one
    per CPU by default, since a decode step reads its weights on every core.
    """
    threads = threads or os.cpu_count() or 1
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    cuts = np.linspace(0, src.size, threads + 1).astype(int)
    pieces = [(dst[lo:hi], src[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:])]
    if threads == 1:
        return (lambda: np.copyto(dst, src)), 2.0 * src.nbytes
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads)

    def call():
        for future in [pool.submit(np.copyto, d, s) for d, s in pieces]:
            future.result()

    return call, 2.0 * src.nbytes


MATMUL_READ_SHAPE = (512, 256)  # a bench routed expert's w1 [D, F], stored [in, out] as the models store it
MATMUL_READ_COUNT = 64          # distinct weights, 32 MB in all: beyond the L3, as a decode step's 217 MB are


def matmul_read_call(rows: int, count: int = MATMUL_READ_COUNT, shape: tuple[int, int] = MATMUL_READ_SHAPE
                     ) -> tuple[Callable[[], None], float]:
    """A no-argument call running ``count`` XLA-compiled products ``x @ W`` of ``rows`` rows with distinct fp32
    weights ``W`` of ``shape`` [I, O] in one TF program, and the weight bytes they read.

    A decode step is a chain of such products, a few rows each (B=8 at the dense layers, about 2 rows
    per routed expert at bench), and its memory-bandwidth floor assumes every byte is read at the copy's
    rate. This measures the rate XLA:CPU's own product reaches at those row counts, beside the copy, so
    the distance of a decode step to its floor can be split into what the kernels allow and what the
    model's dispatch adds. ``rows`` must be >= 1.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    weights = [tf.constant(rng.standard_normal(shape, dtype=np.float32)) for _ in range(count)]  # [I, O] each
    x = tf.constant(rng.standard_normal((rows, shape[0]), dtype=np.float32))                    # [rows, I]

    @tf.function(jit_compile=True)
    def chain(x):
        acc = tf.zeros([rows, shape[1]])                                                        # [rows, O]
        for w in weights:
            acc = acc + tf.matmul(x, w)
        return acc

    return (lambda: chain(x).numpy()), float(count * shape[0] * shape[1] * 4)


def best_rate(call: Callable[[], None], work: float, reps: int = 5) -> float:
    """``work`` per second of the fastest of ``reps`` calls after one warm-up call: a peak, not a typical rate."""
    call()
    return work / min(seconds(call) for _ in range(reps))


def interleaved_seconds(calls: Sequence[Callable[[], None]], reps: int) -> list[list[float]]:
    """``reps`` rounds of timing every call once, in order: ``out[i][j]`` is call j's time in round i.

    Timings of one round see the same machine state, so a ratio of two of them (a TF/Flax pair, a model
    call over a peak calibration beside it) cancels the host's load, as ``ratio_samples`` does.
    """
    return [[seconds(call) for call in calls] for _ in range(reps)]


# ------------------------------------------------------------------ the commit being benchmarked
def benchmarked_commit() -> str:
    """The commit asv records these results under: ``ASV_COMMIT`` when set, else ``git rev-parse HEAD``."""
    commit = os.environ.get("ASV_COMMIT")
    if commit:
        return commit
    return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, text=True).strip()
