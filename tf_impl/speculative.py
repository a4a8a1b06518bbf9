"""Self-speculative decoding with the model's own MTP module (the criterion run is ``experiments.mtp_speedup``).

The first MTP module, trained to predict token t+2 from the main hidden state h_t and the
embedding of token t+1, drafts one token ahead; the main model verifies it in the same forward
pass that produces the next token. One round, for a sequence at cache position p, with the pending
token x (greedy's choice for position p, not yet in the cache) and the draft d (for position p+1):

1. main model on [x, d] at positions p, p+1 (cached): greedy tokens y0 (for p+1) and y1 (for p+2),
   and hidden states h_p, h_{p+1};
2. in the same compiled call, the MTP block (with its own cache) on [(h_p, y0), (h_{p+1}, y1)] at
   positions p, p+1: drafts for p+2 (valid whatever d was) and for p+3 (valid if d == y0);
3. on the host: if d == y0 both x and d are emitted, the sequence advances by 2, the pending token is
   y1 and the draft the one for p+3; otherwise only x is emitted, it advances by 1 (the stale entry
   at p+1 is masked and overwritten by the next round), the pending token is y0 and the draft the one
   for p+2.

Acceptance is per sequence: in a batch every row keeps its own position p (a vector [B] passed to
``Transformer.hidden_states``, which writes, masks and rotates each row at its own positions), so
one row's rejected draft costs the other rows nothing. That is what makes the method pay in serving,
where a batch already reads most of the routed experts and verifying a second token per row adds
little to the step (``experiments.mtp_speedup``). A row that has all its tokens idles (its results
are ignored) until the last row finishes.

Each compiled round reads only the filled part of the caches (``cache_read_length`` of the longest
row's p+2 slots), so it is traced once per read bucket and batch size, as ``Transformer.decode_step`` is.

Every emitted token is the main model's own argmax given the tokens before it, so the output is
greedy decoding's output; the draft only decides how many of them one call yields per row (1 or 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from tf_impl.attention import KVCache, cache_read_length
from tf_impl.model import InputError


@dataclass
class SpeculativeStats:
    """Counts of one ``SpeculativeDecoder.generate`` call."""

    rounds: int = 0
    drafts: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Share of drafted tokens that the main model confirmed; 0.0 when nothing was drafted."""
        return self.accepted / self.drafts if self.drafts else 0.0


