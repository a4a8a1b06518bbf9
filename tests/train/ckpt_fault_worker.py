"""Subprocess for the kill -9 tests: one checkpoint operation, paused where TF_IMPL_CHECKPOINT_PAUSE_AT says.

``python ckpt_fault_worker.py DIR STEP KEEP [overwrite]`` saves checkpoint STEP (arrays filled with STEP)
through a ``CheckpointManager(DIR, keep=KEEP)``; ``... resume`` opens DIR and loads its newest good checkpoint. The ``tf_impl`` package is stubbed so that importing
``tf_impl.checkpoint`` does not import TensorFlow: the worker starts in a fraction of a second.
"""

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
package = types.ModuleType("tf_impl")
package.__path__ = [str(ROOT / "tf_impl")]
sys.modules["tf_impl"] = package

import numpy as np  # noqa: E402

from tf_impl.checkpoint import CheckpointManager  # noqa: E402


def arrays(step: int) -> tuple[dict, dict]:
    return ({"embed.weight": np.full((64, 32), step, np.float32)},
            {"m.0000": np.full((64, 32), -step, np.float32), "count": np.asarray(step, np.int64)})


if __name__ == "__main__":
    directory, step, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if "resume" in sys.argv[4:]:  # what a restarted trainer does first: open the directory, load the newest good one
        print("resumed", CheckpointManager(directory, keep=keep).latest_good().step, flush=True)
        sys.exit(0)
    model, slots = arrays(step)
    CheckpointManager(directory, keep=keep).save(step, model, slots, overwrite="overwrite" in sys.argv[4:])
    print("saved", flush=True)
