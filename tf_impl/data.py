"""Training data: a byte-level tokenizer and a tf.data pipeline that packs text files into windows.

The pipeline reads every ``.txt`` file of a corpus directory from disk, turns bytes into token ids
(id = byte value, 256 ids), packs the stream across file boundaries into fixed windows of
``seq_len`` tokens, splits off every ``val_every``-th window as validation data, shuffles windows
with a fixed seed (a fresh order each epoch, the same orders on every run), batches them to
``[B, T]`` int32 and prefetches. The model's loss shifts by one itself (logits[:, :-1] predict
tokens[:, 1:]), so a window is the model input as is.

A run resumes exactly by rebuilding the pipeline with ``skip_batches`` = batches already consumed.

The shipped corpus (``data/corpus/synthetic.txt``, written by ``data/corpus/generate.py``) is
structured synthetic text that a tiny model learns in minutes; nothing is downloaded.

``make_dataset(..., tokenizer=SubwordTokenizer.train_bpe(files))`` runs the same pipeline with a real
subword tokenizer (a byte-level BPE trained with the ``tokenizers`` library): each file is read by tf.data
and encoded in the worker, then packed, split, shuffled and batched as above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"


class DataError(ValueError):
    """A corpus or data setting that cannot produce training batches. The message names the fix."""


class ByteTokenizer:
    """Token id = byte value: 256 ids, no special tokens, lossless for any UTF-8 text."""

    vocab_size = 256

    def check_vocab(self, vocab_size: int) -> None:
        """Raise DataError when a model with ``vocab_size`` logits cannot represent every byte id."""
        if vocab_size < self.vocab_size:
            raise DataError(
                f"the byte tokenizer needs vocab_size >= {self.vocab_size}, but the model has "
                f"vocab_size={vocab_size}; use a config with vocab_size >= {self.vocab_size}"
            )

    def encode(self, text: str) -> np.ndarray:
        """UTF-8 bytes of ``text`` as int32 ids of shape [len(bytes)]."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids: ArrayLike) -> str:
        """Inverse of ``encode``; ids outside 0..255 are an error, broken UTF-8 becomes U+FFFD."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise DataError(f"token ids must be bytes 0..255 to decode, got range [{ids.min()}, {ids.max()}]")
        return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class SubwordTokenizer:
    """A trained subword tokenizer from the ``tokenizers`` library (e.g. byte-level BPE), ids int32.

    Wraps a ``tokenizers.Tokenizer`` so that the pipeline sees the same ``encode``/``decode``/
    ``check_vocab``/``vocab_size`` as ``ByteTokenizer``.
    """

    def __init__(self, tokenizer) -> None:  # noqa: ANN001 (tokenizers.Tokenizer, imported lazily)
        self._tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train_bpe(cls, files: list[str], vocab_size: int = 8192) -> "SubwordTokenizer":
        """Train a byte-level BPE tokenizer (GPT-2 style pre-tokenisation) with ``vocab_size`` ids on ``files``.

        Args:
            files: paths of the UTF-8 text files to train on.
            vocab_size: the number of ids, the 256 byte symbols included; the model's ``vocab_size`` must be
                at least this (``check_vocab``).

        Returns:
            the trained tokenizer.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train([str(f) for f in files], trainer)
        return cls(tokenizer)

    def check_vocab(self, vocab_size: int) -> None:
        """Raise DataError when a model with ``vocab_size`` logits cannot represent every id."""
        if vocab_size < self.vocab_size:
            raise DataError(f"the tokenizer has {self.vocab_size} ids, but the model has vocab_size={vocab_size}; "
                            f"use a config with vocab_size >= {self.vocab_size} or train a smaller vocabulary")

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``, int32 of shape [n]."""
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int32)

    def decode(self, ids: ArrayLike) -> str:
        """Inverse of ``encode`` (lossless for byte-level BPE)."""
        return self._tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)])


@dataclass(frozen=True)
class DataConfig:
    """Where the text is and how it is cut: ``batch_size`` windows of ``seq_len`` tokens per batch."""

    path: str = str(DEFAULT_CORPUS)
    batch_size: int = 8
    seq_len: int = 64
    seed: int = 0
    shuffle_buffer: int = 10_000
    val_every: int = 20

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "shuffle_buffer", "val_every"):
            if getattr(self, name) < 1:
                raise DataError(f"DataConfig.{name}={getattr(self, name)} must be >= 1")


def corpus_files(path: str | os.PathLike) -> list[str]:
    """The ``.txt`` files of a corpus (a file, or a directory's ``*.txt`` sorted by name).

    Sorting fixes the byte stream's order, so windows (and the train/val split) are the same on
    every machine. Raises DataError when the path does not exist, holds no ``.txt`` file, or all of
    them are empty.

    Args:
        path: a ``.txt`` file or a directory of them (not searched recursively).

    Returns:
        the file paths as strings, in stream order.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"corpus path {p} does not exist; pass a .txt file or a directory of .txt files "
            f"(the shipped corpus is {DEFAULT_CORPUS})"
        )
    files = [p] if p.is_file() else sorted(f for f in p.glob("*.txt") if f.is_file())
    if not files:
        raise DataError(f"corpus directory {p} holds no .txt files; add text files or point at {DEFAULT_CORPUS}")
    if sum(f.stat().st_size for f in files) == 0:
        raise DataError(f"corpus {p} is empty: its {len(files)} .txt file(s) hold 0 bytes")
    return [str(f) for f in files]


