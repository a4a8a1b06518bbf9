"""Training-data pipeline throughput. Criterion: P4.data_throughput ("> 10K tokens/sec/worker").

The value is the median of ``WINDOWS`` measuring windows, each a fresh one-worker pipeline, and asv
records their spread, which the regression gate's significance test needs. There is no host calibration
here: none tried cancels this pipeline's noise on a shared 2-core host. Per 0.1-0.3 s window the
tokens/s vary with a coefficient of variation of 0.3-0.8 within one run, and dividing each window by a
memcpy GB/s, by the process CPU time, by a NumPy loop or by a frozen reference tf.data pipeline
measured next to it left that spread as large or larger (docs/regression-gate.md has the numbers).
"""

from __future__ import annotations

from . import common

WINDOWS = 9           # measuring windows: the samples asv records (>= 7 for asv's Mann-Whitney test)
WINDOW_SECONDS = 0.3  # each window, after one warm-up batch


class DataPipeline:
    """One tf.data worker (one-thread pool) reading, tokenising, packing, shuffling and batching the corpus."""

    timeout = 120

    def track_tokens_per_second(self):
        """P4.data_throughput: tokens/s one worker delivers (``tf_impl.data.pipeline_tokens_per_second``),
        the median of the windows."""
        from tf_impl.data import pipeline_tokens_per_second

        return common.sampled([pipeline_tokens_per_second(min_seconds=WINDOW_SECONDS) for _ in range(WINDOWS)])

    track_tokens_per_second.unit = "tokens/s"
    track_tokens_per_second.pretty_name = "Data pipeline tokens/s, one worker"
    track_tokens_per_second.version = "2"  # 2: median of 9 windows with their spread (was: one 2 s window)
