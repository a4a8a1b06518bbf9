"""The passkey and cast-document generators and the passkey checker, on hand-checked cases."""

import numpy as np
import pytest

from experiments import context_tasks as ct
from tf_impl.data import ByteTokenizer

AT, NL = ord("@"), ord("\n")


def _upper(tokens):
    return (tokens >= ord("A")) & (tokens <= ord("Z"))


def test_the_corpus_has_no_marker_and_no_uppercase():
    # The premise of both tasks: what must be retrieved uses bytes the filler never contains.
    corpus = ct.corpus_tokens()
    assert corpus.size > 100_000
    assert not np.any(corpus == AT) and not np.any(_upper(corpus))


@pytest.mark.parametrize("length", [13, 64, 256])
def test_passkey_layout(length):
    batch = ct.passkey_batch(np.random.default_rng(0), 8, length)
    t = batch.tokens
    assert t.shape == (8, length) and t.dtype == np.int32
    for row, p in zip(t, batch.needle_at):
        assert list(np.flatnonzero(row == AT)) == [p, length - ct.QUESTION_LEN]   # the needle and the question
        key = row[p + 1:p + 1 + ct.KEY_LEN]
        assert row[p + 1 + ct.KEY_LEN] == NL
        np.testing.assert_array_equal(row[-ct.KEY_LEN:], key)                    # the question asks for it
        assert np.sum(_upper(row)) == 2 * ct.KEY_LEN                             # nowhere else
        groups = (key - ord("A")) // 5
        np.testing.assert_array_equal(groups, np.arange(ct.KEY_LEN))             # letter i from group i
    np.testing.assert_array_equal(batch.distance, length - ct.QUESTION_LEN - batch.needle_at)


def test_passkey_depth_places_the_needle():
    length = 64
    filler = length - ct.NEEDLE_LEN - ct.QUESTION_LEN
    rng = np.random.default_rng(1)
    assert set(ct.passkey_batch(rng, 4, length, depth=0.0).needle_at) == {0}
    assert set(ct.passkey_batch(rng, 4, length, depth=1.0).needle_at) == {filler}   # right before the question
    assert set(ct.passkey_batch(rng, 4, length, depth=0.5).needle_at) == {round(filler / 2)}
    assert set(ct.passkey_batch(rng, 4, length, depth=1.0).distance) == {ct.NEEDLE_LEN}


def test_passkey_filler_is_corpus_text():
    batch = ct.passkey_batch(np.random.default_rng(2), 1, 200, depth=0.5)
    row, p = batch.tokens[0], batch.needle_at[0]
    filler = np.concatenate([row[:p], row[p + ct.NEEDLE_LEN:-ct.QUESTION_LEN]])
    text = ByteTokenizer().decode(ct.corpus_tokens()).encode()
    assert filler.astype(np.uint8).tobytes() in text


def test_passkey_is_a_function_of_the_seed():
    a = ct.passkey_batch(np.random.default_rng(7), 4, 64)
    b = ct.passkey_batch(np.random.default_rng(7), 4, 64)
    c = ct.passkey_batch(np.random.default_rng(8), 4, 64)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


def test_passkey_bad_arguments_name_the_fix():
    with pytest.raises(ct.TaskError, match="use length >= 13"):
        ct.passkey_batch(np.random.default_rng(0), 1, 12)
    with pytest.raises(ct.TaskError, match=r"depth=1.5 must lie in \[0, 1\]"):
        ct.passkey_batch(np.random.default_rng(0), 1, 64, depth=1.5)


def _one_hot(tokens, vocab=256, wrong_at=None):
    """Logits whose argmax at position t is tokens[t+1] (a perfect predictor), optionally wrong at one position."""
    b, t = tokens.shape
    logits = np.zeros((b, t, vocab), np.float32)
    nxt = np.concatenate([tokens[:, 1:], tokens[:, :1]], 1)
    np.put_along_axis(logits, nxt[..., None], 1.0, -1)
    if wrong_at is not None:
        row, pos = wrong_at
        logits[row, pos] = 0.0
        logits[row, pos, (nxt[row, pos] + 1) % vocab] = 1.0
    return logits


def test_passkey_checker_needs_every_key_letter():
    tokens = ct.passkey_batch(np.random.default_rng(3), 3, 40).tokens
    assert ct.passkey_correct(_one_hot(tokens), tokens).tolist() == [True, True, True]
    # wrong on the last key letter of sample 1 (predicted at position T-2), then on the first of sample 2 (T-6)
    assert ct.passkey_correct(_one_hot(tokens, wrong_at=(1, 38)), tokens).tolist() == [True, False, True]
    assert ct.passkey_correct(_one_hot(tokens, wrong_at=(2, 34)), tokens).tolist() == [True, True, False]
    # a wrong prediction outside the key (position 10, in the filler) does not count
    assert ct.passkey_correct(_one_hot(tokens, wrong_at=(0, 10)), tokens).tolist() == [True, True, True]


def test_passkey_checker_rejects_mismatched_shapes():
    tokens = ct.passkey_batch(np.random.default_rng(3), 2, 40).tokens
    with pytest.raises(ct.TaskError, match="must agree on"):
        ct.passkey_correct(np.zeros((2, 39, 256)), tokens)


def test_cast_documents_reuse_a_small_cast():
    docs = ct.cast_documents(np.random.default_rng(4), 3, 512)
    assert docs.shape == (3, 512) and docs.dtype == np.int32
    tok = ByteTokenizer()
    for doc in docs:
        lines = tok.decode(doc).split("\n")[:-1]                                  # drop the cut last line
        assert len(lines) >= 8 and all(line.startswith("the ") and line.endswith(".") for line in lines)
        names = {w.rstrip(".") for line in lines for w in line.split(" ") if w[:1].isupper()}
        assert 2 <= len(names) <= ct.N_NAMES                                      # a cast, reused
        assert len({n[0] for n in names}) == len(names)                           # distinct initials
        assert all(ct.NAME_LEN[0] <= len(n) <= ct.NAME_LEN[1] and n.isupper() for n in names)
        assert all(len(line.split(" ")) == 7 for line in lines)                   # the corpus sentence frame
    assert not np.array_equal(docs[0], docs[1])


def test_cast_documents_are_a_function_of_the_seed():
    np.testing.assert_array_equal(ct.cast_documents(np.random.default_rng(5), 2, 100),
                                  ct.cast_documents(np.random.default_rng(5), 2, 100))
