"""Phase 5 experiment plumbing: SFT on the tasks, seeded sampling, checkpoints that generate loads; the real
experiments at their full size are slow tests."""

import numpy as np
import pytest

from experiments import grpo as G
from experiments import posttrain as P
from experiments import reasoning as R
from experiments import tasks as T


@pytest.fixture(scope="module")
def trained():
    """A tiny policy after a few SFT steps (seconds), and the problems it is asked."""
    from tf_impl import Transformer

    model = Transformer(P.policy_config(64, 2, G.LAYOUT.seq_len), seed=0)
    P.sft(model, G.LAYOUT, T.INSTRUCTION_TASKS, P.SFTSetup(steps=30), seed=0)
    return model, T.mixture(T.INSTRUCTION_TASKS, 2, "heldout", 0)


def test_saved_policy_loads_and_generates_the_same_tokens(trained, tmp_path):
    model, problems = trained
    path = P.save_policy(model, tmp_path / "policy.safetensors")
    prompts = G.LAYOUT.prompts(problems)
    for framework in ("tf", "flax"):
        loaded = P.load_policy(path, framework)
        assert loaded.cfg == model.cfg
        np.testing.assert_array_equal(loaded.generate(prompts, 6), model.generate(prompts, 6))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        P.save_policy(model, path)
    (tmp_path / "policy.json").unlink()
    with pytest.raises(FileNotFoundError, match="save with save_policy"):
        P.load_policy(path)
    with pytest.raises(ValueError, match="must end in .safetensors"):
        P.save_policy(model, tmp_path / "policy.bin")


def test_rollouts_are_seeded_and_masked_to_each_completion(trained):
    model, problems = trained
    setup = G.GRPOSetup(group=4)
    a, b, c = (G.rollout(model, problems[:2], setup, seed=s) for s in (5, 5, 6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)                                     # same seed, same samples
    assert not np.array_equal(a[0], c[0])
    tokens, mask, rewards = a
    assert tokens.shape == (8, G.LAYOUT.seq_len) and mask.shape == (8, G.LAYOUT.seq_len - 1)
    assert mask[:, :G.LAYOUT.prompt_len - 1].sum() == 0                          # prompt targets never count
    new = tokens[:, G.LAYOUT.prompt_len:]
    np.testing.assert_array_equal(mask[:, G.LAYOUT.prompt_len - 1:], T.completion_mask(new))
    group = [p for p in problems[:2] for _ in range(4)]
    assert rewards.tolist() == [T.reward(p, T.completion_text(r)) for p, r in zip(group, new)]


def test_accuracy_scores_exact_matches_per_task(trained):
    model, problems = trained
    acc = P.accuracy(model, G.LAYOUT, problems)
    assert set(acc) == set(T.INSTRUCTION_TASKS) | {"all"} and all(0.0 <= v <= 1.0 for v in acc.values())


def test_relative_cot_gain_is_floored_at_one_problem():
    assert R.relative_gain(0.5, 0.4, 200) == pytest.approx(0.25)
    assert R.relative_gain(0.5, 0.0, 200) == pytest.approx(99.0)                 # a lower bound: direct solved none


def test_retention_summary_is_the_median_over_student_seeds_with_its_spread():
    out = R.seed_summary({0: 0.9, 1: 0.5, 2: 0.8})
    assert out == pytest.approx({"median": 0.8, "min": 0.5, "max": 0.9, "spread": 0.4})
    assert R.seed_summary({0: 0.6, 1: 0.8}) == pytest.approx({"median": 0.7, "min": 0.6, "max": 0.8, "spread": 0.2})
    assert all(np.isnan(v) for v in R.seed_summary({0: 0.9, 1: float("nan")}).values())   # teacher solved nothing
    with pytest.raises(ValueError, match="at least one seed"):
        R.seed_summary({})


@pytest.mark.slow
def test_grpo_experiment_small_end_to_end(tmp_path):
    """The whole protocol at a small size: SFT, a snapshot, GRPO on 2 seeds, zero value parameters, checkpoints."""
    setup = G.GRPOSetup(sft=P.SFTSetup(steps=60), start_step=30, iterations=3, seeds=(0, 1), eval_per_task=8)
    out = G.grpo_experiment(setup, str(tmp_path))
    assert set(out["grpo"]) == {0, 1} and out["value_params"] == {0: 0, 1: 0}
    assert out["margin"] == pytest.approx(out["gain_mean"] - out["seed_spread"])
    assert all(len(r) == 3 and np.isfinite(r[-1]["loss"]) for r in out["records"].values())
    for path in out["checkpoints"].values():
        assert P.load_policy(path).generate(G.LAYOUT.prompts(G.heldout(1)), 4).shape == (4, 4)


@pytest.mark.slow
def test_reasoning_experiments_small_end_to_end(tmp_path):
    setup = R.ReasoningSetup(student=P.SFTSetup(steps=20), teacher=P.SFTSetup(dim=128, n_layers=3, steps=20,
                                                                              with_trace=True),
                             seeds=(0, 1), distill_seeds=(0, 1), eval_n=8, distill_prompts=64)
    cot = R.cot_experiment(setup, str(tmp_path / "cot"))
    assert set(cot["direct"]) == set(cot["cot"]) == {0, 1} and len(cot["checkpoints"]) == 4
    distill = R.distill_experiment(setup, str(tmp_path / "distill"))
    assert set(distill["student"]) == set(distill["retention"]) == {0, 1} and "teacher" in distill["checkpoints"]
    assert len(distill["checkpoints"]) == 3       # the teacher and 2 students
    # 20 teacher steps may solve nothing: then every retention statistic is NaN (never a pass)
    stats = [distill[f"retention_{k}"] for k in ("min", "median", "max")]
    assert all(np.isnan(stats)) if distill["teacher"] == 0 else stats == sorted(stats)
