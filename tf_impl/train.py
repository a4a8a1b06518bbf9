"""Training: losses, AdamW with warmup + cosine decay, aux-loss-free bias balancing, and a Trainer loop.

The contract is ``docs/internals.md`` ("Losses"), shared with ``reference/train.py``:

- ``ce = mean CE(logits[:, :-1], tokens[:, 1:])``;
- ``mtp = (mtp_lambda / D) * sum_k mean CE(mtp_logits_k[:, :-1], tokens[:, k+1:])``;
- ``balance = balance_alpha * sum_layers mean_batch sum_i f_i P_i``;
- ``loss = ce + mtp + balance``;
- after each step every gate bias moves by ``bias_update_speed * sign(mean(load) - load_i)`` from the
  step's real expert counts; the bias is a non-trainable variable, never touched by gradients.

The optimizer is AdamW as ``optax.adamw`` computes it (decoupled weight decay on every trainable
variable, norms included; the gate bias is not trainable, so it gets neither gradient nor decay)::

    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  t = count + 1
    param -= lr(count) * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * param)

after clipping the gradients to a global norm of ``clip_norm``. ``lr(count)`` is ``learning_rate``.
FP8 training needs nothing here: with ``cfg.dtype == Dtype.FP8`` the model's linears quantise on the
fly and gradients pass through the quantiser straight-through; the fp32 variables are the master
weights.
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

from harness.config import ModelConfig, TrainConfig
from harness.signals import diagnose_training_records, loss_spike_count
from tf_impl.checkpoint import CheckpointManager
from tf_impl.data import ByteTokenizer, DataConfig, make_dataset
from tf_impl.model import Transformer

# Letters: B batch, T length, E experts, K activated experts, V vocab, L MoE layers.


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; the message gives the step and a diagnosis."""


