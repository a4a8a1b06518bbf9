"""A stated cost model of DeepSeek-V3 (671B shapes) training communication at 64 GPUs on 8 nodes. SIMULATION.

Nothing here is measured: bytes come from the 671B config (``ModelConfig.v3_671b``) and DeepSeek's published
layout, times from link bandwidths and a GPU throughput given as parameters (``Cluster``). The pipeline is
replayed by the same simulator as P3.dualpipe_bubbles (``tf_impl.pipeline.simulate``), so DualPipe's
overlap is the schedule's, not a factor assumed here.

Layout (DeepSeek-V3 report §3.2): 16-way pipeline parallelism; each pipeline stage's MoE layers run 64-way
expert parallelism spanning 8 nodes of 8 GPUs (4 routed experts per GPU per layer); node-limited routing
sends each token to at most M = 4 nodes. The 64 GPUs modelled are one expert-parallel group, i.e. every
stage's work as one GPU of that group sees it; per-GPU work stays fixed as the group grows from 8 GPUs
(one node, NVLink only) to 64 (8 nodes, InfiniBand between them): weak scaling.

Per token and MoE layer, on one GPU (``moe_layer_bytes``):
* dispatch, forward: the token's hidden state in FP8 (1 byte + an fp32 scale per 128) once to each remote
  target node over IB (expected remote nodes: M less the chance the home node is among the M of N chosen,
  ``M - M/N``), then to each of the K target GPUs over NVLink;
* combine, forward: the K expert outputs back in BF16, the same paths;
* backward: both again with BF16 gradients (the V3 report keeps the backward all-to-all in BF16).
IB and NVLink run concurrently (DeepSeek forwards IB traffic over NVLink inside the node), so a chunk's
all-to-all takes the longer of the two. Pipeline sends (one BF16 activation per token per stage
boundary) cross IB. Compute: 2 FLOPs per activated parameter per token forward plus causal attention
scores over ``seq_len``; backward twice the forward, its weight half (W) equal to the forward.

An overlapped F&B pair (DualPipe's steady state) costs ``max(F + B compute, F + B all-to-all)``: each
chunk's all-to-all runs while the other computes. Every other chunk pays compute + all-to-all. 1F1B has no
pairs. After the pipeline drains, the ZeRO-1 gradient reduce-scatter and parameter all-gather of every
parameter the GPU holds cross IB, exposed (not overlapped: conservative).

Reported: ``exposed_share`` = (step time - step time with free communication) / step time, per schedule;
``comm_share_no_overlap`` = all communication time / (compute + communication), the share if nothing
overlapped; ``weak_scaling`` = step time at 8 GPUs / step time at 64 GPUs (same per-GPU work, DualPipe).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.config import ModelConfig


@dataclass(frozen=True)
class Cluster:
    """The model's parameters. Bandwidths per GPU in bytes/s (DeepSeek-V3 report: NVLink 160 GB/s, IB 50 GB/s);
    ``flops`` the achieved dense throughput per GPU (assumed: 40% of an H800's 989 BF16 TFLOPS)."""

    nodes: int = 8
    gpus_per_node: int = 8
    nvlink: float = 160e9
    ib: float = 50e9
    flops: float = 0.4 * 989e12
    max_nodes_per_token: int = 4   # node-limited routing, M
    pp: int = 16
    n_micro: int = 64              # micro-batches per step (4 x PP; DeepSeek's count is not published)
    tokens_per_micro: int = 4096   # one 4K-token sequence per micro-batch
    seq_len: int = 4096


def activated_params_per_token(cfg: ModelConfig, moe: bool) -> float:
    """Parameters one token multiplies by in one layer (attention + the FFN experts it is routed to)."""
    h = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    attn = (cfg.dim * cfg.q_lora_rank + cfg.q_lora_rank * cfg.n_heads * h
            + cfg.dim * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
            + cfg.kv_lora_rank * cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)
            + cfg.n_heads * cfg.v_head_dim * cfg.dim)
    if not moe:
        return attn + 3 * cfg.dim * cfg.inter_dim
    experts = cfg.n_activated_experts + cfg.n_shared_experts
    return attn + experts * 3 * cfg.dim * cfg.moe_inter_dim + cfg.dim * cfg.n_routed_experts


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, moe: bool = True) -> float:
    """Forward FLOPs of one token through one layer: 2 per activated parameter, plus causal attention
    (scores and weighted values over seq_len/2 keys on average)."""
    h = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    attention = 2 * cfg.n_heads * (h + cfg.v_head_dim) * seq_len / 2
    return 2 * activated_params_per_token(cfg, moe) + attention


