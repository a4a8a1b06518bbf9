"""DeviceMesh and logical devices in the test process (which has TensorFlow's default single CPU)."""

import pytest
import tensorflow as tf

from harness.config import ConfigError, MeshConfig
from tf_impl.parallel import DeviceMesh, use_logical_devices


def test_a_mesh_larger_than_the_devices_present_names_both_numbers():
    present = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(ConfigError, match=rf"= 64 devices, but only {present} are present"):
        DeviceMesh(MeshConfig(data_parallel=8, expert_parallel=8))


def test_splitting_the_cpu_after_tensorflow_started_says_to_do_it_first():
    tf.constant(1.0)  # TF is initialised
    present = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(RuntimeError, match=r"before any TensorFlow op, in a fresh process"):
        use_logical_devices(present + 3)


def test_ranks_groups_follow_the_expert_axis_fastest():
    mesh = DeviceMesh(MeshConfig(data_parallel=2, expert_parallel=4), devices=[f"/cpu:{i}" for i in range(8)])
    assert mesh.coords(5) == (1, 1)
    assert mesh.expert_group(5) == (4, 5, 6, 7)
    assert mesh.data_group(5) == (1, 5)
