"""kill -9 at chosen points of a save, an overwrite and a prune: the next open recovers, nothing is lost.

Each case starts ``ckpt_fault_worker.py`` (no TensorFlow import: well under a second), waits until it
reports that it paused at the named point (``TF_IMPL_CHECKPOINT_PAUSE_AT``), sends SIGKILL, and then
opens the directory the way a restarted trainer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tf_impl.checkpoint import CheckpointManager, save_checkpoint
from tf_impl.checkpoint_recovery import PAUSE_ENV

from tests.train.ckpt_fault_worker import arrays

WORKER = Path(__file__).with_name("ckpt_fault_worker.py")


def start(directory, step, keep=2, overwrite=False, pause_at=None, mode=None):
    env = {**os.environ, PAUSE_ENV: pause_at or ""}
    mode = mode or ("overwrite" if overwrite else "save")
    argv = [sys.executable, str(WORKER), str(directory), str(step), str(keep), mode]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_at(directory, step, point, keep=2, overwrite=False, mode=None):
    proc = start(directory, step, keep, overwrite, pause_at=point, mode=mode)
    line = proc.stdout.readline()
    assert line.strip() == f"paused at {point}", (line, proc.stderr.read() if proc.poll() is not None else "")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return proc


def save(directory, step, keep=2):
    model, slots = arrays(step)
    CheckpointManager(directory, keep=keep).save(step, model, slots)


def hidden(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def reopen(directory, keep=2):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mgr = CheckpointManager(directory, keep=keep)
    return mgr, [str(w.message) for w in caught]


def weights(mgr, step):
    return float(mgr.load(step).model_state["embed.weight"][0, 0])


@pytest.mark.parametrize("point", ["tmp-file-written", "tmp-complete"])
def test_kill_during_a_fresh_save_leaves_the_previous_checkpoint_and_no_leftovers(tmp_path, point):
    save(tmp_path, 1)
    kill_at(tmp_path, 2, point)
    assert len(hidden(tmp_path)) == 1  # the dead writer's .tmp folder, before recovery
    mgr, messages = reopen(tmp_path)
    assert hidden(tmp_path) == [] and any("dead writer" in m for m in messages)
    assert mgr.steps() == [1] and mgr.latest_good().step == 1


def test_kill_between_the_two_renames_of_an_overwrite_finishes_the_swap(tmp_path):
    save(tmp_path, 1)
    save_checkpoint(tmp_path / "step_00000002", *arrays(2), step=2)
    kill_at(tmp_path, 2, "old-moved", overwrite=True)  # the worker rewrites step 2: filled with 2 again, new file
    assert not (tmp_path / "step_00000002").exists()  # both copies hidden: what the issue saw
    mgr, messages = reopen(tmp_path)
    assert any("finished the interrupted overwrite of step_00000002" in m for m in messages)
    assert hidden(tmp_path) == [] and mgr.steps() == [1, 2] and mgr.latest_good().step == 2


def test_kill_between_the_renames_with_an_incomplete_new_copy_restores_the_old_one(tmp_path):
    save(tmp_path, 1)
    save(tmp_path, 2)
    kill_at(tmp_path, 2, "old-moved", overwrite=True)
    (new_copy,) = [tmp_path / n for n in hidden(tmp_path) if n.startswith(".tmp-")]
    (new_copy / "model.safetensors").write_bytes(b"torn")  # the new copy did not survive
    mgr, messages = reopen(tmp_path)
    assert any("restored step_00000002" in m for m in messages)
    assert hidden(tmp_path) == [] and weights(mgr, 2) == 2.0


def test_kill_during_the_recovery_of_a_resume_is_recovered_by_the_next_one(tmp_path):
    save(tmp_path, 1)
    save(tmp_path, 2)
    kill_at(tmp_path, 2, "old-moved", overwrite=True)
    kill_at(tmp_path, 0, "recover-swapped", mode="resume")  # the restarted trainer dies while recovering
    proc = start(tmp_path, 0, mode="resume")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "resumed 2", err
    assert hidden(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["step_00000001", "step_00000002"]


def test_kill_after_an_overwrite_swapped_deletes_the_old_copy(tmp_path):
    save(tmp_path, 2)
    kill_at(tmp_path, 2, "new-moved", overwrite=True)
    mgr, _ = reopen(tmp_path)
    assert hidden(tmp_path) == [] and mgr.steps() == [2] and mgr.latest_good().step == 2


def test_kill_during_prune_never_lists_a_half_deleted_checkpoint(tmp_path):
    for step in (1, 2):
        save(tmp_path, step)
    kill_at(tmp_path, 3, "prune-moved")  # step 1 is renamed to .del-* and then the writer dies
    mgr, _ = reopen(tmp_path)
    assert hidden(tmp_path) == [] and mgr.steps() == [2, 3]
    assert [weights(mgr, s) for s in (2, 3)] == [2.0, 3.0]


def test_a_live_writers_folder_is_never_touched(tmp_path):
    save(tmp_path, 1)
    proc = start(tmp_path, 2, pause_at="tmp-complete")
    try:
        assert proc.stdout.readline().strip() == "paused at tmp-complete"
        before = hidden(tmp_path)
        mgr, messages = reopen(tmp_path)  # another process opens the directory while the writer is alive
        assert hidden(tmp_path) == before and len(before) == 1 and messages == []
        assert mgr.latest_good().step == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    reopen(tmp_path)
    assert hidden(tmp_path) == []


def test_an_unpaused_worker_saves_normally(tmp_path):
    proc = start(tmp_path, 5)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "saved", err
    assert np.all(CheckpointManager(tmp_path).load(5).model_state["embed.weight"] == 5)
