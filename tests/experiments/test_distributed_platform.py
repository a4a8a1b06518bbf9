"""experiments.distributed on GPUs: the same code, the devices present; without enough GPUs, a clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("kind, who", [("memory", "TensorFlow"), ("jax", "JAX")])
def test_gpu_platform_without_gpus_names_both_numbers(kind, who):
    proc = subprocess.run([sys.executable, "-m", "experiments.distributed", kind, "--devices", "2", "--layouts", "1x2",
                           "--platform", "gpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"--platform gpu needs 2 GPUs, {who} sees 0" in proc.stderr
    assert "Traceback" not in proc.stderr
