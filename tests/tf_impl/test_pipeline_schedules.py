"""Pipeline schedules as data and their simulator: validity, the published bubble formulas and memory table."""

from __future__ import annotations

import dataclasses

import pytest

from tf_impl.pipeline import schedules as S
from tf_impl.pipeline.simulate import Costs, bubble_formula, simulate

SIZES = [(2, 4), (2, 6), (4, 8), (4, 12), (6, 12), (8, 16), (8, 20), (16, 32)]


@pytest.mark.parametrize("name", ["1f1b", "dualpipe"])
@pytest.mark.parametrize("pp,n_micro", SIZES)
def test_schedules_are_valid_and_replay_without_deadlock_or_double_booking(name, pp, n_micro):
    plan = S.build(name, pp, n_micro)
    S.validate(plan)
    timeline = simulate(plan, Costs.uniform(pp, 1.0, 2.0, 1.0, comm=0.25))
    timeline.check()
    for r, spans in enumerate(timeline.spans):          # every slot of every rank ran, in the schedule's order
        assert tuple(slot for _, _, slot in spans) == plan.ranks[r]
    ends = {(op.kind, op.micro, op.stage): (start, end)
            for spans in timeline.spans for start, end, slot in spans for op in slot}
    for (kind, m, s), (start, _) in ends.items():       # dependencies respected on the clock, comm included
        if kind is S.Kind.F and s > 0:
            assert start >= ends[(S.Kind.F, m, s - 1)][1] + 0.25 - 1e-9
        if kind in (S.Kind.B, S.Kind.BW) and s < pp - 1:
            nxt = ends.get((S.Kind.B, m, s + 1)) or ends[(S.Kind.BW, m, s + 1)]
            assert start >= nxt[1] + 0.25 - 1e-9
        if kind is S.Kind.W:
            assert start >= ends[(S.Kind.B, m, s)][1] - 1e-9


def test_dualpipe_uses_both_directions_overlapped_pairs_and_split_backwards():
    plan = S.dualpipe(8, 20)
    ops = [op for r in range(8) for op in plan.ops(r)]
    assert {op.direction for op in ops} == {0, 1}
    assert sum(op.direction for op in ops if op.kind is S.Kind.F) == 10 * 8      # half the micro-batches each way
    pairs = [slot for r in range(8) for slot in plan.ranks[r] if len(slot) == 2]
    assert pairs and all(slot[0].kind is S.Kind.F and slot[1].kind is S.Kind.BW for slot in pairs)
    assert any(op.kind is S.Kind.W for op in ops) and any(op.kind is S.Kind.BW for op in ops)
    assert plan.placement[(0, 0)] == 0 and plan.placement[(0, 1)] == 7               # stage 0 at both ends


def test_validate_names_each_broken_rule():
    plan = S.one_f_one_b(2, 2)
    swapped = tuple(tuple(reversed(slots)) for slots in plan.ranks)                  # backwards before forwards
    with pytest.raises(S.ScheduleError, match="before forward"):
        S.validate(dataclasses.replace(plan, ranks=swapped))
    with pytest.raises(S.ScheduleError, match="lacks its backward"):
        S.validate(dataclasses.replace(plan, ranks=(plan.ranks[0][:-1], plan.ranks[1])))
    moved = (plan.ranks[0] + plan.ranks[1][:1], plan.ranks[1][1:])
    with pytest.raises(S.ScheduleError, match="lives on rank 1"):
        S.validate(dataclasses.replace(plan, ranks=moved))


