"""Execute a pipeline schedule on TF devices: the model cut into stages, each copy on its rank's device.

``cut(model, n_stages)`` splits the layers into contiguous stages (stage 0 also holds the embedding, the
last stage the final norm, the head, the MTP modules and the loss). ``run(model, schedule, tokens,
devices)`` copies every stage onto the device of the rank the schedule places it on (DualPipe places
each stage twice: once per direction), then runs one thread per rank. Each thread executes its rank's
slots in the schedule's order and blocks until the inputs of a slot have arrived from the other ranks,
so a schedule that deadlocks on paper deadlocks here too (and ``run`` says so after ``timeout`` seconds).

Op semantics, on the rank's device, eagerly:
* F: the stage's forward under a persistent ``tf.GradientTape``; the output goes to the next stage.
* B: the gradient of the stage's output with respect to its input only; it goes to the previous stage.
* W: the gradient with respect to the stage's weights (from the same tape), accumulated per copy.
* BW: both in one call.

The loss is ``compute_loss``'s (CE + MTP + sequence balance, ``tf_impl.losses``) of the whole batch:
every micro-batch has the same shape, so the batch's mean is the mean of the micro-batch means, and each
micro-batch's loss enters with weight 1/M. The balance loss is a sum over MoE layers, so each stage adds
its own layers' terms. After the step, the gradients of the copies of one tensor (DualPipe's two
directions; the embedding, shared by stage 0 and the last stage's MTP) are summed.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf_impl.model import Transformer
from tf_impl.moe import MoE
from tf_impl.pipeline.schedules import Kind, Schedule
from tf_impl.losses import main_loss, mtp_loss, sequence_balance_loss


class PipelineError(ValueError):
    """A pipeline that cannot be laid out or run; the message names the numbers and the fix."""


def stage_layers(n_layers: int, n_stages: int) -> list[range]:
    """Contiguous layer ranges, one per stage, sizes differing by at most one (earlier stages larger).

    Args:
        n_layers: the model's transformer layers.
        n_stages: pipeline stages to cut them into (1 <= n_stages <= n_layers).

    Returns:
        one ``range`` of layer indices per stage, in order.
    """
    if not 1 <= n_stages <= n_layers:
        raise PipelineError(f"cannot cut {n_layers} layers into {n_stages} pipeline stages: every stage needs at "
                            f"least one layer; use at most {n_layers} stages or a deeper model")
    bounds = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n_layers), n_stages)])
    return [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class Stage(tf.Module):
    """Stage ``index`` of ``model``, its variables copied onto ``device``.

    ``pairs`` lists (original variable, this copy) for every trainable tensor, so gradients of the copy
    can be credited to the original.
    """

    def __init__(self, model: Transformer, index: int, n_stages: int, device: str):
        super().__init__(name=f"stage{index}")
        cfg = model.cfg
        self.index, self.first, self.last = index, index == 0, index == n_stages - 1
        self.device, self.cfg = device, cfg
        layers = stage_layers(cfg.n_layers, n_stages)[index]
        originals = [model.layers[i] for i in layers]
        if self.last:
            originals += [model.norm, model.head] + list(model.mtp)
        with tf.device(device):
            parts = [copy.deepcopy(m) for m in originals]                    # variables created on `device`
            needs_embed = self.first or (self.last and model.mtp)
            self.embed = tf.Variable(model.embed, name="embed") if needs_embed else None
        self.blocks = parts[:len(layers)]
        if self.last:
            self.norm, self.head, self.mtp = parts[len(layers)], parts[len(layers) + 1], parts[len(layers) + 2:]
        self.pairs = [(o, c) for om, cm in zip(originals, parts)
                      for o, c in zip(om.trainable_variables, cm.trainable_variables)]
        if self.embed is not None:
            self.pairs.append((model.embed, self.embed))
        self._rope = model.rope_at

    def weights(self) -> list[tf.Variable]:
        """This copy's trainable variables, in ``pairs`` order."""
        return [c for _, c in self.pairs]

    def _balance(self, info, pad: int = 0) -> tf.Tensor:
        scores, indices, _ = info
        if pad:  # an MTP block routes T-k positions; pad as forward_aux does so T counts the routed ones
            scores = tf.pad(scores, [[0, 0], [0, pad], [0, 0]])
            indices = tf.pad(indices, [[0, 0], [0, pad], [0, 0]], constant_values=-1)
        return self.cfg.balance_alpha * sequence_balance_loss(scores, indices)

    def __call__(self, x: tf.Tensor, tokens: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(h [b, T, D], this stage's loss terms)``; the last stage returns ``(loss, loss)``.

        ``x``: the previous stage's hidden state [b, T, D] (ignored by stage 0, which embeds ``tokens``);
        ``tokens`` [b, T]: the micro-batch (stage 0's input; the last stage's targets and MTP inputs).
        """
        t = tokens.shape[1]
        cos, sin = self._rope(0, t)                                              # [T, R/2] each
        h = tf.gather(self.embed, tokens) if self.first else x                   # [b, T, D]
        extra = tf.constant(0.0)
        for block in self.blocks:
            h, info = block(h, cos, sin, differentiable=True)
            if info is not None and self.cfg.balance_alpha:
                extra += self._balance(info)
        if not self.last:
            return h, extra
        logits = self.head(self.norm(h))                                         # [b, T, V]
        mtp_logits = []
        for k, module in enumerate(self.mtp, start=1):
            n = t - k
            emb = tf.gather(self.embed, tokens[:, k:])                           # [b, T-k, D]
            h, info = module(emb, h[:, :n], cos[:n], sin[:n])                    # [b, T-k, D]
            mtp_logits.append(self.head(module.norm(h)))                         # [b, T-k, V]
            if info is not None and self.cfg.balance_alpha:
                extra += self._balance(info, pad=k)
        loss = main_loss(logits, tokens) + mtp_loss(mtp_logits, tokens, self.cfg.mtp_lambda) + extra
        return loss, loss


@dataclass
class Result:
    """``loss``: the batch loss; ``grads``: {original variable's ref: its gradient, the copies' summed}."""

    loss: float
    grads: dict


class _Mailbox:
    """What ranks send each other: forward outputs and input gradients, keyed (kind, micro, stage)."""

    def __init__(self, timeout: float):
        self.items: dict[tuple, tf.Tensor] = {}
        self.cond = threading.Condition()
        self.timeout = timeout
        self.failed: BaseException | None = None

    def put(self, key: tuple, value) -> None:
        with self.cond:
            self.items[key] = value
            self.cond.notify_all()

    def get(self, key: tuple, who: str):
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.items or self.failed, self.timeout):
                raise PipelineError(f"{who} waited {self.timeout:g} s for {key[0]} of micro-batch {key[1]} at stage "
                                    f"{key[2]}: the schedule deadlocks (a rank waits for work queued behind it)")
            if self.failed:
                raise PipelineError(f"{who} stopped: another rank failed")
            return self.items[key]


def _rank_loop(rank: int, schedule: Schedule, stages: dict, micro_tokens: list, box: _Mailbox,
               grads: dict, losses: dict) -> None:
    tapes: dict[tuple[int, int], tuple] = {}  # (micro, stage) -> (tape, input, outputs, output grads)
    last, m_total = schedule.n_stages - 1, schedule.n_micro
    for slot in schedule.ranks[rank]:
        for op in slot:
            stage = stages[(op.stage, op.direction)]
            with tf.device(stage.device):
                tokens = micro_tokens[op.micro]
                key = (op.micro, op.stage)
                if op.kind is Kind.F:
                    x = None if op.stage == 0 else tf.identity(box.get(("F", op.micro, op.stage - 1), f"rank {rank}"))
                    with tf.GradientTape(persistent=True) as tape:
                        if x is not None:
                            tape.watch(x)
                        h, extra = stage(x, tokens)
                    tapes[key] = (tape, x, (h, extra), None)
                    losses[key] = float(extra)  # this stage's loss terms (the last stage's: its whole loss)
                    if op.stage < last:
                        box.put(("F", op.micro, op.stage), h)
                else:
                    tape, x, outs, dy = tapes[key]
                    if dy is None:
                        scale = tf.constant(1.0 / m_total)
                        dy = [None if op.stage == last else tf.identity(box.get(("B", op.micro, op.stage + 1),
                                                                                f"rank {rank}")), scale]
                        if op.stage == last:
                            outs, dy = outs[:1], dy[1:]
                        tapes[key] = (tape, x, outs, dy)
                    if op.kind in (Kind.B, Kind.BW) and x is not None:
                        box.put(("B", op.micro, op.stage), tape.gradient(list(outs), x, output_gradients=dy))
                    if op.kind in (Kind.W, Kind.BW):
                        weights = stage.weights()
                        for var, g in zip(weights, tape.gradient(list(outs), weights, output_gradients=dy)):
                            if g is not None:
                                g = tf.convert_to_tensor(g)
                                grads[var.ref()] = g if var.ref() not in grads else grads[var.ref()] + g
                        del tapes[key]


def run(model: Transformer, schedule: Schedule, tokens: np.ndarray, devices: list[str] | None = None,
        timeout: float = 600.0) -> Result:
    """Run one training step's forward and backward of ``model`` on ``tokens`` [B, T] under ``schedule``.

    The batch is split into ``schedule.n_micro`` equal micro-batches along B; rank r runs on ``devices[r]``
    (default: the first ``n_ranks`` logical CPU devices). Returns the loss and the gradients of the
    model's trainable variables (copies summed); the model's own variables are read, never changed.
    """
    tokens = np.asarray(tokens, np.int32)
    b = tokens.shape[0]
    if b % schedule.n_micro:
        raise PipelineError(f"batch of {b} sequences does not split into {schedule.n_micro} equal micro-batches; "
                            f"use a batch size that is a multiple of {schedule.n_micro}")
    if devices is None:
        found = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(found) < schedule.n_ranks:
            raise PipelineError(f"schedule {schedule.name} needs {schedule.n_ranks} devices, found {len(found)} "
                                "logical CPU devices; call tf.config.set_logical_device_configuration before TF "
                                "initialises (see tf_impl.pipeline.execute.logical_cpus) or pass devices=")
        devices = found[:schedule.n_ranks]
    stages = {(s, d): Stage(model, s, schedule.n_stages, devices[r]) for (s, d), r in schedule.placement.items()}
    micro = [tf.constant(part) for part in np.split(tokens, schedule.n_micro)]
    box = _Mailbox(timeout)
    grads: dict = {}
    losses: dict = {}
    errors: list[BaseException] = []

    def worker(r: int) -> None:
        try:
            _rank_loop(r, schedule, stages, micro, box, grads_per_rank[r], losses)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            with box.cond:
                box.failed = exc
                box.cond.notify_all()

    grads_per_rank: list[dict] = [{} for _ in range(schedule.n_ranks)]
    threads = [threading.Thread(target=worker, args=(r,), name=f"pipeline-rank{r}") for r in range(schedule.n_ranks)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    copies = {c.ref(): o.ref() for stage in stages.values() for o, c in stage.pairs}
    for per_rank in grads_per_rank:
        for ref, g in per_rank.items():
            orig = copies[ref]
            grads[orig] = g if orig not in grads else grads[orig] + g
    return Result(sum(losses.values()) / schedule.n_micro, grads)


def logical_cpus(n: int) -> list[str]:
    """Split the host CPU into ``n`` logical devices (must run before TF initialises); returns their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= n:
            return [d.name for d in tf.config.list_logical_devices("CPU")][:n]
        raise PipelineError(f"TF is already initialised with {have} logical CPU device(s), {n} needed: configure "
                            "them first thing in the process (run the pipeline in its own process)") from exc
    return [d.name for d in tf.config.list_logical_devices("CPU")]
