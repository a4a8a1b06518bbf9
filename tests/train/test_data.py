"""The byte tokenizer and the tf.data pipeline: packing, seeded shuffling, resume, corpus errors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from experiments.data_throughput import pipeline_tokens_per_second, pipeline_window_rates
from tf_impl.data import DEFAULT_CORPUS, ByteTokenizer, DataConfig, DataError, corpus_files, make_dataset


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "a.txt").write_bytes(bytes(range(0, 100)))
    (tmp_path / "b.txt").write_bytes(bytes(range(100, 200)))
    (tmp_path / "notes.md").write_text("ignored: not a .txt file")
    return tmp_path


def batches(dc, n=None, **kw):
    ds = make_dataset(dc, **kw)
    return [b.numpy() for b in (ds.take(n) if n else ds)]


def test_tokenizer_round_trip_and_vocab_check():
    tok = ByteTokenizer()
    text = "count: 1 2 3 — ünïcode"
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.max() < 256
    assert tok.decode(ids) == text
    tok.check_vocab(256)
    with pytest.raises(DataError, match="vocab_size >= 256"):
        tok.check_vocab(100)
    with pytest.raises(DataError, match="vocab_size >= 256"):
        make_dataset(DataConfig(), vocab_size=128)


def test_packing_covers_the_byte_stream_across_files(corpus):
    dc = DataConfig(path=str(corpus), batch_size=5, seq_len=8, val_every=1000)
    rows = np.concatenate(batches(dc, repeat=False))  # one epoch, shuffled
    assert rows.shape == (25, 8) and rows.dtype == np.int32
    stream = np.arange(200)  # a.txt then b.txt, packed without a gap
    expected = stream[: 25 * 8].reshape(25, 8)
    assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))
    assert any(r[0] < 100 <= r[-1] for r in rows)  # one window straddles the two files


def test_shuffle_is_seeded_and_resume_skips_exactly(corpus):
    dc = DataConfig(path=str(corpus), batch_size=2, seq_len=8, val_every=1000)
    first = batches(dc, 30)  # more than one epoch (12 batches each)
    assert all((a == b).all() for a, b in zip(first, batches(dc, 30)))
    other = batches(DataConfig(path=str(corpus), batch_size=2, seq_len=8, val_every=1000, seed=1), 12)
    assert any((a != b).any() for a, b in zip(first, other))
    assert any((a != b).any() for a, b in zip(first[:12], first[12:24]))  # new order each epoch
    resumed = batches(dc, 10, skip_batches=17)
    assert all((a == b).all() for a, b in zip(first[17:27], resumed))


def test_validation_split_is_disjoint_and_ordered(corpus):
    dc = DataConfig(path=str(corpus), batch_size=1, seq_len=8, val_every=5)
    val = np.concatenate(batches(dc, split="val"))
    train = np.concatenate(batches(dc, repeat=False))
    assert val[:, 0].tolist() == [32, 72, 112, 152, 192]  # windows 4, 9, 14, 19, 24 of 25
    assert not set(map(tuple, val)) & set(map(tuple, train))


def test_corpus_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        corpus_files(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no .txt files"):
        corpus_files(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        corpus_files(tmp_path)
    with pytest.raises(DataError, match="is empty"):
        make_dataset(DataConfig(path=str(tmp_path / "empty.txt")))


def test_too_small_corpus_names_the_fix(corpus):
    with pytest.raises(DataError, match="fewer than batch_size"):
        make_dataset(DataConfig(path=str(corpus), batch_size=64, seq_len=8))


def test_shipped_corpus_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("generate", Path(DEFAULT_CORPUS) / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (Path(DEFAULT_CORPUS) / "synthetic.txt").read_text() == gen.generate()
    assert corpus_files(DEFAULT_CORPUS) == [str(Path(DEFAULT_CORPUS) / "synthetic.txt")]


def test_one_worker_exceeds_10k_tokens_per_second():
    assert pipeline_tokens_per_second(batch_size=4, seq_len=128, min_seconds=0.2) > 10_000


# ------------------------------------------------------------------ a real subword tokenizer
@pytest.fixture(scope="module")
def reference_corpus(tmp_path_factory):
    """A few topics of the Python Language Reference that CPython ships (benchmarks' real-text corpus)."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("pyref")
    for name in ("assert", "assignment", "class", "for", "function", "if", "try", "while"):
        (root / f"{name}.txt").write_text(topics[name], encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bpe(reference_corpus):
    from tf_impl.data import SubwordTokenizer

    return SubwordTokenizer.train_bpe(corpus_files(reference_corpus), vocab_size=600)


def test_bpe_tokenizer_is_lossless_and_compresses(bpe, reference_corpus):
    text = (reference_corpus / "for.txt").read_text()
    ids = bpe.encode(text)
    assert ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < bpe.vocab_size == 600
    assert bpe.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # subwords: far fewer tokens than bytes
    with pytest.raises(DataError, match="tokenizer has 600 ids, but the model has vocab_size=256"):
        bpe.check_vocab(256)


def test_pipeline_with_bpe_packs_the_encoded_stream(bpe, reference_corpus):
    dc = DataConfig(path=str(reference_corpus), batch_size=2, seq_len=32, val_every=1000)
    stream = np.concatenate([bpe.encode(Path(f).read_text()) for f in corpus_files(reference_corpus)])
    train = np.concatenate(batches(dc, repeat=False, tokenizer=bpe))  # [n, T], shuffled windows
    windows = {tuple(stream[i:i + 32]) for i in range(0, len(stream) - 31, 32)}
    assert train.shape[1] == 32 and all(tuple(w) in windows for w in train)
    assert len(train) >= len(windows) - 2 - 1  # all but the last partial batch and the held-out window


def test_bpe_pipeline_rates_one_per_window(bpe, reference_corpus):
    rates = pipeline_window_rates(reference_corpus, batch_size=2, seq_len=32, seconds=0.05, windows=3, tokenizer=bpe)
    assert len(rates) == 3 and min(rates) > 0
