"""Issue 10 item 11: a divergence after a too-high learning rate is diagnosed as such, with the fix.

Before the fix, the Trainer's own message said "no known loss pathology matched" for lr=1e4 and
lr=1e38, and ``harness diagnose`` matched nothing on either captured log.
"""

import math
import os

import pytest

from harness.qa import diagnosis, signals
from harness.qa.knowledge import get_issue

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def read(name):
    with open(os.path.join(FIXTURES, f"{name}.log")) as f:
        return f.read()


@pytest.mark.parametrize("name, lr", [("trainer_lr_1e4", "2e+03"), ("trainer_lr_1e38", "1e+37")])
def test_captured_lr_divergence_ranks_first_with_the_lr_fix(name, lr):
    text = read(name)
    assert "TrainingDiverged" in text and "grad_norm=nan" in text  # the real failure, as captured
    ranked = diagnosis.diagnose_text(text)
    assert ranked[0].issue.id == "lr_divergence" and ranked[0].confidence >= 0.9
    assert any(f"lr up to {lr}" in e.excerpt for e in ranked[0].evidence)  # the lr read from the progress bar
    report = diagnosis.format_diagnosis(text, ranked)
    assert "1. Lower the learning rate" in report


def test_lr_divergence_refines_nan_loss_and_outranks_it():
    issue = get_issue("lr_divergence")
    assert issue.refines == "nan_inf_loss"
    # A log with a NaN loss (nan_inf_loss evidence, 0.97) and a NaN gradient norm after lr=5 (0.98).
    log = "step 0 loss=2.1 grad_norm=1.5 lr=5\nstep 1 loss=3e9 grad_norm=4e12 lr=5\nstep 2 loss=nan grad_norm=nan\n"
    ranked = [d.issue.id for d in diagnosis.diagnose_text(log)]
    assert ranked[:2] == ["lr_divergence", "nan_inf_loss"]
    # The same NaN loss without any gradient-norm evidence stays a plain NaN loss.
    assert diagnosis.diagnose_text("step 0 loss=2.1\nstep 1 loss=2.0\nstep 2 loss=nan\n")[0].issue.id == "nan_inf_loss"


def _records(norms, lrs, losses=None):
    losses = losses or [2.0] * len(norms)
    return [{"loss": l, "grad_norm": g, "lr": r} for l, g, r in zip(losses, norms, lrs)]


def test_nan_gradient_norm_after_a_huge_update_is_an_lr_divergence():
    # The lr=1e38 run: step 0 applied with lr 1e37, step 1 has a finite loss and a NaN norm (lr 0: not applied).
    findings = signals.diagnose_training_records(_records([3.85, math.nan], [1e37, 0.0], [8.02, 7.21]))
    assert [f.issue_id for f in findings] == ["lr_divergence"]
    assert findings[0].weight == 0.9 and "lr up to 1e+37" in findings[0].message
    # Same norms after a sane lr: still a divergence, but weaker evidence for the lr as cause.
    (weak,) = signals.diagnose_training_records(_records([3.85, math.inf], [1e-4, 0.0]))
    assert weak.issue_id == "lr_divergence" and weak.weight == 0.6


def test_nan_gradient_before_any_update_is_not_blamed_on_the_lr():
    (finding,) = signals.diagnose_training_records(_records([math.nan], [0.0]))
    assert finding.issue_id == "nan_inf_loss" and "not the learning rate" in finding.message


def test_gradient_norm_collapse_and_explosion():
    # The lr=1e4 run's second step: a huge update saturates every unit, the norm is exactly 0.
    (dead,) = signals.diagnose_training_records(_records([3.8, 0.0, 0.0], [1e3, 2e3, 3e3]))
    assert dead.issue_id == "lr_divergence" and "collapsed to 0 at step 1" in dead.message
    assert signals.diagnose_training_records(_records([3.8, 0.0], [1e-4, 1e-4])) == []  # no high lr: no claim
    (boom,) = signals.diagnose_training_records(_records([1.0, 1.2, 0.9, 5e3], [0.05] * 4))
    assert "exploded" in boom.message and boom.metrics["step"] == 3
    assert signals.diagnose_training_records(_records([1.0, 1.2, 0.9, 5.0], [1e-3] * 4)) == []


def test_records_without_gradient_norms_fall_back_to_the_loss_checks():
    assert signals.diagnose_training_records([{"loss": 2.0}, {"loss": 1.9}]) == []
    (finding,) = signals.diagnose_training_records([{"loss": 2.0}, {"loss": math.nan}])
    assert finding.issue_id == "nan_inf_loss"


def test_trainer_error_message_names_the_lr_divergence():
    """The real Trainer on tiny at lr=1e38 stops with a TrainingDiverged whose records the harness diagnoses
    as a learning-rate divergence (``signals.explain_divergence``: the model package only carries the records)."""
    from harness.config import ModelConfig, TrainConfig
    from tf_impl import Transformer
    from tf_impl.data import DataConfig
    from tf_impl.train import Trainer, TrainingDiverged

    cfg = ModelConfig.tiny()
    trainer = Trainer(Transformer(cfg, seed=0), cfg, TrainConfig(lr=1e38, warmup_steps=1, total_steps=4),
                      DataConfig(batch_size=2, seq_len=16, seed=0), progress=False)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(4)
    message = signals.explain_divergence(info.value)
    assert "gradient norm diverged" in message and "too high for AdamW" in message
    assert diagnosis.diagnose_text(message)[0].issue.id == "lr_divergence"
