"""The Trainer: a compiled train step (losses, clipping, AdamW, bias balancing), a data loop and checkpoints.

The pieces it composes are pure and live beside it: the losses in ``tf_impl.losses``, the optimizer
in ``tf_impl.optim``. The contract both frameworks follow is ``docs/internals.md`` ("Losses").

Stopping is typed: a non-finite loss, gradient norm or weight raises ``TrainingDiverged``, which
carries the step and the per-step records (loss, its parts, gradient norm, learning rate). Diagnosing
them is the harness's job (``harness.qa.signals.explain_divergence``), not the model's.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, E routed
experts, L MoE layers (main layers, then MTP blocks).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike
from tqdm import tqdm

from harness.config import ModelConfig, TrainConfig
from tf_impl.checkpoint import Checkpoint, CheckpointManager
from tf_impl.data import ByteTokenizer, make_dataset
from tf_impl.losses import bias_update, compute_loss
from tf_impl.optim import AdamW

# A loss-history rule for checkpoint health: ``health(losses, since)`` returns the problems (short phrases,
# e.g. "2 loss spike(s)") it finds in ``losses[since:]``, the steps since the last save, given all of them.
HealthRule = Callable[[Sequence[float], int], Sequence[str]]


class TrainingDiverged(RuntimeError):
    """Training stopped: the loss, the gradient norm or the weights became NaN/Inf.

    ``step`` is the trainer's step when it stopped (updates applied so far) and ``records`` the
    per-step records up to and including the failing step, oldest first, each with ``loss``, ``ce``,
    ``mtp``, ``balance``, ``grad_norm`` and ``lr`` (lr 0 where the update was not applied; a run
    restored from a checkpoint has only ``loss`` for the steps before it). ``harness.qa.signals.
    explain_divergence(error)`` diagnoses them.
    """

    def __init__(self, message: str, *, step: int | None = None, records: Sequence[dict[str, float]] = ()):
        super().__init__(message)
        self.step = step
        self.records = [dict(r) for r in records]


class Trainer:
    """Trains a ``tf_impl.Transformer`` on a data pipeline with AdamW, bias balancing and checkpoints.

    ``fit(n)`` runs ``n`` more steps and returns their records (``loss, ce, mtp, balance, grad_norm,
    lr``). Each step's batch comes from ``data`` (a DataConfig; the pipeline skips the batches already
    consumed, so a resumed run sees exactly the batches an uninterrupted one would). A non-finite
    loss or gradient norm stops training with TrainingDiverged before the update is applied.
    With ``checkpoint_dir`` and ``checkpoint_every``, a checkpoint is saved every that many steps and
    at the end of ``fit``; ``resume()`` continues from the newest good one. Each checkpoint records a
    health verdict on the steps since the previous save (``_health``): the weights are always checked,
    and ``health`` (a ``HealthRule``, e.g. ``harness.qa.signals.loss_spike_problems``) adds a rule on the
    loss history; ``CheckpointManager`` never counts an unhealthy checkpoint towards ``keep``.

    The step is one ``tf.function``; ``jit_compile=True`` compiles it with XLA: on 2 CPU cores the
    bench model's step compiles in ~12 s and then runs ~1.6x faster than graph mode (what the
    benchmarks time against Flax; XLA once took minutes here: see ``tf_impl.moe.gather_rows``). Graph
    mode stays the default: with XLA the default, one run of the whole test suite crashed (SIGSEGV)
    inside the compiled step of a resumed Trainer, which did not reproduce; until that is understood
    XLA is opt-in.
    """

    def __init__(
        self,
        model,
        cfg: ModelConfig,
        tc: TrainConfig = TrainConfig(),
        data=None,
        *,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 0,
        keep: int = 2,
        progress: bool = True,
        update_bias: bool = True,
        jit_compile: bool = False,
        health: HealthRule | None = None,
    ):
        self.model, self.cfg, self.tc, self.data = model, cfg, tc, data
        self.health = health
        if data is not None:
            ByteTokenizer().check_vocab(cfg.vocab_size)
        self.variables = list(model.trainable_variables)
        self.biases = list(model.gate_biases()) if update_bias and cfg.bias_update_speed > 0 else []
        self.opt = AdamW(self.variables, tc)
        self.history: list[dict[str, float]] = []
        self.last_expert_load: np.ndarray | None = None
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.manager = None
        if checkpoint_dir is not None:
            self.manager = CheckpointManager(checkpoint_dir, keep=keep)
        self._jit = jit_compile
        self._fn = None
        self._batches: Iterator | None = None
        self._poisoned = ""  # why the in-memory weights are non-finite; empty while they are fine
        self._last_save = (None, 0, self._max_abs_weight())  # (step, len(history), max |w|) at the last save/restore

    @property
    def step(self) -> int:
        """Optimizer updates applied so far (= batches consumed)."""
        return int(self.opt.count.numpy())

    # ------------------------------------------------------------------ the compiled step
    def _step(self, tokens):
        with tf.GradientTape() as tape:
            logits, aux = self.model.forward_aux(tokens)
            loss, parts = compute_loss(logits, aux, tokens, self.cfg)
        grads = tape.gradient(loss, self.variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.variables)]
        # tf.clip_by_global_norm scales by clip_norm / max(norm, clip_norm); an Inf/NaN norm makes every
        # gradient NaN, which never reaches the weights: the update is skipped when the norm is not finite.
        grads, norm = tf.clip_by_global_norm(grads, self.tc.clip_norm)
        ok = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
        load = aux["expert_load"]

        def apply():
            lr = self.opt.apply(grads)
            for i, bias in enumerate(self.biases):
                bias.assign(bias_update(bias, load[i], self.cfg.bias_update_speed))
            weights = self.variables + self.biases
            finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in weights]))
            return lr, finite

        lr, weights_finite = tf.cond(ok, apply, lambda: (tf.constant(0.0), tf.constant(True)))
        return {"loss": loss, **parts, "grad_norm": norm, "lr": lr}, load, weights_finite

    def _compiled(self):
        if self._fn is None:
            self._fn = tf.function(self._step, jit_compile=self._jit)
        return self._fn

    def train_step(self, tokens: ArrayLike) -> dict[str, float]:
        """One update on ``tokens`` int32 [B, T]; returns the step's record (loss before the update)."""
        if self._poisoned:
            raise TrainingDiverged(f"the weights in memory are non-finite since {self._poisoned}; "
                                   "restore a checkpoint (Trainer.resume()) before training on",
                                   step=self.step, records=self.history)
        parts, load, weights_finite = self._compiled()(tf.convert_to_tensor(tokens, tf.int32))
        record = {k: float(v) for k, v in parts.items()}
        self.last_expert_load = np.asarray(load)
        if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
            previous = f" (the previous update used lr={self.history[-1]['lr']:.3g})" if "lr" in (
                self.history[-1] if self.history else {}) else ""
            raise TrainingDiverged(
                f"training stopped at step {self.step}: loss={record['loss']} (ce={record['ce']}, "
                f"mtp={record['mtp']}, balance={record['balance']}), grad_norm={record['grad_norm']}; "
                f"the update was not applied{previous}. The error carries the step records: "
                "harness.qa.signals.explain_divergence(error) diagnoses them",
                step=self.step, records=[*self.history, record],
            )
        if not bool(weights_finite):
            bad = _non_finite_tensors(self.model.state_dict())
            self._poisoned = f"the update of step {self.step - 1}"
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the update of step {self.step - 1} (lr={record['lr']:.3g}, "
                f"loss before it {record['loss']:.4g}, grad_norm {record['grad_norm']:.3g}) made the weights "
                f"non-finite ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}); nothing was saved. The model in "
                "memory is unusable: resume from the last good checkpoint (Trainer.resume()) with a smaller lr",
                step=self.step, records=[*self.history, record],
            )
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ loop
    def _next_batch(self):
        if self._batches is None:
            if self.data is None:
                raise ValueError("Trainer has no data: pass data=DataConfig(...) or call fit(n, batches=...)")
            self._batches = iter(make_dataset(self.data, vocab_size=self.cfg.vocab_size, skip_batches=self.step))
        return next(self._batches)

    def fit(self, n_steps: int, batches: Iterable | None = None,
            on_step: Callable[[int, dict[str, float], float], None] | None = None) -> list[dict[str, float]]:
        """Run ``n_steps`` updates (from ``batches`` if given, else from the data pipeline).

        Checkpoints every ``checkpoint_every`` steps and once at the end (unless that step is already
        saved), so an interrupted run loses at most ``checkpoint_every`` steps.

        Args:
            n_steps: the updates to run, counted from the current ``step``.
            batches: an iterable of int token batches of shape [B, T]; None uses the Trainer's ``data``.
            on_step: called as ``on_step(step, record, seconds)`` after each update (and its checkpoint,
                if one was due), with the step count, the step's record and the seconds the update took
                (checkpointing excluded); a supervisor uses it to see progress and time the steps.

        Returns:
            the records of these steps (``loss, ce, mtp, balance, grad_norm, lr``), oldest first.
        """
        source = iter(batches) if batches is not None else None
        bar = tqdm(total=n_steps, disable=not self.progress, file=sys.stderr, unit="step", dynamic_ncols=True)
        records, tokens, start = [], 0, time.perf_counter()
        try:
            for _ in range(n_steps):
                batch = next(source) if source is not None else self._next_batch()
                t0 = time.perf_counter()
                records.append(self.train_step(batch))
                seconds = time.perf_counter() - t0
                tokens += int(np.prod(batch.shape))
                r = records[-1]
                bar.set_postfix_str(f"loss={r['loss']:.4f} ce={r['ce']:.4f} lr={r['lr']:.2e} "
                                    f"{tokens / (time.perf_counter() - start):,.0f} tok/s", refresh=False)
                bar.update(1)
                if self.manager is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save()
                if on_step is not None:
                    on_step(self.step, records[-1], seconds)
        finally:
            bar.close()
        if self.manager is not None and records and self.step not in self.manager.steps():
            self.save()
        return records

    # ------------------------------------------------------------------ checkpoints
    def _max_abs_weight(self) -> float:
        return max(float(tf.reduce_max(tf.abs(v))) for v in self.variables + self.biases) if self.variables else 0.0

    def _health(self, state: dict[str, np.ndarray]) -> dict:
        """The verdict on the steps since the last save or restore, recorded in the new checkpoint's manifest.

        Unhealthy when the largest weight grew more than ``_WEIGHT_BLOWUP`` times (a divergence that has
        not reached NaN yet: with a too-large lr the loss can stay finite and flat while the weights run
        to 1e9; non-finite weights are never saved at all), or when the ``health`` rule finds a problem
        in the losses (the harness passes its loss-spike rule, the project's one definition of a
        spike). ``CheckpointManager`` never counts an unhealthy checkpoint towards ``keep``, so such
        saves cannot push the last healthy ones out.
        """
        prev_step, prev_len, prev_max = self._last_save
        losses = [r["loss"] for r in self.history]
        found = self.health(losses, prev_len) if self.health is not None else []
        problems = [f"{problem} since step {prev_step or 0}" for problem in found]
        max_abs = max(float(np.abs(a).max()) for a in state.values() if a.size)
        if prev_max > 0 and max_abs > _WEIGHT_BLOWUP * prev_max:
            problems.append(f"max |w| grew from {prev_max:.3g} to {max_abs:.3g} since step {prev_step or 0}")
        return {"healthy": not problems, "problems": problems, "since_step": prev_step, "max_abs_weight": max_abs}

    def save(self, overwrite: bool = False) -> str:
        """Checkpoint the model state, optimizer slots, step, data position and health in ``checkpoint_dir``.

        Non-finite weights are never saved (TrainingDiverged names the tensors). ``meta["health"]``
        records ``_health``'s verdict, which decides whether the checkpoint counts for pruning.

        Args:
            overwrite: replace an existing good checkpoint of the same step (otherwise FileExistsError; a
                corrupt one is set aside either way, see ``CheckpointManager.save``).

        Returns:
            the path of the written checkpoint folder.
        """
        if self.manager is None:
            raise ValueError("Trainer has no checkpoint_dir; pass checkpoint_dir=... to save checkpoints")
        state = self.model.state_dict()
        bad = _non_finite_tensors(state)
        if bad:
            raise TrainingDiverged(f"refusing to save non-finite weights at step {self.step}: {', '.join(bad[:5])}; "
                                   "resume from the last good checkpoint (Trainer.resume())",
                                   step=self.step, records=self.history)
        meta = {
            "step": self.step, "data_batches": self.step, "model_config": self.cfg.to_dict(),
            "train_config": asdict(self.tc), "data_config": asdict(self.data) if self.data is not None else None,
            "losses": [r["loss"] for r in self.history], "health": self._health(state),
        }
        path = self.manager.save(self.step, state, self.opt.slots(), meta, overwrite=overwrite)
        self._last_save = (self.step, len(self.history), meta["health"]["max_abs_weight"])
        return path

    def _check_config(self, checkpoint) -> None:
        """Refuse a checkpoint written with another model or data config, naming every differing field."""
        stored_cfg, stored_data = checkpoint.meta.get("model_config"), checkpoint.meta.get("data_config")
        diffs = []
        if stored_cfg is not None:
            stored = ModelConfig.from_dict(stored_cfg, source=f"checkpoint {checkpoint.path}", strict=True).to_dict()
            diffs += [f"{k}: checkpoint {stored[k]!r}, here {v!r}"
                      for k, v in self.cfg.to_dict().items() if stored[k] != v]
        if stored_data is not None and self.data is not None:
            here = _comparable(asdict(self.data))
            there = _comparable(stored_data)
            diffs += [f"data.{k}: checkpoint {there.get(k)!r}, here {here.get(k)!r}"
                      for k in sorted(set(here) | set(there)) if here.get(k) != there.get(k)]
        if diffs:
            raise ValueError(f"checkpoint {checkpoint.path} was written with another configuration; differing "
                             f"fields: {'; '.join(diffs)}. Build the Trainer with the checkpoint's ModelConfig and "
                             "DataConfig (its manifest has both), or train into a new checkpoint_dir")

    def restore(self, checkpoint: Checkpoint) -> None:
        """Load a ``tf_impl.checkpoint.Checkpoint``: weights, gate biases, optimizer slots, step, data position.

        A checkpoint whose manifest records another ModelConfig or DataConfig is refused (ValueError
        naming every differing field) before anything is loaded. The TrainConfig may differ: changing
        the learning rate on resume is a legitimate choice.
        """
        self._check_config(checkpoint)
        self.model.load_state_dict(checkpoint.model_state, source=f"checkpoint {checkpoint.path}")
        self.opt.load_slots(checkpoint.optimizer_state)
        self.history = [{"loss": x} for x in checkpoint.meta.get("losses", [])]
        self._batches = None
        self._poisoned = ""
        self._last_save = (checkpoint.step, len(self.history), self._max_abs_weight())

    def resume(self) -> bool:
        """Restore the newest good checkpoint of ``checkpoint_dir``; False when there is none.

        A newer checkpoint that is corrupt is skipped with a warning; the next save at its step sets it
        aside (``CheckpointManager.save``), so ``fit`` continues past it.
        """
        if self.manager is None:
            raise ValueError("Trainer has no checkpoint_dir to resume from")
        checkpoint = self.manager.latest_good()
        if checkpoint is None:
            return False
        self.restore(checkpoint)
        return True


_WEIGHT_BLOWUP = 10.0  # max |w| growing this many times between two checkpoints is a divergence, not learning


def _non_finite_tensors(state: dict[str, np.ndarray]) -> list[str]:
    return [name for name, a in state.items() if not np.isfinite(a).all()]


def _comparable(data_config: dict) -> dict:
    """A DataConfig dict with its corpus path resolved, so the same corpus reached another way compares equal."""
    out = dict(data_config)
    if out.get("path"):
        out["path"] = os.path.realpath(out["path"])
    return out
