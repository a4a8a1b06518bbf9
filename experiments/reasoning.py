"""P5.cot_gain and P5.r1_retention: chain-of-thought traces, and distilling a reasoning teacher into a student.

The task is ``mul`` of ``experiments.tasks``: a 5-digit number times a digit from 2 to 9, whose answer
needs a chain of dependent steps (each digit's carry, one of 0-8, feeds the next). Its trace is the school
method, one digit per step from the units up, then the answer. Why this task and not ``add4`` (4-digit
addition, used before): the 2-layer student learned ``add4`` without a trace to 0.8-0.9 exact match on 2 of
3 seeds, a ceiling that hid any gain. The argument that ``mul`` cannot be done that way in one pass by two
attention layers (no single column decides a carry, unlike addition) is in ``experiments.tasks``, written
before the first run, with what the pilot then showed (it holds only in part: for some multipliers one
digit does decide the carry).

**Chain of thought** (``cot_experiment``): the same model size (``student`` width) is trained for the
same number of steps on the same problems, once on the bare answer ("direct") and once on trace +
answer ("cot"), for every seed. Held-out exact match of the final answer (greedy). The gain is
``mean_seeds(acc_cot) / mean_seeds(acc_direct) - 1``: how much the expected accuracy of a training run
improves. Per-seed gains ``acc_cot / acc_direct - 1`` are reported too (their spread, median and
minimum); a seed whose direct model solves almost nothing makes its own ratio huge, which is why the
mean of the per-seed ratios is not the headline. A direct accuracy of 0 is floored at one problem
(``1 / n_eval``), so such a gain is a lower bound.

**Distillation** (``distill_experiment``, after DeepSeek-R1's distilled models): a teacher of a larger
config (``teacher`` width and depth) is trained on gold traces; it then writes its own trace + answer
(greedy) for ``distill_prompts`` training prompts. A student of the smaller config never sees a gold
response: it is trained on the teacher's outputs, with the teacher's logits as a second target
(``tf_impl.alignment.distill_loss``, ``alpha``; alpha = 0 is pure sequence-level distillation, as R1's).
Retention is student accuracy / teacher accuracy on held-out problems, for each of ``distill_seeds``
students distilled from the one teacher (the same teacher outputs, different initialisation and batch
order); the headline is the MEDIAN over student seeds, reported with its minimum, maximum and spread
(max - min), so one lucky or unlucky student carries neither the verdict nor hides in it. A teacher at 1.0
held-out accuracy makes retention plain student accuracy; the teacher's accuracy is reported beside it.

What the proxy keeps: a reasoning task whose answer needs the intermediate steps, traces produced by
a stronger model and learned by a weaker one, exact checking, and DeepSeek-V3's own architecture for
both. What it cannot say about 671B: R1 is a 671B RL-trained model distilled into 1.5-70B dense models
on 800k curated samples across math, code and science; here both are ~10^5-10^6-parameter byte-level
models on one synthetic arithmetic task, and "reasoning capability" is one algorithm's execution.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from experiments import posttrain as P
from experiments import tasks as T

LAYOUT = T.Layout(prompt_len=8, response_len=53)   # "ddddd*d=" -> 5 x "a*d+c=rr " + ">" + answer + "."
DIRECT_LAYOUT = T.Layout(prompt_len=8, response_len=7)  # the direct arm: answer (<= 6 digits) + "."
TASK = "mul"
EVAL_SEED = 4242


@dataclass(frozen=True)
class ReasoningSetup:
    """Sizes of both experiments; the defaults are the full-tier run (benchmarks/bench_alignment.py)."""

    student: P.SFTSetup = field(default_factory=lambda: P.SFTSetup(dim=64, n_layers=2, steps=2500))
    teacher: P.SFTSetup = field(default_factory=lambda: P.SFTSetup(dim=128, n_layers=3, steps=2500,
                                                                   with_trace=True))
    seeds: tuple[int, ...] = (0, 1, 2)                 # chain of thought: direct and cot per seed
    distill_seeds: tuple[int, ...] = (0, 1, 2)         # students distilled from the one teacher
    eval_n: int = 200
    distill_prompts: int = 4096
    alpha: float = 0.5


def heldout(n: int) -> list[T.Problem]:
    """``n`` held-out ``TASK`` problems (fixed seed)."""
    return T.sample(TASK, n, "heldout", EVAL_SEED)


def _model(setup: P.SFTSetup, seed: int):
    from tf_impl import Transformer

    return Transformer(P.policy_config(setup.dim, setup.n_layers, LAYOUT.seq_len), seed=seed)


def _accuracy(model, evalset, layout: T.Layout = LAYOUT) -> float:
    return P.accuracy(model, layout, evalset)[TASK]


def seed_summary(values: dict[int, float]) -> dict[str, float]:
    """``{"median", "min", "max", "spread"}`` of per-seed values (spread = max - min).

    A NaN value (retention against a teacher that solved nothing) makes every statistic NaN, which no
    criterion passes. Raises ValueError on no values (ask for at least one seed).
    """
    v = np.asarray(list(values.values()), float)
    if v.size == 0:
        raise ValueError("no per-seed values to summarise; give at least one seed")
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "spread": float(v.max() - v.min())}


def relative_gain(acc_cot: float, acc_direct: float, n_eval: int) -> float:
    """``acc_cot / max(acc_direct, 1 / n_eval) - 1``: the relative gain, a lower bound when direct is 0."""
    return acc_cot / max(acc_direct, 1.0 / n_eval) - 1.0


def cot_experiment(setup: ReasoningSetup = ReasoningSetup(), checkpoint_dir: str | None = None,
                   verbose: bool = False) -> dict:
    """Direct vs chain-of-thought training at the student size, per seed (module docstring).

    Returns ``{"direct": {seed: acc}, "cot": {seed: acc}, "gain": {seed: relative gain}, "gain_pooled"
    (of the seed-mean accuracies), "gain_mean", "gain_std", "gain_median", "gain_min", "checkpoints", "wall_s"}``.
    The direct arm trains and answers on ``DIRECT_LAYOUT``: the same model and prompts, without the 46
    trailing padding tokens a trace-length layout would give it (causal attention: they change nothing
    the answer tokens see, only the cost).
    """
    from dataclasses import replace

    start, out_dir = time.perf_counter(), checkpoint_dir or tempfile.mkdtemp(prefix="cot-")
    evalset, acc, checkpoints = heldout(setup.eval_n), {"direct": {}, "cot": {}}, {}
    for seed in setup.seeds:
        for arm, with_trace, layout in (("direct", False, DIRECT_LAYOUT), ("cot", True, LAYOUT)):
            model = _model(setup.student, seed)
            P.sft(model, layout, (TASK,), replace(setup.student, with_trace=with_trace), seed, verbose)
            acc[arm][seed] = _accuracy(model, evalset, layout)
            checkpoints[f"{arm}-seed{seed}"] = P.save_policy(model, f"{out_dir}/{arm}-seed{seed}.safetensors",
                                                             overwrite=True)
    gains = {s: relative_gain(acc["cot"][s], acc["direct"][s], setup.eval_n) for s in setup.seeds}
    values = list(gains.values())
    pooled = relative_gain(float(np.mean(list(acc["cot"].values()))), float(np.mean(list(acc["direct"].values()))),
                           setup.eval_n)
    return {**acc, "gain": gains, "gain_pooled": pooled, "gain_mean": float(np.mean(values)),
            "gain_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "gain_median": float(np.median(values)), "gain_min": float(np.min(values)),
            "checkpoints": checkpoints, "wall_s": time.perf_counter() - start}


def teacher_outputs(teacher, problems) -> tuple[list[str], np.ndarray]:
    """The teacher's greedy responses (trace + answer, cut after END) and its logits on them [B, T, V]."""
    new = P.complete(teacher, LAYOUT, problems)
    texts = [T.completion_text(row)[:LAYOUT.response_len] for row in new]
    tokens, _ = LAYOUT.encode(problems, texts)
    logits = np.concatenate([teacher(tokens[i:i + 128]).numpy() for i in range(0, len(tokens), 128)])
    return texts, logits