def moe_layer_bytes(cfg: ModelConfig, cl: Cluster) -> dict[str, float]:
    """All-to-all bytes per token per MoE layer on one GPU, forward and backward, over IB and NVLink."""
    fp8 = cfg.dim * (1 + 4 / 128)                        # e4m3 values + one fp32 scale per 128
    bf16 = cfg.dim * 2
    m = min(cl.max_nodes_per_token, cl.nodes)
    remote = m - m / cl.nodes if cl.nodes > 1 else 0.0   # the home node is among the M chosen with chance M/N
    k = cfg.n_activated_experts
    return {"ib_fwd": remote * (fp8 + bf16), "ib_bwd": remote * 2 * bf16,
            "nvlink_fwd": k * (fp8 + bf16), "nvlink_bwd": k * 2 * bf16}


def params_per_gpu(cfg: ModelConfig, cl: Cluster) -> float:
    """Parameters one GPU holds: its stage's share of the non-expert tensors, and 1/(nodes x GPUs) of its
    stage's routed experts."""
    from harness.state import expected_shapes

    experts = other = 0
    for name, shape in expected_shapes(cfg).items():
        size = 1
        for n in shape:
            size *= n
        if ".experts." in name:
            experts += size
        else:
            other += size
    return (other + experts / (cl.nodes * cl.gpus_per_node)) / cl.pp


def step(cfg: ModelConfig, cl: Cluster, schedule: str, comm: bool = True) -> float:
    """Simulated seconds of one training step on one GPU of the expert-parallel group."""
    from tf_impl.pipeline import schedules
    from tf_impl.pipeline.simulate import Costs, simulate

    moe_layers = cfg.n_layers - cfg.n_dense_layers
    layers = cfg.n_layers / cl.pp                         # layers per stage, averaged
    moe_share = moe_layers / cfg.n_layers
    tokens = cl.tokens_per_micro
    fwd = tokens * layers * (moe_share * forward_flops_per_token(cfg, cl.seq_len, True)
                             + (1 - moe_share) * forward_flops_per_token(cfg, cl.seq_len, False)) / cl.flops
    f_comp, b_comp, w = fwd, 2 * fwd, fwd
    f_a2a = b_a2a = 0.0
    send = 0.0
    if comm:
        by = moe_layer_bytes(cfg, cl)
        per = tokens * layers * moe_share
        f_a2a = per * max(by["ib_fwd"] / cl.ib, by["nvlink_fwd"] / cl.nvlink)
        b_a2a = per * max(by["ib_bwd"] / cl.ib, by["nvlink_bwd"] / cl.nvlink)
        send = tokens * cfg.dim * 2 / cl.ib
    f, b = f_comp + f_a2a, b_comp + b_a2a
    pair = max(f_comp + b_comp, f_a2a + b_a2a)
    costs = Costs((f,) * cl.pp, (b,) * cl.pp, (w,) * cl.pp, fb_saving=f + b - pair, comm=send)
    makespan = simulate(schedules.build(schedule, cl.pp, cl.n_micro), costs).makespan
    zero1 = 2 * params_per_gpu(cfg, cl) * 2 / cl.ib if comm and cl.nodes > 1 else 0.0  # reduce-scatter + all-gather, BF16
    if comm and cl.nodes == 1:
        zero1 = 2 * params_per_gpu(cfg, cl) * 2 / cl.nvlink
    return makespan + zero1


def report(cfg: ModelConfig | None = None, cl: Cluster | None = None) -> dict[str, float]:
    """The model's numbers at 64 GPUs on 8 nodes (see the module docstring)."""
    cfg = cfg or ModelConfig.v3_671b()
    cl = cl or Cluster()
    out: dict[str, float] = {}
    for name in ("1f1b", "dualpipe"):
        with_comm, free = step(cfg, cl, name), step(cfg, cl, name, comm=False)
        out[f"{name}_step_s"] = with_comm
        out[f"{name}_exposed_share"] = (with_comm - free) / with_comm
    by = moe_layer_bytes(cfg, cl)
    per_token = (cfg.n_layers - cfg.n_dense_layers) * (by["ib_fwd"] + by["ib_bwd"])
    out["ib_bytes_per_token"] = per_token
    compute = 3 * forward_flops_per_token(cfg, cl.seq_len) / cl.flops
    a2a = max((by["ib_fwd"] + by["ib_bwd"]) / cl.ib, (by["nvlink_fwd"] + by["nvlink_bwd"]) / cl.nvlink)
    out["comm_share_no_overlap"] = a2a / (a2a + compute)
    one_node = replace(cl, nodes=1)
    out["weak_scaling"] = step(cfg, one_node, "dualpipe") / out["dualpipe_step_s"]
    out["params_per_gpu"] = params_per_gpu(cfg, cl)
    return out


def main() -> int:
    """``python -m experiments.comm_model``: the model's numbers with the default ``Cluster``, one JSON line."""
    import json

    print(json.dumps(report()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
