"""Training uptime under injected faults. Criterion: P4.uptime ("training stability > 99.9% uptime"), by proxy.

``experiments.uptime.uptime_experiment`` in ``setup_cache``: a tiny-model training job of ``STEPS``
steps, checkpointing every ``EVERY``, run by a supervisor that injects one fault of each of ``KINDS``
at seeded steps (kill -9 twice, kill -9 plus a corrupted newest checkpoint, a NaN batch) and restarts
the job, which resumes from ``CheckpointManager.latest_good()``; then the same job without faults.
Full tier (the class name ends in ``Full``): every restart pays an interpreter start, a TensorFlow
import and a graph trace (~20-30 s on a loaded 2-core host), so the run takes minutes; the default
test suite runs a short supervised job instead (``tests/experiments/test_uptime.py``).
"""

from __future__ import annotations

STEPS = 200
EVERY = 20
KINDS = ("kill", "kill", "kill+corrupt", "nan")


class UptimeFull:
    """Uptime, steps lost and recovery time of a supervised tiny training job under four injected faults."""

    version = "1"

    def setup_cache(self):
        import shutil
        import tempfile

        from experiments.uptime import uptime_experiment

        workdir = tempfile.mkdtemp(prefix="uptime-")
        try:
            return uptime_experiment(workdir, steps=STEPS, every=EVERY, seed=0, kinds=KINDS)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    setup_cache.timeout = 1200

    def track_uptime(self, numbers):
        """P4.uptime: share of wall time spent on steps that were kept, under the injected faults."""
        return numbers["uptime"]

    track_uptime.unit = "fraction"
    track_uptime.pretty_name = "Training uptime under kill -9, corrupt checkpoint and NaN faults"

    def track_weights_equal(self, numbers):
        """P4.uptime: 1 when the faulted run's final weights and optimizer slots equal the fault-free run's, bit for
        bit."""
        return numbers["weights_equal"]

    track_weights_equal.unit = "bool"
    track_weights_equal.pretty_name = "Final weights bit-identical to an uninterrupted run"

    def track_steps_lost_per_fault(self, numbers):
        """P4.uptime (context): training steps recomputed per fault."""
        return numbers["steps_lost_per_fault"]

    track_steps_lost_per_fault.unit = "steps"
    track_steps_lost_per_fault.pretty_name = "Steps lost per fault"

    def track_recovery_seconds(self, numbers):
        """P4.uptime (context): mean seconds from a fault to training resumed."""
        return numbers["recovery_seconds"]

    track_recovery_seconds.unit = "s"
    track_recovery_seconds.pretty_name = "Time to recover from a fault"

    def track_uptime_fault_free(self, numbers):
        """P4.uptime (context): the same share for the same job without faults (checkpointing overhead only)."""
        return numbers["uptime_fault_free"]

    track_uptime_fault_free.unit = "fraction"
    track_uptime_fault_free.pretty_name = "Training uptime without faults"
