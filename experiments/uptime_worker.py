"""The training job that ``experiments.uptime`` supervises: resume, train to ``steps``, report every step.

``python -m experiments.uptime_worker '<UptimeJob as JSON>'`` prints one line per event to stdout,
``<event> <step> <unix time> <seconds>``:

- ``resumed``: training (re)starts at ``step`` (0 for a fresh start), after the model is built and
  ``latest_good()`` restored;
- ``done``: update ``step`` finished (and its checkpoint, if one was due) in ``seconds``;
- ``diverged``: the Trainer refused update ``step`` (TrainingDiverged); the worker restores
  ``latest_good()`` in-process and prints ``resumed`` again;
- ``finished``: all steps done and the last checkpoint written.
"""

from __future__ import annotations

import json
import sys
import time
import warnings


def _say(event: str, step: int, seconds: float = 0.0) -> None:
    print(f"{event} {step} {time.time():.6f} {seconds:.6f}", flush=True)


def main(argv: list[str]) -> int:
    """Run the job described by ``argv[0]`` (an ``UptimeJob`` as JSON); returns the exit code."""
    import tensorflow as tf

    from experiments.uptime import UptimeJob
    from harness.config import ModelConfig, TrainConfig
    from harness.qa.signals import loss_spike_problems
    from tf_impl import Transformer
    from tf_impl.data import DataConfig
    from tf_impl.train import Trainer, TrainingDiverged

    job = UptimeJob(**json.loads(argv[0]))
    tf.config.run_functions_eagerly(job.eager)
    cfg = ModelConfig.tiny(max_seq_len=job.seq_len)
    trainer = Trainer(Transformer(cfg, seed=job.seed, compiled=False), cfg,
                      TrainConfig(lr=job.lr, warmup_steps=2, total_steps=job.steps),
                      DataConfig(batch_size=job.batch_size, seq_len=job.seq_len, seed=job.seed),
                      checkpoint_dir=job.directory, checkpoint_every=job.every, keep=job.keep, progress=False,
                      health=loss_spike_problems)
    warnings.simplefilter("always")  # every fallback and recovery goes to stderr, which the supervisor keeps

    def poison_if_due(step: int) -> None:
        if job.nan_at is not None and step == job.nan_at - 1:
            trainer.model.embed.assign(tf.fill(trainer.model.embed.shape, float("nan")))

    def on_step(step: int, record: dict, seconds: float) -> None:
        _say("done", step, seconds)
        poison_if_due(step)

    trainer.resume()
    _say("resumed", trainer.step)
    poison_if_due(trainer.step)
    while trainer.step < job.steps:
        try:
            trainer.fit(job.steps - trainer.step, on_step=on_step)
        except TrainingDiverged:
            _say("diverged", trainer.step + 1)
            job = UptimeJob(**{**job.__dict__, "nan_at": None})  # a one-off NaN batch: the retry is clean
            if not trainer.resume():
                return 3
            _say("resumed", trainer.step)
    _say("finished", trainer.step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
