"""P3.comm_overhead: the 64-GPU cost model's arithmetic, and the timed all-reduce proxy on logical devices."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import comm, comm_model
from harness.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
V3 = ModelConfig.v3_671b()


def test_all_to_all_bytes_per_token_by_hand():
    """671B: D = 7168, K = 8, M = 4 of 8 nodes -> 3.5 remote nodes expected; FP8 dispatch carries a scale per 128."""
    by = comm_model.moe_layer_bytes(V3, comm_model.Cluster())
    fp8, bf16 = 7168 * (1 + 4 / 128), 7168 * 2
    assert by["ib_fwd"] == pytest.approx(3.5 * (fp8 + bf16))
    assert by["ib_bwd"] == pytest.approx(3.5 * 2 * bf16)
    assert by["nvlink_fwd"] == pytest.approx(8 * (fp8 + bf16))
    one_node = comm_model.moe_layer_bytes(V3, replace(comm_model.Cluster(), nodes=1))
    assert one_node["ib_fwd"] == one_node["ib_bwd"] == 0.0


def test_activated_parameters_match_the_published_37b():
    """DeepSeek-V3 activates 37B parameters per token: the per-layer counts here, summed over the 61 layers
    with the embedding and head, must land there (within 5%: the report rounds, and MTP is left out)."""
    moe = V3.n_layers - V3.n_dense_layers
    total = (moe * comm_model.activated_params_per_token(V3, True)
             + V3.n_dense_layers * comm_model.activated_params_per_token(V3, False) + 2 * V3.vocab_size * V3.dim)
    assert total == pytest.approx(37e9, rel=0.05)


def test_dualpipe_hides_communication_that_1f1b_exposes():
    out = comm_model.report()
    assert 0 < out["dualpipe_exposed_share"] < out["1f1b_exposed_share"]
    assert out["dualpipe_step_s"] < out["1f1b_step_s"]
    assert 0 < out["weak_scaling"] <= 1.0
    slow_ib = comm_model.report(cl=replace(comm_model.Cluster(), ib=5e9))   # a tenth of the bandwidth
    assert slow_ib["dualpipe_exposed_share"] > out["dualpipe_exposed_share"] and slow_ib["weak_scaling"] < out["weak_scaling"]


def test_free_links_leave_nothing_exposed():
    out = comm_model.report(cl=replace(comm_model.Cluster(), ib=1e30, nvlink=1e30))
    assert out["dualpipe_exposed_share"] == pytest.approx(0.0, abs=1e-9)


def test_proxy_batch_follows_deepseeks_tokens_per_parameter():
    assert comm.micro_batches(90_664_768) == 6                              # 1.8e-5 * 90.7M ~ 1632 tokens ~ 6 x 256
    assert comm.micro_batches(1000) == 1


@pytest.mark.slow
def test_timed_all_reduce_share_on_two_logical_devices():
    proc = subprocess.run([sys.executable, "-m", "experiments.comm", "--devices", "2", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 < out["collective_share"] < 1 and out["gradient_bytes"] > 3e8 and out["tokens_per_replica"] == 1536
