"""Byte-level tasks that need long-range position: passkey retrieval and "cast" documents.

Both are built from the shipped corpus (``data/corpus``, bytes = token ids), whose text has no
uppercase letter and no ``@``; the tasks use exactly those bytes for what must be retrieved, so a
model can only get them right by attending back to where they were planted.

- **Passkey retrieval** (as in the YaRN paper, Peng et al. 2023): a random key of ``KEY_LEN``
  distinct uppercase letters is planted as ``@KEY\\n`` at a chosen depth in corpus filler, and the
  sequence ends with the question ``@`` followed by the key. A sample is correct when the model's
  argmax predicts every key letter of the question (teacher forcing; equal to greedy decoding of the
  key, since each prediction is conditioned on the true, i.e. the greedily predicted, prefix).
- **Cast documents** (long documents whose prediction needs long-range context): each document has a
  cast of ``N_NAMES`` random uppercase names with distinct initials, and is made of the corpus's
  ``the ADJ NOUN VERB the ADJ NOUN.`` sentences with both nouns replaced by cast names. A name's
  letters after its initial are predictable only from an earlier mention of that name, so loss on
  the same tokens falls as more of the document is in context, if attention reaches that far.

Everything is a pure numpy function of a ``numpy.random.Generator``: the same seed gives the same
samples on every machine.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass

import numpy as np


MARKER = ord("@")           # opens the planted key and the question; absent from the corpus
NEWLINE = ord("\n")
KEY_LEN = 5                 # letters in a passkey
N_NAMES = 4                 # cast size of a document
NAME_LEN = (3, 6)           # name lengths, inclusive
_UPPER = np.frombuffer(string.ascii_uppercase.encode(), np.uint8).astype(np.int32)  # [26]
# Letter i of a key is one of the five letters of group i (ABCDE, FGHIJ, ...): each letter can be found
# by what it is, in one attention hop, rather than by copying the letter after the previous one (an
# induction circuit, which a 2-layer model of this size needs far more training to form).
_KEY_GROUPS = _UPPER[:25].reshape(KEY_LEN, 5)  # [KEY_LEN, 5]
NEEDLE_LEN = KEY_LEN + 2    # "@" + key + "\n"
QUESTION_LEN = KEY_LEN + 1  # "@" + key, at the very end


class TaskError(ValueError):
    """A task parameter that cannot produce a sample (e.g. a window too short for the needle)."""


@functools.lru_cache(maxsize=4)
def corpus_tokens(path: str | None = None) -> np.ndarray:
    """All bytes of the corpus at ``path`` (default: the shipped one) as int32 token ids of shape [N], files in
    stream order."""
    # tf_impl.data imports TensorFlow: imported here, so that importing this module (asv discovers the suite by
    # importing bench_context, which reads METHODS and STAGES) costs no TensorFlow import.
    from tf_impl.data import DEFAULT_CORPUS, corpus_files

    data = b"".join(open(f, "rb").read() for f in corpus_files(str(DEFAULT_CORPUS) if path is None else path))
    return np.frombuffer(data, np.uint8).astype(np.int32)


@functools.lru_cache(maxsize=4)
def corpus_sentences(path: str | None = None) -> tuple[tuple[str, ...], ...]:
    """The corpus's ``the ADJ NOUN VERB the ADJ NOUN.`` lines, split into words (the cast documents' frames)."""
    from tf_impl.data import ByteTokenizer

    text = ByteTokenizer().decode(corpus_tokens(path))
    frames = tuple(tuple(line.split(" ")) for line in text.splitlines()
                   if line.startswith("the ") and line.endswith(".") and len(line.split(" ")) == 7)
    if not frames:
        raise TaskError(f"corpus {path} holds no 'the ADJ NOUN VERB the ADJ NOUN.' sentence to build cast documents from")
    return frames


# ---------------------------------------------------------------------------------------- passkey
@dataclass(frozen=True)
class PasskeyBatch:
    """``tokens`` int32 [B, T]; ``needle_at`` [B]: index of each planted ``@``; the key is ``tokens[:, -KEY_LEN:]``."""

    tokens: np.ndarray
    needle_at: np.ndarray

    @property
    def distance(self) -> np.ndarray:
        """[B]: positions between the planted ``@`` and the question's ``@`` (how far back the key is)."""
        return self.tokens.shape[1] - QUESTION_LEN - self.needle_at


