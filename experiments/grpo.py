"""P5.instruction_following and P5.grpo_no_value_fn: SFT, then GRPO without a value function.

Protocol:

1. **SFT** a small DeepSeek-V3 (``experiments.posttrain.policy_config``) on the instruction mix of
   ``experiments.tasks`` (addition, sorting, "answer in reverse", "answer inside brackets"), the loss
   masked to the response. Held-out exact match per task type is P5.instruction_following.
2. **GRPO** from an early checkpoint of that SFT run (``start_step``, where held-out reward is still
   partial, so rewards vary within a group), once per seed (``GRPOSetup.seeds``; the seed drives the prompts drawn
   and the sampling), as in DeepSeekMath / R1: per iteration ``prompts`` training prompts, a group of
   ``group`` completions each sampled at temperature 1 (seeded), rule-based rewards from the exact
   checkers, advantages normalised within each group, ``inner_steps`` updates on the clipped-ratio
   objective with a k3 KL penalty to the frozen SFT policy. No value network: the group mean is the
   baseline, and the trainer's value-function parameters are counted from the trained objects.
3. **Measure** held-out reward (greedy exact match, the mean of the rule reward) of the SFT model and
   of each seed's GRPO model. The claim holds when the mean gain over seeds exceeds the seed-to-seed
   spread (max - min of the GRPO models' held-out rewards) and the value-function parameters are 0.

What the proxy keeps: GRPO's algorithm as published (group sampling, group-normalised outcome advantages,
clipped importance ratio against the sampling policy, KL to a frozen reference, no critic), run on the
project's own MLA + MoE model, with rewards that only an exact checker gives. What it cannot say about
671B: the policy is ~10^5 parameters and byte-level, the tasks are short synthetic ones rather than
math and code with long reasoning, and the run is hundreds of updates, not thousands of RL steps;
whether GRPO "achieves alignment" on open-ended human preferences is not tested at all.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from experiments import posttrain as P
from experiments import tasks as T
from harness.config import TrainConfig

LAYOUT = T.Layout(prompt_len=12, response_len=10)
EVAL_SEED = 777                 # held-out sets do not depend on the training seed


@dataclass(frozen=True)
class GRPOSetup:
    """Sizes of the experiment; the defaults are the full-tier run (benchmarks/bench_alignment.py)."""

    sft: P.SFTSetup = field(default_factory=lambda: P.SFTSetup(dim=128, steps=6000))
    start_step: int = 1500        # GRPO starts from this SFT checkpoint, where held-out reward is still partial
    iterations: int = 150
    prompts: int = 16             # prompts per iteration
    group: int = 8                # G completions per prompt
    inner_steps: int = 2          # updates per sampled batch (the first has ratio 1; the second clips)
    lr: float = 2e-4
    warmup: int = 10
    clip_eps: float = 0.2
    beta: float = 0.04
    temperature: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_per_task: int = 100


def heldout(n_per_task: int) -> list[T.Problem]:
    """The held-out instruction set: ``n_per_task`` problems of every instruction task (fixed seed)."""
    return T.mixture(T.INSTRUCTION_TASKS, n_per_task, "heldout", EVAL_SEED)


def rollout(model, problems, setup: GRPOSetup, seed: int):
    """Sample a group per prompt: ``(tokens [P*G, T], target mask [P*G, T-1], rewards [P*G])``."""
    group = [p for p in problems for _ in range(setup.group)]                    # P*G, groups consecutive
    new = P.complete(model, LAYOUT, group, temperature=setup.temperature, seed=seed)  # [P*G, R]
    rewards = np.array([T.reward(p, T.completion_text(row)) for p, row in zip(group, new)], np.float32)
    tokens = np.concatenate([LAYOUT.prompts(group), new], axis=1)                 # [P*G, T]
    mask = np.zeros((len(group), LAYOUT.seq_len - 1), np.float32)
    mask[:, LAYOUT.prompt_len - 1:] = T.completion_mask(new)                      # targets = completion tokens
    return tokens, mask, rewards


def grpo(model, reference, setup: GRPOSetup, seed: int, verbose: bool = False) -> dict:
    """GRPO of ``model`` in place (module docstring, step 2). Returns ``{"records": per-iteration
    records, "trainer": the PolicyTrainer}`` (the trainer, to count its value-function parameters)."""
    from tf_impl.alignment import PolicyTrainer, group_advantages, log_prob_fn

    ref_log_probs = log_prob_fn(reference)                                       # the frozen policy, never trained
    tc = TrainConfig(lr=setup.lr, warmup_steps=setup.warmup, total_steps=setup.iterations * setup.inner_steps,
                     min_lr_ratio=1.0, weight_decay=0.0)
    trainer = PolicyTrainer(model, tc, update_bias=False)
    rng = np.random.default_rng([seed, 1])
    bar = P.Progress(setup.iterations, f"GRPO seed {seed}", verbose)
    records = []
    for it in range(setup.iterations):
        problems = T.mixture(T.INSTRUCTION_TASKS, setup.prompts // len(T.INSTRUCTION_TASKS), "train",
                             seed=int(rng.integers(2**31)))
        tokens, mask, rewards = rollout(model, problems, setup, seed=int(rng.integers(2**31)))
        advantages = group_advantages(rewards, setup.group).numpy()
        old, ref = trainer.log_probs(tokens), ref_log_probs(tokens)
        for _ in range(setup.inner_steps):
            record = trainer.grpo_step(tokens, mask, old, ref, advantages, setup.clip_eps, setup.beta)
        record.update(reward=float(rewards.mean()), accuracy=float((rewards > 0).mean()))
        records.append(record)
        bar.update(int(mask.sum()) * setup.inner_steps + tokens.size, reward=record["reward"], kl=record["kl"],
                   clip=record["clip_fraction"])
    bar.close()
    return {"records": records, "trainer": trainer}


def value_parameters(trainer) -> int:
    """Value-function parameters of a trained ``PolicyTrainer``, checked two ways from the objects:
    its own count, and every variable it updates having a canonical policy name."""
    policy = {id(s.var) for s in trainer.model.named_variables().values()}
    strays = [v.name for v in trainer.opt.params if id(v) not in policy]
    return max(trainer.value_function_parameters(), len(strays))


def grpo_experiment(setup: GRPOSetup = GRPOSetup(), checkpoint_dir: str | None = None, verbose: bool = False) -> dict:
    """SFT once, GRPO per seed, evaluate (module docstring). Checkpoints go to ``checkpoint_dir`` (a
    temporary directory when None): ``sft.safetensors`` and ``grpo-seed{s}.safetensors``, each with its config.

    Returns ``{"sft": {task: acc} of the final SFT model, "start": the same of GRPO's starting checkpoint,
    "grpo": {seed: {task: acc}}, "gain": {seed: reward gain}, "gain_mean",
    "seed_spread", "margin", "value_params": {seed: n}, "records": {seed: [...]}, "checkpoints", "wall_s"}``.
    """
    from tf_impl import Transformer

    start = time.perf_counter()
    out_dir = checkpoint_dir or tempfile.mkdtemp(prefix="grpo-")
    cfg = P.policy_config(setup.sft.dim, setup.sft.n_layers, LAYOUT.seq_len)
    model = Transformer(cfg, seed=0)
    snapshots = P.sft(model, LAYOUT, T.INSTRUCTION_TASKS, setup.sft, seed=0, verbose=verbose,
                      snapshot_steps=(setup.start_step,))
    checkpoints = {"sft": P.save_policy(model, f"{out_dir}/sft.safetensors", overwrite=True)}
    evalset = heldout(setup.eval_per_task)
    final = P.accuracy(model, LAYOUT, evalset)                                   # P5.instruction_following
    sft_state = snapshots[setup.start_step]
    model.load_state_dict(sft_state)
    checkpoints["sft-start"] = P.save_policy(model, f"{out_dir}/sft-step{setup.start_step}.safetensors",
                                             overwrite=True)
    base = P.accuracy(model, LAYOUT, evalset)                                    # GRPO's starting point
    reference = Transformer(cfg, seed=0)
    reference.load_state_dict(sft_state)                                          # the frozen SFT policy
    policy = model                                                                # one model (one XLA compile) for all seeds
    after, gains, value_params, records = {}, {}, {}, {}
    for seed in setup.seeds:
        policy.load_state_dict(sft_state)                                         # every seed starts from SFT
        run = grpo(policy, reference, setup, seed, verbose)
        value_params[seed] = value_parameters(run["trainer"])
        records[seed] = run["records"]
        after[seed] = P.accuracy(policy, LAYOUT, evalset)
        gains[seed] = after[seed]["all"] - base["all"]
        checkpoints[f"grpo-seed{seed}"] = P.save_policy(policy, f"{out_dir}/grpo-seed{seed}.safetensors",
                                                        overwrite=True)
    finals = [after[s]["all"] for s in setup.seeds]
    spread = float(max(finals) - min(finals))
    gain_mean = float(np.mean(list(gains.values())))
    return {"sft": final, "start": base, "grpo": after, "gain": gains, "gain_mean": gain_mean, "seed_spread": spread,
            "margin": gain_mean - spread, "value_params": value_params, "records": records,
            "checkpoints": checkpoints, "wall_s": time.perf_counter() - start}
