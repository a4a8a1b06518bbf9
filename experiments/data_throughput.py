"""P4.data_throughput: tokens per second that one tf.data worker delivers ("> 10K tokens/sec/worker").

The measured thing is the whole ``tf_impl.data.make_dataset`` pipeline (file read, tokenisation,
packing, split, shuffle, batch, prefetch) with a one-thread pool, byte ids or a trained subword
tokenizer; ``benchmarks/bench_data.py`` records the per-window rates.
"""

from __future__ import annotations

import os
import time


def pipeline_tokens_per_second(
    path: str | os.PathLike | None = None, batch_size: int = 8, seq_len: int = 512, min_seconds: float = 1.0,
    tokenizer=None,
) -> float:
    """Tokens per second that ONE tf.data worker (a one-thread pool) delivers as packed, shuffled batches.

    Measures the whole pipeline (file read, tokenisation, packing, split, shuffle, batch, prefetch) for
    at least ``min_seconds`` after one warm-up batch. Criterion: "> 10K tokens/sec/worker".

    Args:
        path: the corpus (file or directory); None means the shipped corpus.
        batch_size: B, windows per batch.
        seq_len: T, tokens per window.
        min_seconds: the minimum timed duration; longer gives a steadier number.
        tokenizer: a trained ``tf_impl.data.SubwordTokenizer``; None means byte ids.

    Returns:
        tokens per second (B * T per batch), a float.
    """
    return pipeline_window_rates(path, batch_size, seq_len, min_seconds, 1, tokenizer)[0]


def pipeline_window_rates(
    path: str | os.PathLike | None = None, batch_size: int = 8, seq_len: int = 512, seconds: float = 0.3,
    windows: int = 9, tokenizer=None,
) -> list[float]:
    """``pipeline_tokens_per_second`` over ``windows`` consecutive windows of one pipeline, one rate each.

    One pipeline is built and warmed up (one batch) once, so a slow build (a subword tokenizer encodes
    the corpus to size it) is paid once; the per-window rates are the samples whose spread a benchmark
    reports.
    """
    import numpy as np

    from tf_impl.data import DEFAULT_CORPUS, DataConfig, make_dataset

    dc = DataConfig(path=str(path or DEFAULT_CORPUS), batch_size=batch_size, seq_len=seq_len)
    it = iter(make_dataset(dc, threads=1, tokenizer=tokenizer))
    next(it)
    rates = []
    for _ in range(windows):
        tokens, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            tokens += int(np.prod(next(it).shape))
        rates.append(tokens / elapsed)
    return rates