def passkey_batch(rng: np.random.Generator, n: int, length: int, depth: float | None = None) -> PasskeyBatch:
    """``n`` passkey samples of exactly ``length`` tokens.

    Layout: ``filler[:p] @KEY\\n filler[p:] @KEY`` with filler a random stretch of the corpus. The
    needle starts at ``p = round(depth * F)`` with ``F = length - NEEDLE_LEN - QUESTION_LEN`` filler
    tokens (depth 0: first token, 1: just before the question), or uniformly in [0, F] when ``depth``
    is None (training). Letter i of each key is drawn uniformly from group i (``_KEY_GROUPS``).

    Args:
        rng: the seeded generator all randomness comes from.
        n: number of samples, B.
        length: T, the total length including needle and question.
        depth: needle depth as a fraction of the filler in [0, 1], or None for uniform.

    Returns:
        a PasskeyBatch of shape [B, T].
    """
    filler_len = length - NEEDLE_LEN - QUESTION_LEN
    if filler_len < 0:
        raise TaskError(f"length={length} cannot hold the needle and the question ({NEEDLE_LEN + QUESTION_LEN} tokens); "
                        f"use length >= {NEEDLE_LEN + QUESTION_LEN}")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise TaskError(f"depth={depth} must lie in [0, 1] (0 = start of the window, 1 = just before the question)")
    corpus = corpus_tokens()
    tokens = np.empty((n, length), np.int32)
    needle_at = np.empty(n, np.int64)
    for i in range(n):
        key = _KEY_GROUPS[np.arange(KEY_LEN), rng.integers(0, _KEY_GROUPS.shape[1], KEY_LEN)]  # [KEY_LEN]
        start = int(rng.integers(0, corpus.size - filler_len))
        filler = corpus[start:start + filler_len]                                     # [F]
        p = int(rng.integers(0, filler_len + 1)) if depth is None else int(round(depth * filler_len))
        needle = np.concatenate([[MARKER], key, [NEWLINE]])
        tokens[i] = np.concatenate([filler[:p], needle, filler[p:], [MARKER], key])   # [T]
        needle_at[i] = p
    return PasskeyBatch(tokens, needle_at)


def passkey_correct(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Per sample, True when the argmax of ``logits`` [B, T, V] predicts all ``KEY_LEN`` key tokens of ``tokens`` [B, T].

    Position t's logits predict token t + 1, so the key tokens ``tokens[:, -KEY_LEN:]`` are predicted
    by ``logits[:, -KEY_LEN - 1:-1]``.
    """
    if logits.shape[:2] != tokens.shape:
        raise TaskError(f"logits {list(logits.shape)} and tokens {list(tokens.shape)} must agree on [B, T]")
    predicted = np.argmax(logits[:, -KEY_LEN - 1:-1], axis=-1)                       # [B, KEY_LEN]
    return np.all(predicted == tokens[:, -KEY_LEN:], axis=-1)                         # [B]


# ---------------------------------------------------------------------------------------- cast documents
def _random_name(rng: np.random.Generator, initial: int) -> np.ndarray:
    length = int(rng.integers(NAME_LEN[0], NAME_LEN[1] + 1))
    return np.concatenate([[initial], rng.choice(_UPPER, length - 1)])


def cast_documents(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """``n`` cast documents of exactly ``length`` tokens, int32 [B, T].

    Each document draws ``N_NAMES`` names with distinct uppercase initials, then writes corpus
    sentences (``the ADJ NOUN VERB the ADJ NOUN.``, one per line) with each NOUN replaced by a name
    drawn uniformly from the cast, until ``length`` tokens; the last sentence is cut at ``length``.
    Given an earlier mention, a name's letters after the initial cost nothing to predict; without
    one they cost ~ln 26 each, so the loss measures how much earlier context the model can use.
    """
    frames = corpus_sentences()
    docs = np.empty((n, length), np.int32)
    for i in range(n):
        initials = rng.choice(_UPPER, N_NAMES, replace=False)
        cast = [_random_name(rng, int(c)) for c in initials]
        parts, size = [], 0
        while size < length:
            words = frames[int(rng.integers(len(frames)))]
            line = []
            for j, word in enumerate(words):
                if j in (2, 6):  # the two nouns; the second carries the full stop
                    line.append(cast[int(rng.integers(N_NAMES))])
                    line.append(np.frombuffer(b"." if j == 6 else b" ", np.uint8).astype(np.int32))
                else:
                    line.append(np.frombuffer(word.encode() + b" ", np.uint8).astype(np.int32))
            line.append(np.array([NEWLINE], np.int32))
            parts.append(np.concatenate(line))
            size += parts[-1].size
        docs[i] = np.concatenate(parts)[:length]
    return docs
