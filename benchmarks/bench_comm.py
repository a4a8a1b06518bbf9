"""Communication's share of training time. Criterion: P3.comm_overhead ("< 20% of training time").

Two views, both gating:

* ``CommOverheadFull`` (PROXY, full tier): ``python -m experiments.comm`` in a fresh process (logical
  devices must be configured before TF initialises) times a data-parallel step of the bench model on 2
  logical CPU devices under ``tf.distribute.MirroredStrategy``: each replica's forward and backward over
  1,536 tokens (DeepSeek-V3's tokens per step per parameter held per GPU, times the bench model's size),
  then TF's own all-reduce of every gradient. It is the data-parallel all-reduce, not the expert-parallel
  all-to-all that dominates DeepSeek-V3's communication. Wall time: setup_cache 164 s on the 2-core host
  at load average ~20 (three rounds of a 2 x 6-micro-batch step), hence the full tier.
* ``CommModel`` (SIMULATION): ``experiments.comm_model``'s stated cost model of one 64-GPU expert-parallel
  group on 8 nodes at the 671B shapes, NVLink 160 GB/s and IB 50 GB/s, replayed by the DualPipe
  simulator: the share of the step that communication adds beyond computation. Arithmetic only: setup_cache
  15 s at load ~20, mostly the TensorFlow import the simulator's package brings.
"""

from __future__ import annotations


class CommOverheadFull:
    """Timed all-reduce share of a data-parallel bench-model step on 2 logical CPU devices."""

    version = 1

    def setup_cache(self):
        import json
        import subprocess
        import sys

        from benchmarks.common import REPO_ROOT

        proc = subprocess.run([sys.executable, "-m", "experiments.comm", "--devices", "2", "--rounds", "3"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
        if proc.returncode:
            raise RuntimeError(f"experiments.comm failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    setup_cache.timeout = 1800

    def track_collective_share(self, numbers):
        """P3.comm_overhead: all-reduce seconds / (compute + all-reduce) seconds of one data-parallel step."""
        return numbers["collective_share"]

    track_collective_share.unit = "fraction"
    track_collective_share.pretty_name = "All-reduce share of a data-parallel step, 2 logical CPUs"


class CommModel:
    """Communication exposed in a DualPipe step of a 64-GPU, 8-node expert-parallel group (cost model)."""

    version = 1

    def setup_cache(self):
        from experiments.comm_model import report

        return report()

    def track_exposed_share(self, numbers):
        """P3.comm_overhead: (step - step with free communication) / step, DualPipe, 671B shapes, 64 GPUs."""
        return numbers["dualpipe_exposed_share"]

    track_exposed_share.unit = "fraction"
    track_exposed_share.pretty_name = "Exposed communication share, DualPipe at 64 GPUs (cost model)"