def test_a_deadlocking_order_is_reported_not_hung():
    plan = S.one_f_one_b(2, 2)
    F, BW = S.Kind.F, S.Kind.BW
    # rank 0 holds micro-batch 1's forward behind micro-batch 0's backward; rank 1 wants micro-batch 1 first
    rank0 = ((S.Op(F, 0, 0),), (S.Op(BW, 0, 0),), (S.Op(F, 1, 0),), (S.Op(BW, 1, 0),))
    rank1 = ((S.Op(F, 1, 1),), (S.Op(BW, 1, 1),), (S.Op(F, 0, 1),), (S.Op(BW, 0, 1),))
    bad = dataclasses.replace(plan, ranks=(rank0, rank1))
    S.validate(bad)                                      # every per-rank rule holds: only the replay sees it
    with pytest.raises(S.ScheduleError, match="deadlocks"):
        simulate(bad, Costs.uniform(2, 1, 2, 1))


@pytest.mark.parametrize("args,match", [(("dualpipe", 3, 12), "even number of pipeline ranks"),
                                        (("dualpipe", 4, 6), "micro-batches >= 2\\*PP=8"),
                                        (("dualpipe", 4, 9), "even number of micro-batches"),
                                        (("zb", 4, 8), "unknown pipeline schedule"),
                                        (("1f1b", 0, 8), "at least one rank")])
def test_bad_sizes_get_an_error_naming_the_numbers(args, match):
    with pytest.raises(S.ScheduleError, match=match):
        S.build(*args)


@pytest.mark.parametrize("pp,n_micro", SIZES)
@pytest.mark.parametrize("f,b,w", [(1.0, 2.0, 1.0), (1.0, 1.0, 0.5), (2.0, 5.0, 1.0), (1.0, 3.0, 0.0)])
def test_1f1b_bubble_is_the_published_formula(pp, n_micro, f, b, w):
    timeline = simulate(S.one_f_one_b(pp, n_micro), Costs.uniform(pp, f, b, w))
    assert timeline.bubble() == pytest.approx(bubble_formula("1f1b", pp, f, b, w))
    assert max(timeline.bubbles()) == pytest.approx(timeline.bubble())             # every rank idles alike


@pytest.mark.parametrize("pp,n_micro", SIZES)
@pytest.mark.parametrize("unit,fb_share", [(1.0, 1.0), (1.0, 0.8), (0.5, 0.6), (2.0, 0.9)])
def test_dualpipe_bubble_is_the_published_formula_where_it_applies(pp, n_micro, unit, fb_share):
    """The formula holds for the zero-bubble cost model it comes from: F = B_input = W (so B = 2F), with
    F&B anywhere from max(F, B) to F + B. The worst rank's idle time is the formula."""
    f, b, w = unit, 2 * unit, unit
    fb = max(f, b) + fb_share * (f + b - max(f, b))
    timeline = simulate(S.dualpipe(pp, n_micro), Costs.uniform(pp, f, b, w, fb=fb))
    assert max(timeline.bubbles()) == pytest.approx(bubble_formula("dualpipe", pp, f, b, w, fb))


def test_the_formula_check_can_fail():
    """With other cost ratios the published DualPipe formula is only approximate (the test above must
    be able to see a difference): F > B - W leaves more bubble than the formula, F < B - W less."""
    timeline = simulate(S.dualpipe(8, 16), Costs.uniform(8, 1.0, 1.0, 0.5))
    assert max(timeline.bubbles()) > bubble_formula("dualpipe", 8, 1.0, 1.0, 0.5) + 1.0


@pytest.mark.parametrize("pp", [2, 4, 8, 16])
def test_memory_per_rank_matches_the_published_table(pp):
    """1F1B: 1x parameters, PP activations; DualPipe: 2x parameters, PP + 1 activations (worst rank)."""
    one, dual = S.one_f_one_b(pp, 2 * pp), S.dualpipe(pp, 2 * pp)
    assert max(one.param_copies(r) for r in range(pp)) == 1
    assert max(one.peak_activations(r) for r in range(pp)) == pp
    assert all(dual.param_copies(r) == 2 for r in range(pp))
    assert max(dual.peak_activations(r) for r in range(pp)) == pp + 1


def test_costs_refuse_a_weight_part_larger_than_the_backward():
    with pytest.raises(ValueError, match="w <= b"):
        Costs((1.0,), (1.0,), (2.0,))
