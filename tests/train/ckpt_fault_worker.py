"""Subprocess for the kill -9 tests: one checkpoint operation, paused where TF_IMPL_CHECKPOINT_PAUSE_AT says.

``python ckpt_fault_worker.py DIR STEP KEEP save|overwrite`` saves checkpoint STEP (arrays filled with STEP)
through a ``CheckpointManager(DIR, keep=KEEP)``; ``... resume`` opens DIR and loads its newest good
checkpoint. Run as a script, it stubs the ``tf_impl`` package so that importing ``tf_impl.checkpoint``
does not import TensorFlow: the worker starts in a fraction of a second. Imported (for ``arrays``), it
changes nothing.
"""

import sys
import types
from pathlib import Path

import numpy as np


def arrays(step: int) -> tuple[dict, dict]:
    """The model state and optimizer slots of checkpoint ``step``: every value equal to +-step."""
    return ({"embed.weight": np.full((64, 32), step, np.float32)},
            {"m.0000": np.full((64, 32), -step, np.float32), "count": np.asarray(step, np.int64)})


def main(argv: list[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    package = types.ModuleType("tf_impl")
    package.__path__ = [str(root / "tf_impl")]
    sys.modules["tf_impl"] = package
    from tf_impl.checkpoint import CheckpointManager

    directory, step, keep, mode = argv[0], int(argv[1]), int(argv[2]), argv[3]
    if mode == "resume":  # what a restarted trainer does first: open the directory, load the newest good one
        print("resumed", CheckpointManager(directory, keep=keep).latest_good().step, flush=True)
        return
    model, slots = arrays(step)
    CheckpointManager(directory, keep=keep).save(step, model, slots, overwrite=mode == "overwrite")
    print("saved", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