class SpeculativeDecoder:
    """Greedy decoding of a ``tf_impl.Transformer`` with MTP module 0 as the drafter (see module doc).

    Uses only the model's public API: ``hidden_states`` and ``logits`` for the main model at a cache
    position, ``rope_at``, the embedding, the head and MTP module 0 for the draft. The main cache is
    the model's own ``KVCache`` (``mode`` ``"absorb"`` or ``"naive"``), the MTP block gets a one-layer one;
    both are passed into the compiled steps as arguments, with the position as a tensor, so a step is
    traced once per batch size.
    """

    def __init__(self, model, mode: str = "absorb", jit_compile: bool = True):
        cfg = model.cfg
        if cfg.n_mtp_modules < 1:
            raise ValueError("self-speculative decoding needs an MTP module; the config has n_mtp_modules=0")
        self.model, self.cfg, self.mode = model, cfg, mode
        self.mtp = model.mtp[0]
        self._mtp_cfg = cfg.replace(n_layers=1, n_dense_layers=0, n_mtp_modules=0)  # cache shapes of one block
        self._prefill = tf.function(self._prefill_impl, jit_compile=jit_compile)
        self._round = tf.function(self._round_impl, jit_compile=jit_compile)

    # ------------------------------------------------------------------ compiled pieces
    def _main(self, tokens, start, cache: KVCache, read_len=None):
        """Main model on ``tokens`` [B, T] at positions start..start+T-1: (greedy ids [B, T], h [B, T, D])."""
        h, _ = self.model.hidden_states(tokens, cache, start, read_len)  # [B, T, D]
        ids = tf.argmax(self.model.logits(h), -1, output_type=tf.int32)  # [B, T]
        return ids, h

    def _draft(self, next_tokens, h, start, mtp_cache: KVCache, read_len=None):
        """MTP drafts [B, T] for positions start+2..: inputs emb(next_tokens) [B, T] and h [B, T, D].

        ``start`` is 0 (the prompt) or the rows' positions [B]; rope_at gives [T, R/2] or [B, T, R/2].
        """
        m = self.model
        cos, sin = m.rope_at(start, next_tokens.shape[1])  # [T, R/2] or [B, T, R/2] each
        emb = tf.gather(m.embed, next_tokens)  # [B, T, D]
        out, _ = self.mtp(emb, h, cos, sin, mtp_cache.layers[0], start, self.mode, read_len)  # [B, T, D]
        return tf.argmax(m.head(self.mtp.norm(out)), -1, output_type=tf.int32)  # [B, T]

    def _prefill_impl(self, prompt, cache, mtp_cache):
        """Prompt [B, n] -> (first new token x [B], draft for the position after it [B])."""
        ids, h = self._main(prompt, 0, cache)
        x = ids[:, -1]
        drafts = self._draft(tf.concat([prompt[:, 1:], x[:, None]], 1), h, 0, mtp_cache)  # [B, n]
        return x, drafts[:, -1]

    def _round_impl(self, x, d, pos, cache, mtp_cache, read_len: int):
        """One verify+draft round at per-row positions ``pos`` [B]: (y [B, 2], drafts [B, 2]) as in the module doc.

        ``read_len`` (a Python int, one trace per value) is the cache slots read, >= max(pos) + 2.
        """
        y, h = self._main(tf.stack([x, d], 1), pos, cache, read_len)  # [B, 2], [B, 2, D]
        return y, self._draft(y, h, pos, mtp_cache, read_len)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: ArrayLike, max_new_tokens: int) -> tuple[np.ndarray, SpeculativeStats]:
        """Greedy continuation of ``prompt`` [B, n]: (int32 [B, max_new_tokens], stats).

        The tokens equal ``model.generate(prompt, max_new_tokens, temperature=0.0)``; each row accepts
        or rejects its own drafts (``stats`` counts one draft per row and round while the row still
        needs tokens).
        """
        m = self.model
        arr = m.check_tokens(prompt, "prompt")
        b, n = arr.shape
        if n + max_new_tokens > self.cfg.max_seq_len:
            raise InputError(f"prompt + max_new_tokens of length {n + max_new_tokens} exceeds "
                             f"max_seq_len={self.cfg.max_seq_len}; shorten the prompt or generate fewer tokens")
        stats = SpeculativeStats()
        out = np.zeros([b, max_new_tokens], np.int32)
        if max_new_tokens == 0:
            return out, stats
        cache = m.new_cache(b, self.mode)
        mcache = KVCache(self._mtp_cfg, b, self.mode)
        x, d = (t.numpy() for t in self._prefill(tf.constant(arr), cache, mcache))
        top = self.cfg.max_seq_len
        pos = np.full([b], n, np.int32)  # each row's pending token x sits at pos (not yet cached)
        filled = np.zeros([b], np.int64)  # tokens emitted per row
        rows = np.arange(b)

        def emit(mask, tokens):
            out[rows[mask], filled[mask]] = tokens[mask]
            filled[mask] += 1

        while True:
            emit(filled < max_new_tokens, x)
            active = filled < max_new_tokens
            if not active.any():
                break
            # A row still short of tokens has pos = n + filled - 1 <= top - 2, room for x and d. A finished
            # row idles; it is clamped into the cache too (its entries are no longer read by anyone).
            at = np.where(active, pos, np.minimum(pos, top - 2)).astype(np.int32)
            y, drafts = (t.numpy() for t in self._round(tf.constant(x), tf.constant(d), tf.constant(at), cache,
                                                         mcache, cache_read_length(int(at.max()) + 2, top)))
            ok = active & (y[:, 0] == d)
            stats.rounds += 1
            stats.drafts += int(active.sum())
            stats.accepted += int(ok.sum())
            emit(ok & (filled < max_new_tokens), d)
            # accepted: advance by 2, pending y1, draft for p+3; rejected: advance by 1, pending y0, draft for p+2
            x, d = np.where(ok, y[:, 1], y[:, 0]), np.where(ok, drafts[:, 1], drafts[:, 0])
            pos = np.where(active, pos + 1 + ok, pos).astype(np.int32)
        return out, stats  # [B, max_new_tokens], like Transformer.generate