def distill_experiment(setup: ReasoningSetup = ReasoningSetup(), checkpoint_dir: str | None = None,
                       verbose: bool = False) -> dict:
    """Teacher on gold traces; student on the teacher's outputs and logits; retention (module docstring).

    Returns ``{"teacher": acc, "student": {seed: acc}, "retention": {seed: ratio}, "retention_median",
    "retention_min", "retention_max", "retention_spread", "student_median", "teacher_train_acc",
    "checkpoints", "wall_s"}``.
    """
    from tf_impl.alignment import PolicyTrainer
    from harness.config import TrainConfig

    start, out_dir = time.perf_counter(), checkpoint_dir or tempfile.mkdtemp(prefix="distill-")
    evalset = heldout(setup.eval_n)
    teacher = _model(setup.teacher, 0)
    P.sft(teacher, LAYOUT, (TASK,), setup.teacher, seed=100, verbose=verbose)
    checkpoints = {"teacher": P.save_policy(teacher, f"{out_dir}/teacher.safetensors", overwrite=True)}
    teacher_acc = _accuracy(teacher, evalset)
    prompts = T.sample(TASK, setup.distill_prompts, "train", seed=101)
    texts, logits = teacher_outputs(teacher, prompts)
    tokens, mask = LAYOUT.encode(prompts, texts)
    train_acc = float(np.mean([T.check(p, t) for p, t in zip(prompts, texts)]))
    student_acc, retention = {}, {}
    for seed in setup.distill_seeds:
        st = setup.student
        student = _model(st, seed)
        trainer = PolicyTrainer(student, TrainConfig(lr=st.lr, warmup_steps=st.warmup, total_steps=st.steps))
        rng = np.random.default_rng([seed, 7])
        bar = P.Progress(st.steps, f"distill seed {seed}", verbose)
        for _ in range(st.steps):
            idx = rng.choice(len(prompts), st.batch_size, replace=False)
            record = trainer.distill_step(tokens[idx], mask[idx], logits[idx], setup.alpha)
            bar.update(int(tokens[idx].size), loss=record["loss"])
        bar.close()
        student_acc[seed] = _accuracy(student, evalset)
        retention[seed] = student_acc[seed] / teacher_acc if teacher_acc > 0 else float("nan")
        checkpoints[f"student-seed{seed}"] = P.save_policy(student, f"{out_dir}/student-seed{seed}.safetensors",
                                                           overwrite=True)
    summary = seed_summary(retention)
    return {"teacher": teacher_acc, "teacher_train_acc": train_acc, "student": student_acc, "retention": retention,
            **{f"retention_{k}": v for k, v in summary.items()},
            "student_median": float(np.median(list(student_acc.values()))),
            "checkpoints": checkpoints, "wall_s": time.perf_counter() - start}
