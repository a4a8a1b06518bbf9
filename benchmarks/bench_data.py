"""Training-data pipeline throughput. Criterion: P4.data_throughput ("> 10K tokens/sec/worker")."""

from __future__ import annotations

MIN_SECONDS = 2.0  # measuring window after one warm-up batch


class DataPipeline:
    """One tf.data worker (one-thread pool) reading, tokenising, packing, shuffling and batching the corpus."""

    timeout = 120

    def track_tokens_per_second(self):
        """P4.data_throughput: tokens/s one worker delivers (``tf_impl.data.pipeline_tokens_per_second``)."""
        from tf_impl.data import pipeline_tokens_per_second

        return pipeline_tokens_per_second(min_seconds=MIN_SECONDS)

    track_tokens_per_second.unit = "tokens/s"
    track_tokens_per_second.pretty_name = "Data pipeline tokens/s, one worker"
