"""Shared pieces of the Phase 5 experiments: the policy model, SFT, evaluation, checkpoints, progress bars.

The experiments (``experiments.grpo``, ``experiments.reasoning``) train the project's own TF DeepSeek-V3
(``tf_impl.Transformer``) with the objectives of ``tf_impl.alignment`` on the verifiable tasks of
``experiments.tasks``, and evaluate it through its public ``generate`` (greedy unless a temperature is
given; sampling seeded). Trained models are saved as a safetensors state plus the config JSON beside it,
which :func:`load_policy` turns back into a model that ``generate`` runs.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from experiments import tasks as T
from harness.config import ModelConfig, TrainConfig


@dataclass(frozen=True)
class SFTSetup:
    """One supervised fine-tuning run: model size, steps, batch, learning rate, traces or not."""

    dim: int = 64
    n_layers: int = 2
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 20
    with_trace: bool = False


def policy_config(dim: int = 64, n_layers: int = 2, seq_len: int = 64) -> ModelConfig:
    """``ModelConfig.tiny`` (MLA, a dense layer then MoE layers with 8 experts, byte vocabulary) at width
    ``dim`` and depth ``n_layers``, without MTP (no objective here reads it), decoding up to 128 sequences
    at once (a GRPO batch of prompts x group)."""
    heads = max(4, dim // 32)
    return ModelConfig.tiny(dim=dim, n_layers=n_layers, n_heads=heads, inter_dim=2 * dim, moe_inter_dim=dim // 2,
                            q_lora_rank=dim // 2, kv_lora_rank=dim // 4, max_seq_len=seq_len,
                            original_seq_len=seq_len, max_batch_size=128, n_mtp_modules=0)


def train_batches(tasks: Sequence[str], batch_size: int, seed: int) -> Iterator[list[T.Problem]]:
    """Endless batches of ``batch_size`` training-split problems, tasks in turn, fresh each step (seeded)."""
    per = -(-batch_size // len(tasks))
    step = 0
    while True:
        problems = T.mixture(tasks, per, "train", seed=seed * 1_000_003 + step)
        yield problems[:batch_size]
        step += 1


class Progress:
    """A tqdm bar on stderr showing the step's metrics and tokens/s; silent unless ``enabled``."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, mininterval=1.0,
                        dynamic_ncols=True)
        self.start, self.tokens = time.perf_counter(), 0

    def update(self, tokens: int, **metrics: float) -> None:
        """One step done that processed ``tokens`` tokens; ``metrics`` (reward, accuracy, loss, ...) are shown."""
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in metrics.items()}, "tok/s": f"{rate:,.0f}"}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar (a newline on stderr)."""
        self.bar.close()


def sft(model, layout: T.Layout, tasks: Sequence[str], setup: SFTSetup, seed: int, verbose: bool = False,
        snapshot_steps: Sequence[int] = ()) -> dict[int, dict[str, np.ndarray]]:
    """Supervised fine-tuning of ``model`` on the problems' gold responses (with traces if ``setup.with_trace``).

    The loss is masked to the response tokens (``tf_impl.alignment.sft_loss``). Returns ``{step: state}``,
    the model's state after each of ``snapshot_steps`` updates (e.g. an early checkpoint to start RL from).
    """
    from tf_impl.alignment import PolicyTrainer

    trainer = PolicyTrainer(model, TrainConfig(lr=setup.lr, warmup_steps=setup.warmup, total_steps=setup.steps))
    batches, snapshots = train_batches(tasks, setup.batch_size, seed), {}
    bar = Progress(setup.steps, f"SFT {'+'.join(tasks)}{' (traces)' if setup.with_trace else ''}", verbose)
    for step in range(1, setup.steps + 1):
        problems = next(batches)
        tokens, mask = layout.sft_batch(problems, setup.with_trace)
        record = trainer.sft_step(tokens, mask)
        bar.update(tokens.size, loss=record["loss"])
        if step in snapshot_steps:
            snapshots[step] = model.state_dict()
    bar.close()
    return snapshots


def complete(model, layout: T.Layout, problems: Sequence[T.Problem], temperature: float = 0.0, seed: int = 0,
             chunk: int = 128) -> np.ndarray:
    """Generated response tokens int32 [B, response_len] for ``problems`` (in chunks of ``chunk`` prompts)."""
    out = [model.generate(layout.prompts(problems[i:i + chunk]), layout.response_len, temperature=temperature,
                          seed=seed + i) for i in range(0, len(problems), chunk)]
    return np.concatenate(out) if out else np.zeros([0, layout.response_len], np.int32)


def accuracy(model, layout: T.Layout, problems: Sequence[T.Problem]) -> dict[str, float]:
    """Greedy exact-match accuracy per task and over all (``"all"``) of ``problems``."""
    new = complete(model, layout, problems)
    hits: dict[str, list[bool]] = {}
    for p, row in zip(problems, new):
        hits.setdefault(p.task, []).append(T.check(p, T.completion_text(row)))
    out = {task: float(np.mean(h)) for task, h in hits.items()}
    out["all"] = float(np.mean([h for v in hits.values() for h in v]))
    return out


# ---------------------------------------------------------------------------------------- checkpoints
def save_policy(model, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Save ``model`` as ``path`` (a ``.safetensors`` state) and its config as ``path`` with ``.json``.

    Refuses to replace either file unless ``overwrite`` (FileExistsError naming it). Returns ``path``.
    """
    from harness.io import save_safetensors

    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        raise ValueError(f"policy checkpoint {path!r} must end in .safetensors")
    cfg_path = path[: -len(".safetensors")] + ".json"
    if os.path.exists(cfg_path) and not overwrite:
        raise FileExistsError(f"{cfg_path} exists; pass overwrite=True to replace it")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_safetensors(model.state_dict(), path, overwrite=overwrite)
    model.cfg.to_json(cfg_path)
    return path


def load_policy(path: str | os.PathLike, framework: str = "tf"):
    """A ``Transformer`` (``tf_impl`` or ``reference``) built from ``path``'s config JSON with its weights loaded."""
    from harness.io import load_safetensors

    path = os.fspath(path)
    cfg_path = path[: -len(".safetensors")] + ".json"
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{cfg_path} (the config saved beside {path}) is missing; save with save_policy")
    cfg = ModelConfig.from_json(cfg_path)
    if framework == "tf":
        from tf_impl import Transformer
    elif framework == "flax":
        from reference import Transformer
    else:
        raise ValueError(f"framework {framework!r} is unknown; use 'tf' or 'flax'")
    model = Transformer(cfg)
    model.load_state_dict(load_safetensors(path), source=path)
    return model
