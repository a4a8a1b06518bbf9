"""MeshConfig: the layout rules and their messages (no devices needed)."""

import pytest

from harness.config import ConfigError, MeshConfig, ModelConfig


def test_for_devices_puts_every_device_on_the_expert_axis_by_default():
    assert MeshConfig.for_devices(8) == MeshConfig(data_parallel=1, expert_parallel=8)
    assert MeshConfig.for_devices(8, expert_parallel=4).data_parallel == 2
    assert MeshConfig.for_devices(4, expert_parallel=2).n_devices == 4


def test_experts_that_do_not_split_over_the_expert_axis_name_both_numbers():
    cfg = ModelConfig.bench(n_routed_experts=64, n_expert_groups=8, n_limited_groups=4)
    with pytest.raises(ConfigError, match=r"n_routed_experts=64 .*expert_parallel=6"):
        MeshConfig(expert_parallel=6).check_layout(cfg)
    MeshConfig(expert_parallel=8).check_layout(cfg)


def test_batch_that_does_not_split_over_the_ranks_names_both_numbers():
    with pytest.raises(ConfigError, match=r"batch_size=6 .* 4 ranks"):
        MeshConfig(data_parallel=2, expert_parallel=2).check_layout(ModelConfig.tiny(), batch_size=6)


def test_node_limited_routing_needs_whole_groups_per_node():
    cfg = ModelConfig.tiny(n_routed_experts=24, n_expert_groups=6, n_limited_groups=2)
    with pytest.raises(ConfigError, match=r"n_expert_groups=6 .*nodes=4"):
        MeshConfig(expert_parallel=4, nodes=4).check_layout(cfg)
    MeshConfig(expert_parallel=6, nodes=6).check_layout(cfg)


@pytest.mark.parametrize("fields, message", [
    (dict(data_parallel=0), "data_parallel=0 must be a positive integer"),
    (dict(expert_parallel=2.0), "expert_parallel=2.0 must be a positive integer"),
    (dict(expert_parallel=4, nodes=3), "nodes=3 must divide expert_parallel=4"),
    (dict(zero="yes"), "zero='yes' must be True or False"),
])
def test_bad_fields_are_refused_with_the_rule(fields, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MeshConfig(**fields)


def test_devices_that_do_not_divide_are_refused():
    with pytest.raises(ConfigError, match="expert_parallel=3 must divide the 8 devices"):
        MeshConfig.for_devices(8, expert_parallel=3)
