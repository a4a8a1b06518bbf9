"""Self-speculative decoding with the model's own MTP module, and the MTP criterion.

The first MTP module, trained to predict token t+2 from the main hidden state h_t and the
embedding of token t+1, drafts one token ahead; the main model verifies it in the same forward
pass that produces the next token. One round, at cache position p, with the pending token x
(greedy's choice for position p, not yet in the cache) and the draft d (for position p+1):

1. main model on [x, d] at positions p, p+1 (cached): greedy tokens y0 (for p+1) and y1 (for p+2),
   and hidden states h_p, h_{p+1};
2. in the same compiled call, the MTP block (with its own cache) on [(h_p, y0), (h_{p+1}, y1)] at
   positions p, p+1: drafts for p+2 (valid whatever d was) and for p+3 (valid if d == y0);
3. on the host: if d == y0 (for every sequence of the batch) both x and d are emitted, the cache
   advances by 2, the pending token is y1 and the draft the one for p+3; otherwise only x is emitted,
   the cache rolls back to p+1 (the stale entry at p+1 is masked and later overwritten), the pending
   token is y0 and the draft the one for p+2.

Every emitted token is the main model's own argmax given the tokens before it, so the output is
greedy decoding's output; the draft only decides how many of them one call yields (1 or 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf_impl.attention import KVCache


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

    Uses the model's embedding, blocks, norm, head and MTP module directly; the main cache is the
    model's own ``KVCache`` (``mode`` ``"absorb"`` or ``"naive"``), the MTP block gets a one-layer one.
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
        self._single = tf.function(self._single_impl, jit_compile=jit_compile)

    # ------------------------------------------------------------------ compiled pieces
    def _angles(self, start, t: int):
        """RoPE cos/sin [T, R/2] for positions start..start+T-1 (``start`` a Python int or a tensor)."""
        m = self.model
        if isinstance(start, int):
            return m._cos[start:start + t], m._sin[start:start + t]
        pos = start + tf.range(t)
        return tf.gather(m._cos, pos), tf.gather(m._sin, pos)

    def _main(self, tokens, start, cache_vars):
        """Main model on ``tokens`` [B, T] at positions start..start+T-1: (greedy ids [B, T], h [B, T, D])."""
        m = self.model
        cos, sin = self._angles(start, tokens.shape[1])
        caches = [tuple(cache_vars[2 * i: 2 * i + 2]) for i in range(self.cfg.n_layers)]
        h, _ = m._trunk(tokens, cos, sin, caches, self.mode, start)  # [B, T, D]
        ids = tf.argmax(m.head(m.norm(h)), -1, output_type=tf.int32)  # [B, T]
        return ids, h

    def _draft(self, next_tokens, h, start, mtp_vars):
        """MTP drafts [B, T] for positions start+2..: inputs emb(next_tokens) [B, T] and h [B, T, D]."""
        m = self.model
        cos, sin = self._angles(start, next_tokens.shape[1])
        x = self.mtp.eh_proj(tf.concat([self.mtp.enorm(tf.gather(m.embed, next_tokens)), self.mtp.hnorm(h)], -1))
        out, _ = self.mtp.block(x, cos, sin, tuple(mtp_vars), self.mode, start)  # [B, T, D]
        return tf.argmax(m.head(self.mtp.norm(out)), -1, output_type=tf.int32)  # [B, T]

    def _prefill_impl(self, prompt, cache_vars, mtp_vars):
        """Prompt [B, n] -> (first new token x [B], draft for the position after it [B])."""
        ids, h = self._main(prompt, 0, cache_vars)
        x = ids[:, -1]
        drafts = self._draft(tf.concat([prompt[:, 1:], x[:, None]], 1), h, 0, mtp_vars)  # [B, n]
        return x, drafts[:, -1]

    def _round_impl(self, x, d, pos, cache_vars, mtp_vars):
        """One verify+draft round at position ``pos``: (y [B, 2], drafts [B, 2]) as in the module doc."""
        y, h = self._main(tf.stack([x, d], 1), pos, cache_vars)  # [B, 2], [B, 2, D]
        return y, self._draft(y, h, pos, mtp_vars)

    def _single_impl(self, x, pos, cache_vars):
        """Plain one-token step (used when no room is left for a draft): greedy id [B]."""
        ids, _ = self._main(x[:, None], pos, cache_vars)
        return ids[:, 0]

    # ------------------------------------------------------------------ generation
    def generate(self, prompt, max_new_tokens: int) -> tuple[np.ndarray, SpeculativeStats]:
        """Greedy continuation of ``prompt`` [B, n]: (int32 [B, n + max_new_tokens], stats).

        The tokens equal ``model.generate(prompt, max_new_tokens, temperature=0.0)``.
        """
        m = self.model
        arr = m._tokens(prompt, "prompt")
        b, n = arr.shape
        m._check_length(n + max_new_tokens, "prompt + max_new_tokens")
        stats = SpeculativeStats()
        if max_new_tokens == 0:
            return np.zeros([b, 0], np.int32), stats
        cache = m.new_cache(b, self.mode)
        mcache = KVCache(self._mtp_cfg, b, self.mode)
        x, d = self._prefill(tf.constant(arr), cache.variables, mcache.variables)
        x, d = x.numpy(), d.numpy()
        p, out = n, []
        while True:
            out.append(x)
            if len(out) == max_new_tokens:
                break
            if p + 2 > self.cfg.max_seq_len:  # no room to verify a draft: one plain step
                x = self._single(tf.constant(x), tf.constant(p, tf.int32), cache.variables).numpy()
                p += 1
                continue
            y, drafts = self._round(tf.constant(x), tf.constant(d), tf.constant(p, tf.int32),
                                    cache.variables, mcache.variables)
            y, drafts = y.numpy(), drafts.numpy()
            stats.rounds += 1
            stats.drafts += 1
            if np.array_equal(y[:, 0], d):
                stats.accepted += 1
                out.append(d)
                if len(out) == max_new_tokens:
                    break
                x, d, p = y[:, 1], drafts[:, 1], p + 2
            else:
                x, d, p = y[:, 0], drafts[:, 0], p + 1  # roll back: position p+1 is overwritten next round
        cache.length, cache.batch = p, b
        return np.stack(out, 1).astype(np.int32), stats  # [B, max_new_tokens], like Transformer.generate


def compare_with_greedy(model, prompts, max_new_tokens: int, mode: str = "absorb", repeats: int = 2,
                        jit_compile: bool = True) -> dict[str, float]:
    """Speculative vs plain greedy (``model.generate``, same cache mode) on ``prompts`` [B, n].

    Both are warmed up (compiled) first, then timed ``repeats`` times, alternating greedy and speculative
    so that both see the same machine state; each pair gives one speed-up sample. ``jit_compile`` is for
    the speculative decoder; greedy follows ``model.compiled``. Returns ``{"acceptance_rate",
    "identical" (1.0 if the tokens are equal), "greedy_tokens_per_s", "speculative_tokens_per_s"
    (best of the repeats), "speedup" (median of the pairs), "speedup_samples" (list, one per pair),
    "tokens_per_round"}``.
    """
    prompts = np.asarray(prompts, np.int32)
    dec = SpeculativeDecoder(model, mode, jit_compile)
    new_tokens = prompts.shape[0] * max_new_tokens

    def greedy_call():
        return model.generate(prompts, max_new_tokens, temperature=0.0, mode=mode)

    def timed(fn):
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result

    greedy_call(), dec.generate(prompts, max_new_tokens)  # compile both
    t_greedy, t_spec = [], []
    for _ in range(repeats):
        t, greedy = timed(greedy_call)
        t_greedy.append(t)
        t, (spec, stats) = timed(lambda: dec.generate(prompts, max_new_tokens))
        t_spec.append(t)
    samples = [g / s for g, s in zip(t_greedy, t_spec)]
    return {
        "acceptance_rate": stats.acceptance_rate,
        "identical": float(np.array_equal(greedy, spec)),
        "greedy_tokens_per_s": new_tokens / min(t_greedy),
        "speculative_tokens_per_s": new_tokens / min(t_spec),
        "speedup": float(np.median(samples)),
        "speedup_samples": samples,
        "tokens_per_round": max_new_tokens / max(1, stats.rounds + 1),
    }


def mtp_criterion(steps: int = 300, seed: int = 0, n_prompts: int = 4, prompt_len: int = 16,
                  max_new_tokens: int = 40, repeats: int = 2) -> dict[str, float]:
    """Train ``ModelConfig.tiny`` (one MTP module) on the shipped corpus, then decode validation prompts.

    Each of ``n_prompts`` prompts (batch 1, so acceptance is per sequence) is continued by plain greedy
    decoding and by self-speculative decoding, both XLA-compiled with the absorbed cache.

    Args:
        steps: training steps before decoding; the drafter must learn something for acceptance to mean much.
        seed: seed of the model init and the data order.
        n_prompts: validation prompts decoded, each on its own (batch 1).
        prompt_len: tokens of each prompt.
        max_new_tokens: tokens generated per prompt.
        repeats: alternating greedy/speculative timing pairs per prompt.

    Returns:
        ``{"acceptance_rate", "speedup", "greedy_tokens_per_s", "speculative_tokens_per_s"}`` averaged over
        the prompts; ``"speedup_samples"``, every prompt's per-pair speed-ups (n_prompts * repeats);
        ``"identical"``, 1.0 only if every prompt matched greedy; ``"final_ce"`` and ``"final_mtp_loss"``,
        means over the last 10 training steps.
    """
    from harness.config import ModelConfig
    from tf_impl.data import DataConfig, make_dataset
    from tf_impl.train import train_model

    cfg = ModelConfig.tiny()
    model, trainer, _ = train_model(cfg, steps, seed=seed)
    prompts = next(iter(make_dataset(DataConfig(batch_size=n_prompts, seq_len=cfg.max_seq_len), split="val"))).numpy()
    runs = [compare_with_greedy(model, prompts[i:i + 1, :prompt_len], max_new_tokens, repeats=repeats)
            for i in range(n_prompts)]
    out = {k: float(np.mean([r[k] for r in runs])) for k in
           ("acceptance_rate", "speedup", "greedy_tokens_per_s", "speculative_tokens_per_s")}
    out["speedup_samples"] = [x for r in runs for x in r["speedup_samples"]]
    out["identical"] = float(min(r["identical"] for r in runs))
    tail = trainer.history[-10:]
    out["final_ce"] = float(np.mean([r["ce"] for r in tail]))
    out["final_mtp_loss"] = float(np.mean([r["mtp"] for r in tail]))
    return out
