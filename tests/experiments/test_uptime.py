"""P4.uptime's experiment: the supervisor's bookkeeping, and a short supervised job that must lose nothing."""

from __future__ import annotations

import sys

import pytest

from experiments import uptime
from experiments.uptime import FAULT_KINDS, Fault, Run, UptimeJob, fault_plan, measure, supervise


def test_fault_plan_is_seeded_and_leaves_room_to_resume():
    plan = fault_plan(24, 4, seed=3)
    assert plan == fault_plan(24, 4, seed=3) and plan != fault_plan(24, 4, seed=4)
    assert sorted(f.kind for f in plan) == sorted(FAULT_KINDS)
    assert all(4 < f.step < 24 and 0 <= f.delay <= 1 for f in plan)
    assert len({f.step for f in plan}) == len(plan)
    with pytest.raises(ValueError, match="no room"):
        fault_plan(6, 4)


def test_measure_counts_kept_work_lost_steps_and_recovery():
    run = Run()
    t = 100.0
    run.events.append(("resumed", 0, t, 0.0))
    for step in (1, 2, 3):                       # first step traced: 5 s; then 1 s per step
        t += 5.0 if step == 1 else 1.0
        run.events.append(("done", step, t, 5.0 if step == 1 else 1.0))
    run.faults.append((Fault("kill", 3), t + 0.5))
    run.events += [("resumed", 2, t + 10.0, 0.0), ("done", 3, t + 11.0, 1.0), ("done", 4, t + 12.0, 1.0),
                   ("finished", 4, t + 12.0, 0.0)]
    run.restarts = 1
    got = measure(run, steps=4)
    wall = (t + 12.0) - (105.0 - 1.0)             # from where step 1 would have started at the steady 1 s
    assert got["step_seconds"] == 1.0 and got["wall_seconds"] == pytest.approx(wall)
    assert got["uptime"] == pytest.approx(4 * 1.0 / wall)
    assert got["steps_lost_per_fault"] == 1.0 and got["recovery_seconds"] == pytest.approx(9.5)


def test_a_worker_failure_that_no_fault_explains_is_raised_with_its_stderr(tmp_path, monkeypatch):
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(5)"]
    monkeypatch.setattr(UptimeJob, "argv", lambda self: crash)
    with pytest.raises(RuntimeError, match=r"(?s)exited 5 without an injected fault.*boom"):
        supervise(UptimeJob(str(tmp_path)), [])


def test_a_supervised_job_under_faults_ends_with_the_uninterrupted_runs_weights(tmp_path):
    """kill -9 + a corrupted newest checkpoint, and a NaN batch, in a 12-step job: bit-identical final state."""
    numbers = uptime.uptime_experiment(str(tmp_path), steps=12, every=3, seed=0,
                                       kinds=("kill+corrupt", "nan"), eager=True)
    assert numbers["weights_equal"] == 1.0, numbers
    assert numbers["faults"] == 2 and numbers["restarts"] == 1
    assert numbers["steps_lost_per_fault"] > 0
    assert 0 < numbers["uptime"] < numbers["uptime_fault_free"]
    assert list((tmp_path / "faulted").glob("step_*.corrupt-*"))  # the corrupted checkpoint was set aside, not lost