def corpus_size(path: str | os.PathLike) -> int:
    """Total bytes (= tokens) of a corpus."""
    return sum(os.path.getsize(f) for f in corpus_files(path))


def byte_ids(raw: tf.Tensor) -> tf.Tensor:
    """The byte tokenizer as TF ops: a string scalar -> its UTF-8 bytes as int32 ids [n] (id = byte value).

    The data pipeline and the exported SavedModel's ``tokenize`` signature (``tf_impl.export``) both use it,
    so a served model reads text exactly as it was trained on it.
    """
    return tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int32)


def _windows(files: list[str], seq_len: int, tokenizer: SubwordTokenizer | None = None) -> tf.data.Dataset:
    """All complete ``seq_len`` windows of the concatenated token stream, in order, as int32 [T].

    Without ``tokenizer`` the ids are the bytes (decoded inside tf.data); with one, each file's text is
    encoded by it in the pipeline's worker (``tf.numpy_function``).
    """
    ds = tf.data.Dataset.from_tensor_slices(files)
    if tokenizer is None:
        ds = ds.map(lambda f: byte_ids(tf.io.read_file(f)))  # [bytes]
    else:
        def encode(raw: bytes) -> np.ndarray:
            return tokenizer.encode(raw.decode("utf-8", errors="replace"))

        def tokens(f):
            ids = tf.numpy_function(encode, [tf.io.read_file(f)], tf.int32, stateful=False)
            return tf.ensure_shape(ids, [None])  # [tokens of the file]

        ds = ds.map(tokens)
    return ds.rebatch(seq_len, drop_remainder=True)  # packs across file boundaries; [T]


def make_dataset(
    dc: DataConfig,
    *,
    split: str = "train",
    vocab_size: int | None = None,
    skip_batches: int = 0,
    repeat: bool = True,
    threads: int | None = None,
    tokenizer: SubwordTokenizer | None = None,
) -> tf.data.Dataset:
    """Batches of token windows, int32 of shape [batch_size, seq_len].

    ``split="train"`` shuffles (seeded, reshuffled per epoch) and repeats forever unless ``repeat``
    is False; ``split="val"`` yields the held-out windows in order, once. ``skip_batches`` resumes a
    run where it stopped. ``threads`` caps tf.data's thread pool (1 = one worker). ``tokenizer``
    replaces the byte ids with a trained subword tokenizer's (``SubwordTokenizer``).
    """
    if split not in ("train", "val"):
        raise DataError(f"split={split!r} is unknown; use 'train' or 'val'")
    if vocab_size is not None:
        (tokenizer or ByteTokenizer()).check_vocab(vocab_size)
    files = corpus_files(dc.path)
    total = corpus_size(dc.path) if tokenizer is None else sum(
        len(tokenizer.encode(Path(f).read_text(errors="replace"))) for f in files)
    n_windows = total // dc.seq_len
    n_split = n_windows // dc.val_every if split == "val" else n_windows - n_windows // dc.val_every
    if n_split < dc.batch_size:
        raise DataError(
            f"corpus {dc.path} ({total} tokens) gives {n_split} {split} windows of seq_len={dc.seq_len}, "
            f"fewer than batch_size={dc.batch_size}; use more text, a shorter seq_len or a smaller batch"
        )
    ds = _windows(files, dc.seq_len, tokenizer).enumerate()
    in_val = lambda i, w: tf.equal(i % dc.val_every, dc.val_every - 1)  # noqa: E731
    ds = ds.filter(in_val) if split == "val" else ds.filter(lambda i, w: tf.logical_not(in_val(i, w)))
    ds = ds.map(lambda i, w: w)
    if split == "train":
        ds = ds.shuffle(dc.shuffle_buffer, seed=dc.seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
    ds = ds.batch(dc.batch_size, drop_remainder=True)  # [B, T]
    if skip_batches:
        ds = ds.skip(skip_batches)
    options = tf.data.Options()
    options.deterministic = True
    if threads is not None:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(2)