# ---------------------------------------------------------------------------------------- schedule
def learning_rate(step, tc: TrainConfig):
    """Learning rate of update number ``step`` (0-based; a Python number or a tensor).

    Linear warmup ``lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` updates, then a
    cosine from ``lr`` down to ``lr * min_lr_ratio`` at ``total_steps``, flat after that.
    The ``+ 1`` makes step 0 already learn. A Python step is computed on the host, a tensor step
    inside the compiled train step (from the optimizer's ``count``), with the same formula.

    Args:
        step: the 0-based update number, a Python number or a scalar tensor.
        tc: the schedule: ``lr``, ``warmup_steps``, ``total_steps``, ``min_lr_ratio``.

    Returns:
        the learning rate: a Python float for a Python ``step``, else an fp32 scalar tensor.
    """
    if isinstance(step, (int, float, np.integer, np.floating)):
        step = float(step)
        if step < tc.warmup_steps:
            return tc.lr * (step + 1.0) / tc.warmup_steps
        progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.total_steps - tc.warmup_steps))
        return tc.lr * (tc.min_lr_ratio + (1.0 - tc.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    step = tf.cast(step, tf.float32)
    warm = tc.lr * (step + 1.0) / max(1, tc.warmup_steps)
    progress = tf.minimum(1.0, (step - tc.warmup_steps) / max(1, tc.total_steps - tc.warmup_steps))
    cosine = tc.lr * (tc.min_lr_ratio + (1.0 - tc.min_lr_ratio) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
    return tf.where(step < tc.warmup_steps, warm, cosine)


# ---------------------------------------------------------------------------------------- losses
def cross_entropy(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean token cross-entropy of logits [B, T, V] against int targets [B, T], in fp32."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(targets, tf.int32), logits=tf.cast(logits, tf.float32))
    )


def mtp_loss(mtp_logits: Sequence[tf.Tensor], tokens: tf.Tensor, mtp_lambda: float) -> tf.Tensor:
    """``(mtp_lambda / D) * sum_k CE(mtp_logits_k[:, :-1], tokens[:, k+1:])``; module k is 1-based, 0 when D = 0.

    Module k's position t sees tokens up to t + k and predicts token t + k + 1, so its logits are
    [B, T - k, V] and the last position has no target inside the window.

    Args:
        mtp_logits: the D MTP modules' logits, module k's of shape [B, T - k, V].
        tokens: the input ids of shape [B, T].
        mtp_lambda: the MTP loss weight (lambda), averaged over the D modules.

    Returns:
        the weighted loss, an fp32 scalar.
    """
    if not mtp_logits:
        return tf.constant(0.0)
    total = tf.add_n([cross_entropy(lk[:, :-1], tokens[:, k + 1 :]) for k, lk in enumerate(mtp_logits, start=1)])
    return (mtp_lambda / len(mtp_logits)) * total


def sequence_balance_loss(scores: tf.Tensor, indices: tf.Tensor, n_experts: int) -> tf.Tensor:
    """``mean_batch sum_i f_i P_i`` of one MoE layer (without alpha).

    scores [B, T, E] are the original gate scores, indices [B, T, K] the chosen experts; positions
    whose indices are -1 are padding (an MTP block routes only T-k positions) and are left out, so T
    counts the routed positions. ``f_i = E / (K T) * count_t(i in topk_t)``,
    ``P_i = mean_t scores_t,i / sum_j scores_t,j``.
    """
    k = indices.shape[-1]
    valid = tf.cast(indices[..., 0] >= 0, tf.float32)  # [B, T]
    t = tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)[:, None]  # [B, 1]
    counts = tf.reduce_sum(tf.one_hot(indices, n_experts, dtype=tf.float32), axis=[1, 2])  # [B, E]; -1 -> zeros
    f = tf.stop_gradient(counts * (n_experts / k) / t)  # [B, E]
    denom = tf.reduce_sum(scores, axis=-1, keepdims=True)  # [B, T, 1]
    probs = scores / tf.where(denom > 0, denom, 1.0) * valid[..., None]  # [B, T, E]
    p = tf.reduce_sum(probs, axis=1) / t  # [B, E]
    return tf.reduce_mean(tf.reduce_sum(f * p, axis=-1))


def balance_loss(aux: dict, n_experts: int, alpha: float) -> tf.Tensor:
    """``alpha * sum_layers sequence_balance_loss`` over the MoE layers of ``aux`` (0 when alpha = 0).

    With alpha = 0 the routing tensors are not touched at all, so a run balanced by the bias alone
    pays nothing for this term.

    Args:
        aux: ``forward_aux``'s dict; uses ``router_scores`` [L, B, T, E] and ``router_indices`` [L, B, T, K].
        n_experts: E, the routed experts.
        alpha: the balance-loss weight.

    Returns:
        the loss, an fp32 scalar.
    """
    scores, indices = aux.get("router_scores"), aux.get("router_indices")
    n_layers = 0 if scores is None else scores.shape[0]
    if alpha == 0.0 or not n_layers:
        return tf.constant(0.0)
    return alpha * tf.add_n([sequence_balance_loss(scores[i], indices[i], n_experts) for i in range(n_layers)])


def compute_loss(logits: tf.Tensor, aux: dict, tokens: tf.Tensor, cfg: ModelConfig) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """``(loss, {"ce", "mtp", "balance"})`` for one batch, per docs/internals.md.

    Args:
        logits: the main model's logits of shape [B, T, V]; position t predicts token t + 1.
        aux: ``forward_aux``'s dict (MTP logits and routing tensors).
        tokens: the input ids of shape [B, T].
        cfg: supplies ``mtp_lambda``, ``balance_alpha`` and ``n_routed_experts``.

    Returns:
        the total loss (fp32 scalar) and its three parts, kept apart for logging.
    """
    ce = cross_entropy(logits[:, :-1], tokens[:, 1:])
    mtp = mtp_loss(aux.get("mtp_logits") or [], tokens, cfg.mtp_lambda)
    bal = balance_loss(aux, cfg.n_routed_experts, cfg.balance_alpha)
    return ce + mtp + bal, {"ce": ce, "mtp": mtp, "balance": bal}


def bias_update(bias: tf.Tensor, load: tf.Tensor, speed: float) -> tf.Tensor:
    """Aux-loss-free balancing: ``bias + speed * sign(mean(load) - load)``; under-loaded experts go up.

    The bias shifts only which experts are selected, never the mixing weights, so balancing this way
    does not push a gradient against the language-modelling loss.

    Args:
        bias: one gate's selection bias of shape [E] (or [L, E] for all layers at once).
        load: token counts per expert this step, of the same shape as ``bias``.
        speed: the update step gamma (``cfg.bias_update_speed``).

    Returns:
        the new bias, fp32 of the shape of ``bias``.
    """
    load = tf.cast(load, tf.float32)
    return bias + speed * tf.sign(tf.reduce_mean(load, axis=-1, keepdims=True) - load)


def clip_by_global_norm(grads: Sequence[tf.Tensor], clip_norm: float) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Scale all gradients by ``min(1, clip_norm / global_norm)``.

    The norm is returned too: the trainer checks it for NaN/Inf before applying the update, and
    logs it to spot instability before the loss shows it.

    Args:
        grads: one gradient tensor per trainable variable.
        clip_norm: the largest global L2 norm allowed.

    Returns:
        ``(clipped gradients, global norm before clipping)``.
    """
    norm = tf.linalg.global_norm(list(grads))
    scale = tf.minimum(1.0, clip_norm / tf.maximum(norm, 1e-30))
    return [g * scale for g in grads], norm


# ---------------------------------------------------------------------------------------- optimizer
class AdamW(tf.Module):
    """AdamW over a fixed list of variables, with slots ``m``, ``v`` and an update ``count``.

    ``slots()`` / ``load_slots()`` give the slots as numpy arrays named ``m.{i:04d}``, ``v.{i:04d}``
    and ``count`` (i = index into the variable list) for checkpoints.
    """

    def __init__(self, variables: Sequence[tf.Variable], tc: TrainConfig):
        super().__init__(name="adamw")
        self.tc = tc
        self.params = list(variables)
        self.m = [tf.Variable(tf.zeros_like(p), trainable=False, name=f"m{i}") for i, p in enumerate(self.params)]
        self.v = [tf.Variable(tf.zeros_like(p), trainable=False, name=f"v{i}") for i, p in enumerate(self.params)]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")

    def apply(self, grads: Sequence[tf.Tensor]) -> tf.Tensor:
        """One update from (already clipped) ``grads``; returns the learning rate used.

        The learning rate comes from ``count`` (the updates applied so far), so a restored optimizer
        continues the schedule where it stopped. Weight decay is decoupled: ``lr * weight_decay * p``
        is subtracted directly, not added to the gradient.

        Args:
            grads: one gradient per variable, in the order of the variable list given at construction.

        Returns:
            the learning rate of this update, an fp32 scalar tensor.
        """
        tc = self.tc
        lr = learning_rate(self.count, tc)
        t = tf.cast(self.count + 1, tf.float32)
        c1, c2 = 1.0 - tf.pow(tc.b1, t), 1.0 - tf.pow(tc.b2, t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = tf.convert_to_tensor(g)
            m.assign(tc.b1 * m + (1.0 - tc.b1) * g)
            v.assign(tc.b2 * v + (1.0 - tc.b2) * tf.square(g))
            p.assign_sub(lr * ((m / c1) / (tf.sqrt(v / c2) + tc.eps) + tc.weight_decay * p))
        self.count.assign_add(1)
        return lr

    def slots(self) -> dict[str, np.ndarray]:
        """The optimizer state for a checkpoint: ``count``, ``m.{i:04d}`` and ``v.{i:04d}`` as numpy copies."""
        out = {"count": np.asarray(self.count.numpy())}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"m.{i:04d}"], out[f"v.{i:04d}"] = m.numpy(), v.numpy()
        return out

    def load_slots(self, slots: dict[str, np.ndarray]) -> None:
        """Restore ``slots()`` output; a ValueError names missing, extra or wrong-shaped slots.

        Slots are matched by position in the variable list, so the model must be built from the same config.

        Args:
            slots: ``{"count", "m.{i:04d}", "v.{i:04d}"}`` numpy arrays, as written by ``slots()``.
        """
        expected = {"count"} | {f"{s}.{i:04d}" for i in range(len(self.params)) for s in "mv"}
        if set(slots) != expected:
            missing, extra = sorted(expected - set(slots)), sorted(set(slots) - expected)
            raise ValueError(
                f"optimizer slots do not match the model's {len(self.params)} trainable variables: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, extra {extra[:5]}"
            )
        self.count.assign(int(slots["count"]))
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            for var, arr, name in ((m, slots[f"m.{i:04d}"], "m"), (v, slots[f"v.{i:04d}"], "v")):
                if tuple(arr.shape) != tuple(var.shape):
                    raise ValueError(f"optimizer slot {name}.{i:04d} has shape {list(arr.shape)}, expected {var.shape.as_list()}")
                var.assign(arr)


# ---------------------------------------------------------------------------------------- trainer
def gate_bias_variables(model) -> list[tf.Variable]:
    """The gate bias variables of ``model`` in MoE-layer order (main layers, then MTP blocks).

    The order is that of ``aux["expert_load"]`` rows, so row ``l`` of the load updates bias ``l``.
    """
    return list(model.gate_biases())


def _diagnosis(records: Sequence[dict[str, float]]) -> str:
    """The live checks on the step records (loss, gradient norm, learning rate), as one line for the error."""
    findings = diagnose_training_records(list(records))
    return "; ".join(f.message for f in findings) or "no known loss or gradient-norm pathology matched"


class _Progress:
    """A one-line progress bar on stderr: step, loss, tokens/s."""

    def __init__(self, total: int, enabled: bool, width: int = 24):
        self.total, self.enabled, self.width = total, enabled, width

    def update(self, done: int, record: dict[str, float], tokens_per_s: float) -> None:
        if not self.enabled:
            return
        fill = int(self.width * done / max(1, self.total))
        sys.stderr.write(
            f"\r[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} "
            f"loss {record['loss']:.4f} (ce {record['ce']:.4f}) lr {record['lr']:.2e} {tokens_per_s:,.0f} tok/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


class Trainer:
    """Trains a ``tf_impl.Transformer`` on a data pipeline with AdamW, bias balancing and checkpoints.

    ``fit(n)`` runs ``n`` more steps and returns their records (``loss, ce, mtp, balance, grad_norm,
    lr``). Each step's batch comes from ``data`` (a DataConfig; the pipeline skips the batches already
    consumed, so a resumed run sees exactly the batches an uninterrupted one would). A non-finite
    loss or gradient norm stops training with TrainingDiverged before the update is applied.
    With ``checkpoint_dir`` and ``checkpoint_every``, a checkpoint is saved every that many steps and
    at the end of ``fit``; ``resume()`` continues from the newest good one.

    The step is one ``tf.function``; ``jit_compile=True`` also runs it through XLA. The whole tiny
    model compiles under XLA (about 50 s on 2 CPU cores) but then runs no faster than graph mode on
    CPU, so graph mode is the default.
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
    ):
        self.model, self.cfg, self.tc, self.data = model, cfg, tc, data
        if data is not None:
            ByteTokenizer().check_vocab(cfg.vocab_size)
        self.variables = list(model.trainable_variables)
        self.biases = gate_bias_variables(model) if update_bias and cfg.bias_update_speed > 0 else []
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
        grads, norm = clip_by_global_norm(grads, self.tc.clip_norm)
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

    def train_step(self, tokens) -> dict[str, float]:
        """One update on ``tokens`` int32 [B, T]; returns the step's record (loss before the update)."""
        if self._poisoned:
            raise TrainingDiverged(f"the weights in memory are non-finite since {self._poisoned}; "
                                   "restore a checkpoint (Trainer.resume()) before training on")
        parts, load, weights_finite = self._compiled()(tf.convert_to_tensor(tokens, tf.int32))
        record = {k: float(v) for k, v in parts.items()}
        self.last_expert_load = np.asarray(load)
        if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
            raise TrainingDiverged(
                f"training stopped at step {self.step}: loss={record['loss']} (ce={record['ce']}, "
                f"mtp={record['mtp']}, balance={record['balance']}), grad_norm={record['grad_norm']}; "
                f"the update was not applied. Diagnosis: {_diagnosis([*self.history, record])}"
            )
        if not bool(weights_finite):
            bad = _non_finite_tensors(self.model.state_dict())
            self._poisoned = f"the update of step {self.step - 1}"
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the update of step {self.step - 1} (lr={record['lr']:.3g}, "
                f"loss before it {record['loss']:.4g}, grad_norm {record['grad_norm']:.3g}) made the weights "
                f"non-finite ({', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}); nothing was saved. The model in "
                "memory is unusable: resume from the last good checkpoint (Trainer.resume()) with a smaller lr"
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
        bar = _Progress(n_steps, self.progress)
        records, tokens, start = [], 0, time.perf_counter()
        try:
            for i in range(n_steps):
                batch = next(source) if source is not None else self._next_batch()
                t0 = time.perf_counter()
                records.append(self.train_step(batch))
                seconds = time.perf_counter() - t0
                tokens += int(np.prod(batch.shape))
                bar.update(i + 1, records[-1], tokens / (time.perf_counter() - start))
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

        Unhealthy when a step's loss was a spike (``loss_spike_count``, the project's one definition) or
        when the largest weight grew more than ``_WEIGHT_BLOWUP`` times: the two signs of a divergence
        that has not reached NaN yet (a too-large lr shows as the second; the loss can stay finite and
        flat while weights run to 1e9). ``CheckpointManager`` never counts an unhealthy checkpoint
        towards ``keep``, so such saves cannot push the last healthy ones out.
        """
        prev_step, prev_len, prev_max = self._last_save
        losses = [r["loss"] for r in self.history]
        problems = []
        spikes = loss_spike_count(losses) - loss_spike_count(losses[:prev_len])
        if spikes:
            problems.append(f"{spikes} loss spike(s) since step {prev_step or 0}")
        max_abs = max(float(np.abs(a).max()) for a in state.values() if a.size)
        if prev_max > 0 and max_abs > _WEIGHT_BLOWUP * prev_max:
            problems.append(f"max |w| grew from {prev_max:.3g} to {max_abs:.3g} since step {prev_step or 0}")
        return {"healthy": not problems, "problems": problems, "since_step": prev_step, "max_abs_weight": max_abs}

    def save(self, overwrite: bool = False) -> str:
        """Checkpoint the model state, optimizer slots, step, data position and health in ``checkpoint_dir``.

        Non-finite weights are never saved (TrainingDiverged names the tensors). ``meta["health"]``
        records ``_health``'s verdict, which decides whether the checkpoint counts for pruning.
        """
        if self.manager is None:
            raise ValueError("Trainer has no checkpoint_dir; pass checkpoint_dir=... to save checkpoints")
        state = self.model.state_dict()
        bad = _non_finite_tensors(state)
        if bad:
            raise TrainingDiverged(f"refusing to save non-finite weights at step {self.step}: {', '.join(bad[:5])}; "
                                   "resume from the last good checkpoint (Trainer.resume())")
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

    def restore(self, checkpoint) -> None:
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


# ---------------------------------------------------------------------------------------- criteria
# Each returns a dict of numbers from a fixed-seed run on the shipped corpus, for asv track_ benchmarks.
def _criterion_data(batch_size: int = 8, seq_len: int = 64):
    return DataConfig(batch_size=batch_size, seq_len=seq_len, seed=0)


def eval_loss(model, data, n_batches: int = 4) -> float:
    """Mean next-token cross-entropy of ``model`` over the first ``n_batches`` validation batches of ``data``.

    Runs the forward in graph mode (no XLA: one XLA compile per model would cost more than the
    evaluation it speeds up).

    Args:
        model: a ``tf_impl.Transformer``.
        data: the DataConfig whose validation split is read; its ``seq_len`` must fit ``max_seq_len``.
        n_batches: validation batches of shape [B, T] averaged over.

    Returns:
        the mean cross-entropy in nats, a float (``exp`` of it is the perplexity).
    """
    forward = tf.function(lambda tokens: cross_entropy(model.forward_aux(tokens)[0][:, :-1], tokens[:, 1:]))
    return float(np.mean([float(forward(b)) for b in make_dataset(data, split="val").take(n_batches)]))


def train_model(cfg: ModelConfig, steps: int, tc: TrainConfig | None = None, data=None, seed: int = 0,
                update_bias: bool = True, model_hook=None):
    """Build ``Transformer(cfg, seed)`` (``model_hook(model)`` may edit it first) and train ``steps`` steps.

    Returns ``(model, trainer, loads)``; ``loads`` [steps, n_moe_layers, E] holds each step's expert counts.
    """
    model = Transformer(cfg, seed=seed)
    if model_hook is not None:
        model_hook(model)
    tc = tc or TrainConfig(lr=3e-3, warmup_steps=20, total_steps=steps)
    trainer = Trainer(model, cfg, tc, data or _criterion_data(), progress=False, update_bias=update_bias)
    loads = []
    for _ in range(steps):
        trainer.train_step(trainer._next_batch())
        loads.append(trainer.last_expert_load)
    return model, trainer, np.stack(loads)


def load_cv(loads: np.ndarray) -> float:
    """Coefficient of variation (std / mean) of per-expert load, loads [..., E] summed over leading steps.

    ``loads`` [S, L, E] -> the CV of each layer's total over the S steps, averaged over the L layers.
    """
    total = loads.sum(0)  # [L, E]
    return float(np.mean(total.std(-1) / np.maximum(total.mean(-1), 1e-9)))


def _skew_router(strength: float):
    """Model hook: push every gate's weights towards the mean direction of the embeddings for experts 0-1.

    A router that starts (and, without balancing, stays) biased towards two experts, so the
    benchmark shows what balancing fixes even in runs too short for natural collapse.
    """
    def hook(model):
        direction = tf.reduce_mean(model.embed, 0)
        direction = direction / tf.norm(direction)  # [D]
        for layer in list(model.layers) + [m.block for m in model.mtp]:
            gate = getattr(layer.ffn, "gate_weight", None)
            if gate is not None:
                boost = np.zeros(gate.shape, np.float32)
                boost[:2] = strength * direction.numpy()
                gate.assign_add(boost)

    return hook


def expert_balance_criterion(steps: int = 120, skew: float = 4.0, gamma: float = 0.01, seed: int = 0) -> dict[str, float]:
    """Expert-load CV after training a tiny MoE with vs without aux-loss-free bias balancing.

    Setup: ``ModelConfig.tiny`` (8 experts, top-2, 2 groups, one main MoE layer + the MTP block),
    the shipped corpus, ``steps`` AdamW steps, a router skewed at init towards experts 0 and 1
    (``_skew_router(skew)``), ``bias_update_speed = gamma`` (0.01, 10x DeepSeek's 0.001, because the run
    is ~100x shorter). Both runs are identical except for the bias update. The CV is of the
    expert counts summed over the last quarter of the steps, averaged over the MoE layers.

    Args:
        steps: training steps of each run.
        skew: strength of the initial router skew (``_skew_router``).
        gamma: the bias update speed of the balanced run.
        seed: seed of the model init and data order, shared by both runs.

    Returns:
        ``{"cv_with_bias", "cv_without_bias", "max_load_ratio_with_bias", "max_load_ratio_without_bias",
        "final_loss_with_bias", "final_loss_without_bias"}`` (max_load_ratio = max / mean load;
        final loss = mean of the last 10 steps).
    """
    cfg = ModelConfig.tiny(bias_update_speed=gamma)
    out = {}
    for name, update in (("with_bias", True), ("without_bias", False)):
        _, trainer, loads = train_model(cfg, steps, seed=seed, update_bias=update, model_hook=_skew_router(skew))
        tail = loads[-max(1, steps // 4):]
        total = tail.sum(0)
        out[f"cv_{name}"] = load_cv(tail)
        out[f"max_load_ratio_{name}"] = float(np.mean(total.max(-1) / total.mean(-1)))
        out[f"final_loss_{name}"] = float(np.mean([r["loss"] for r in trainer.history[-10:]]))
    return out


def loss_spike_criterion(steps: int = 150, seed: int = 0, window: int = 20, threshold: float = 6.0) -> dict[str, float]:
    """Loss spikes in a tiny MoE run with balancing on (bias updates + balance_alpha = 1e-4).

    A spike is a step whose loss exceeds the median of the previous ``window`` steps by ``threshold``
    robust standard deviations (``harness.troubleshoot.loss_spike_count``, the one definition of a spike).

    Args:
        steps: training steps of the run.
        seed: seed of the model init and data order.
        window: the trailing steps a loss is compared against.
        threshold: how many robust standard deviations above the median count as a spike.

    Returns:
        ``{"spikes", "steps", "spikes_per_1k_steps", "final_loss"}`` (final loss = mean of the last 10 steps).
    """
    cfg = ModelConfig.tiny(balance_alpha=1e-4)
    _, trainer, _ = train_model(cfg, steps, seed=seed)
    losses = [r["loss"] for r in trainer.history]
    spikes = loss_spike_count(losses, window, threshold)
    return {"spikes": float(spikes), "steps": float(steps), "spikes_per_1k_steps": 1000.0 * spikes / steps,
            "final_loss": float(np.mean(losses[-10:]))}
