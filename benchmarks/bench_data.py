"""Training-data pipeline throughput. Criterion: P4.data_throughput ("> 10K tokens/sec/worker").

Two measurements of the same one-worker ``tf_impl.data`` pipeline (read, tokenise, pack, split, shuffle,
batch, prefetch):

* ``track_tokens_per_second``: byte ids over the shipped synthetic corpus (a proxy: no real tokenizer);
* ``track_bpe_tokens_per_second``: a byte-level BPE tokenizer (8,192 ids) trained with the ``tokenizers``
  library on a real English text that an installed package ships: the Python Language Reference topics
  of CPython's ``pydoc_data`` (79 documents, about 465 KB), one ``.txt`` file per topic.

Each value is the median of ``WINDOWS`` consecutive measuring windows of one pipeline, and asv records
their spread, which the regression gate's significance test needs. There is no host calibration here:
none tried cancels this pipeline's noise on a shared 2-core host. Per 0.1-0.3 s window the byte pipeline's
tokens/s vary with a coefficient of variation of 0.3-0.8 within one run, and dividing each window by a
memcpy GB/s, by the process CPU time, by a NumPy loop or by a frozen reference tf.data pipeline measured
next to it left that spread as large or larger (docs/regression-gate.md has the numbers).
"""

from __future__ import annotations

from . import common

WINDOWS = 9             # measuring windows: the samples asv records (>= 7 for asv's Mann-Whitney test)
WINDOW_SECONDS = 0.3    # byte ids: an epoch of the shipped corpus takes ~0.02 s
BPE_WINDOW_SECONDS = 1.0  # BPE: an epoch (re-tokenised, ~110K tokens) takes ~1 s; a window spans one
BPE_VOCAB = 8192


class DataPipeline:
    """One tf.data worker (one-thread pool) reading, tokenising, packing, shuffling and batching a corpus."""

    timeout = 180

    def setup(self):
        import tempfile

        from tf_impl.data import SubwordTokenizer, corpus_files

        self._tmp = tempfile.TemporaryDirectory()
        self.corpus = common.python_reference_corpus(self._tmp.name)
        self.tokenizer = SubwordTokenizer.train_bpe(corpus_files(self.corpus), BPE_VOCAB)

    def teardown(self):
        self._tmp.cleanup()

    def track_tokens_per_second(self):
        """P4.data_throughput: tokens/s one worker delivers with byte ids over the shipped synthetic corpus
        (``experiments.data_throughput.pipeline_window_rates``), the median of the windows."""
        from experiments.data_throughput import pipeline_window_rates

        return common.sampled(pipeline_window_rates(seconds=WINDOW_SECONDS, windows=WINDOWS))

    track_tokens_per_second.unit = "tokens/s"
    track_tokens_per_second.pretty_name = "Data pipeline tokens/s, one worker, byte ids, synthetic corpus"
    track_tokens_per_second.version = "2"  # 2: median of 9 windows with their spread (was: one 2 s window)

    def track_bpe_tokens_per_second(self):
        """P4.data_throughput: tokens/s one worker delivers with a trained byte-level BPE tokenizer over the
        Python Language Reference text shipped in CPython's pydoc_data, the median of the windows."""
        from experiments.data_throughput import pipeline_window_rates

        return common.sampled(pipeline_window_rates(self.corpus, seconds=BPE_WINDOW_SECONDS, windows=WINDOWS,
                                                    tokenizer=self.tokenizer))

    track_bpe_tokens_per_second.unit = "tokens/s"
    track_bpe_tokens_per_second.pretty_name = "Data pipeline tokens/s, one worker, BPE, Python reference text"
    track_bpe_tokens_per_second.version = "1"
