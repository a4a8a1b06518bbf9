"""P4.uptime by proxy: a training job under injected faults, restarted by a supervisor, timed step by step.

What runs
---------
``supervise(job, plan)`` starts the training job ``experiments.uptime_worker`` (a ``tf_impl`` Trainer on
the shipped corpus, checkpointing every ``job.every`` steps) as a child process and injects the faults
of ``plan``, each at a step drawn from a seeded generator:

- ``kill``: SIGKILL (kill -9) a random fraction of a step after the worker reports that step, so it
  lands inside the next step or inside a checkpoint save;
- ``kill+corrupt``: the same, then one byte of the newest checkpoint's weights file is flipped before
  the restart, so the resume must fall back past it (and the next save sets it aside);
- ``nan``: the worker poisons its weights with NaN right before that step, as a NaN batch would
  poison the activations; the Trainer refuses the update (TrainingDiverged) and the worker resumes
  in-process from ``CheckpointManager.latest_good()``.

After a kill the supervisor simply starts the worker again; the worker resumes from
``latest_good()`` (the trainer's own resume: crash recovery of the checkpoint directory, fallback past
corrupt checkpoints, data position). The same job is also run once without faults.

Why a small loop and not a supervisor library: what is under test is the trainer's resume, which a
process supervisor (supervisor 4.3, circus 0.19 on PyPI) does not provide: they restart a command,
which ``subprocess.Popen`` in a loop does too, and they run as daemons configured through files and
sockets, a service to start and stop inside an asv benchmark for no gain. Ray Train's FailureConfig
restores from its own checkpoint registry, which would bypass the verified ``latest_good()`` that this
experiment measures, and it brings a cluster runtime along.

What is measured
----------------
- ``uptime``: the share of wall time spent on steps that were kept,
  ``steps * median step seconds / wall seconds``. The wall clock runs from the first worker's first
  step (counted at the steady step time: the one-time start-up that any run pays is not downtime)
  to the last worker's exit; it includes every restart (interpreter start, TensorFlow import, model
  build, graph trace, restore), every recomputed step and every checkpoint save. Kept work is counted
  at the steady-state step time, so a restarted worker's first step (its graph trace) is lost time.
  ``uptime_fault_free`` is the same number for the run without faults: what checkpointing alone costs.
- ``steps_lost_per_fault``: step executions that did not survive (recomputed after a restart), per fault.
- ``recovery_seconds``: mean time from a fault (the kill, the NaN) to training resumed.
- ``weights_equal``: 1.0 when the final weights and optimizer slots are bit-identical to the
  fault-free run's (same seed, same data order), the real test that nothing was lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FAULT_KINDS = ("kill", "kill+corrupt", "nan")


@dataclass(frozen=True)
class UptimeJob:
    """One training job: ``steps`` AdamW steps of ``ModelConfig.tiny(max_seq_len=seq_len)`` on the shipped corpus."""

    directory: str
    steps: int = 24
    every: int = 4
    keep: int = 2
    seed: int = 0
    batch_size: int = 2
    seq_len: int = 32
    lr: float = 3e-3
    nan_at: int | None = None  # the worker poisons its weights right before this step (a one-off NaN batch)
    eager: bool = False        # run the train step eagerly: no graph trace per (re)start, slower steps (for tests)

    def argv(self) -> list[str]:
        """The worker's command line."""
        return [sys.executable, "-m", "experiments.uptime_worker", json.dumps(asdict(self))]


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` (see FAULT_KINDS) right after the worker reports step ``step``."""

    kind: str
    step: int
    delay: float = 0.0  # a kill is sent this fraction of a step time after the report


@dataclass
class Run:
    """The supervisor's log of one supervised job: worker events, faults and restarts."""

    events: list[tuple[str, int, float, float]] = field(default_factory=list)  # (event, step, unix time, seconds)
    faults: list[tuple[Fault, float]] = field(default_factory=list)            # (fault, unix time it hit)
    restarts: int = 0
    stderr: list[str] = field(default_factory=list)                             # each worker's stderr


def fault_plan(steps: int, every: int, seed: int = 0, kinds: tuple[str, ...] = FAULT_KINDS) -> list[Fault]:
    """One fault of each kind at distinct seeded steps in ``[every + 1, steps - 1]``, in step order.

    The range starts after the first checkpoint so that every fault has a checkpoint to resume from
    (and a ``kill+corrupt`` one to fall back past, when it hits after the second), and ends before the
    last step so that the job still has work to do after the fault.
    """
    rng = np.random.default_rng(seed)
    candidates = np.arange(every + 1, steps)
    if len(candidates) < len(kinds):
        raise ValueError(f"steps={steps} leaves no room for {len(kinds)} faults after the first checkpoint "
                         f"(every={every}); use more steps")
    chosen = sorted(rng.choice(candidates, size=len(kinds), replace=False).tolist())
    order = rng.permutation(len(kinds))
    return [Fault(kinds[k], int(s), float(rng.uniform(0.0, 1.0))) for k, s in zip(order, chosen)]


def _corrupt_newest(directory: str, seed: int) -> str | None:
    """Flip one byte of the newest checkpoint's weights file; returns its folder name (None if none)."""
    steps = sorted(p for p in Path(directory).glob("step_*") if p.name[5:].isdigit())
    if not steps:
        return None
    target = steps[-1] / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[int(np.random.default_rng(seed).integers(len(data) // 2, len(data)))] ^= 0xFF
    target.write_bytes(bytes(data))
    return steps[-1].name


def _record(run: Run, line: str, nan: list[Fault]) -> None:
    event, step, stamp, seconds = line.split()
    run.events.append((event, int(step), float(stamp), float(seconds)))
    if event == "diverged" and nan:
        run.faults.append((nan.pop(0), float(stamp)))


def supervise(job: UptimeJob, plan: list[Fault], timeout: float = 600.0) -> Run:
    """Run ``job`` to completion under ``plan``'s faults, restarting the worker after each kill.

    Raises RuntimeError when the worker fails in a way no fault explains (its stderr is included),
    or when the job does not finish within ``timeout`` seconds.
    """
    run = Run()
    pending = sorted(plan, key=lambda f: f.step)
    nan = [f for f in pending if f.kind == "nan"]
    pending = [f for f in pending if f.kind != "nan"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    deadline = time.time() + timeout
    while True:
        worker_job = job if not nan else UptimeJob(**{**asdict(job), "nan_at": nan[0].step})
        log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty stderr must never block the worker
        proc = subprocess.Popen(worker_job.argv(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        killed = None
        for line in proc.stdout:
            _record(run, line, nan)
            if run.events[-1][0] == "done" and pending and run.events[-1][1] >= pending[0].step:
                killed = pending.pop(0)
                step_s = float(np.median([sec for e, _, _, sec in run.events if e == "done"]))
                time.sleep(killed.delay * step_s)  # lands inside the next step, or inside a checkpoint save
                os.kill(proc.pid, signal.SIGKILL)
                run.faults.append((killed, time.time()))
                break
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"uptime job did not finish within {timeout} s")
        proc.wait()
        for line in proc.stdout:  # what the worker reported before the kill reached it
            _record(run, line, nan)
        proc.stdout.close()
        log.seek(0)
        err = log.read()
        log.close()
        run.stderr.append(err)
        if killed is not None:
            if killed.kind == "kill+corrupt":
                _corrupt_newest(job.directory, job.seed + killed.step)
            run.restarts += 1
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"uptime worker exited {proc.returncode} without an injected fault:\n{err[-3000:]}")
        return run


def measure(run: Run, steps: int) -> dict[str, float]:
    """The uptime numbers of a supervised run (see the module docstring).

    The wall clock starts where the first worker's first step would have started at the steady step
    time: the first worker's start-up (interpreter, TensorFlow import, model build, first graph trace)
    is paid once by any run, faulted or not, and is not downtime. Every later start-up is.
    """
    done = [(s, t, sec) for e, s, t, sec in run.events if e == "done"]
    resumed = [t for e, _, t, _ in run.events if e == "resumed"]
    finish = max(t for e, _, t, _ in run.events if e == "finished")
    step_s = float(np.median([sec for _, _, sec in done]))
    wall = finish - (done[0][1] - step_s)
    recovery = []
    for _, hit in run.faults:
        after = [t for t in resumed if t > hit]
        recovery.append(after[0] - hit if after else float("nan"))
    n_faults = len(run.faults)
    return {
        "uptime": steps * step_s / wall,
        "wall_seconds": wall,
        "step_seconds": step_s,
        "faults": float(n_faults),
        "restarts": float(run.restarts),
        "steps_lost_per_fault": (len(done) - steps) / n_faults if n_faults else 0.0,
        "recovery_seconds": float(np.mean(recovery)) if recovery else 0.0,
    }


def final_state(directory: str) -> dict[str, np.ndarray]:
    """The newest good checkpoint of ``directory``: weights and optimizer slots in one dict."""
    from tf_impl.checkpoint import CheckpointManager

    ckpt = CheckpointManager(directory).latest_good()
    if ckpt is None:
        raise RuntimeError(f"{directory} holds no good checkpoint")
    return {**{f"model/{k}": v for k, v in ckpt.model_state.items()},
            **{f"optimizer/{k}": v for k, v in ckpt.optimizer_state.items()}, "step": np.asarray(ckpt.step)}


def bit_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """True when both dicts hold the same names with identical bytes (dtype, shape and values)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def uptime_experiment(workdir: str, steps: int = 24, every: int = 4, seed: int = 0,
                      kinds: tuple[str, ...] = FAULT_KINDS, eager: bool = False) -> dict[str, float]:
    """The P4.uptime numbers: the job under one fault of each of ``kinds`` and fault-free, compared bit for bit.

    Args:
        workdir: an empty directory for the two runs' checkpoints.
        steps: training steps of the job.
        every: checkpoint interval in steps.
        seed: seed of the model, the data order and the fault plan.
        kinds: the faults injected, one each.
        eager: run the train step eagerly (no graph trace per start; for quick tests).

    Returns:
        ``measure``'s numbers for the faulted run, ``uptime_fault_free`` (the same job without faults:
        what checkpointing alone costs) and ``weights_equal`` (1.0 or 0.0).
    """
    faulted = UptimeJob(os.path.join(workdir, "faulted"), steps=steps, every=every, seed=seed, eager=eager)
    clean = UptimeJob(os.path.join(workdir, "clean"), steps=steps, every=every, seed=seed, eager=eager)
    numbers = measure(supervise(faulted, fault_plan(steps, every, seed, kinds)), steps)
    numbers["uptime_fault_free"] = measure(supervise(clean, []), steps)["uptime"]
    numbers["weights_equal"] = float(bit_equal(final_state(faulted.directory), final_state(clean.directory)))
    return numbers
