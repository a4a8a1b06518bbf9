"""DualPipe and 1F1B executed on logical CPU devices: the pipelined step's loss and gradients equal the
unpipelined step's, within the one tolerance table. Logical devices must be configured before TF
initialises, so each check runs ``python -m experiments.pipeline grads`` in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import pipeline

ROOT = Path(__file__).resolve().parents[2]


def _grads(pp: int, n_micro: int, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "experiments.pipeline", "grads", "--pp", str(pp),
                           "--micro", str(n_micro)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_equal_to_unpipelined(found: dict) -> None:
    assert set(found) == {"1f1b", "dualpipe"}
    for name, numbers in found.items():
        assert numbers["tensors"] > 100, name                 # every trainable tensor of the bench model
        assert numbers["loss_over_tolerance"] <= 1.0, (name, numbers)
        assert numbers["worst_gradient_over_tolerance"] <= 1.0, (name, numbers)


def test_pipelined_gradients_equal_unpipelined_on_two_logical_devices():
    _assert_equal_to_unpipelined(_grads(2, 4, timeout=600))


@pytest.mark.slow
def test_pipelined_gradients_equal_unpipelined_on_four_logical_devices():
    _assert_equal_to_unpipelined(_grads(4, 8, timeout=1200))


def test_the_gradient_comparison_sees_a_wrong_gradient():
    """The check must be able to fail: a gradient off by 1e-3 of its largest entry is far outside."""
    import numpy as np

    ref = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    assert pipeline._max_over_tolerance(ref, ref, "gradients") == 0.0
    assert pipeline._max_over_tolerance(ref + 1e-3, ref, "gradients") > 5.0


def test_too_few_logical_devices_is_a_clear_error():
    code = ("from tf_impl.pipeline import execute, schedules\n"
            "import numpy as np\n"
            "from harness.config import ModelConfig\n"
            "from tf_impl import Transformer\n"
            "m = Transformer(ModelConfig.tiny(), compiled=False)\n"
            "execute.run(m, schedules.dualpipe(4, 8), np.zeros((8, 4), np.int32))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "needs 4 devices, found 1 logical CPU" in proc.stderr


def test_a_model_too_shallow_for_the_stages_is_a_clear_error():
    from tf_impl.pipeline.execute import PipelineError, stage_layers

    assert stage_layers(6, 4) == [range(0, 2), range(2, 4), range(4, 5), range(5, 6)]
    with pytest.raises(PipelineError, match="cannot cut 2 layers into 4 pipeline stages"):
        stage_layers(2, 4)
