"""The verifiable tasks of Phase 5: exact checkers, traces, disjoint splits, token layout."""

import numpy as np
import pytest

from experiments import tasks as T

SORT_SEED0, ADD_SEED0 = ["sort 8428=", "sort 6407="], ["67+34=", "0+0="]   # drawn with the streams before mul


@pytest.mark.parametrize("task", sorted(T.GENERATORS))
def test_every_generated_answer_is_right_by_an_independent_computation(task):
    for p in T.sample(task, 50, "train", seed=3):
        if task == "add":
            a, b = (int(x) for x in p.payload.split("+"))
            assert p.answer == str(a + b) and p.prompt == f"{a}+{b}="
        elif task == "mul":
            a, d = (int(x) for x in p.payload.split("*"))
            assert p.answer == str(a * d) and p.prompt == f"{a}*{d}="
            assert len(str(a)) == T.MUL_DIGITS and 2 <= d <= 9
        elif task == "sort":
            assert p.answer == "".join(sorted(p.payload)) and p.prompt == f"sort {p.payload}="
        elif task == "rev":
            assert p.answer == p.payload[::-1]
        else:
            assert p.answer == "[" + p.payload + "]"
        assert T.check(p, p.response()) and T.reward(p, p.response()) == 1.0


def test_checker_is_exact():
    p = T.Problem("add", "47+5", "47+5=", "52")
    assert T.check(p, "52.") and T.check(p, "52.garbage after the end")
    for wrong in ("52", "53.", "052.", " 52.", "52 .", ""):     # no END, wrong digit, extra characters
        assert not T.check(p, wrong), wrong
        assert T.reward(p, wrong) == 0.0
    assert T.final_answer("52") is None


def test_mul_trace_is_the_school_method():
    assert T.mul_trace(47358, 8) == "8*8+0=64 5*8+6=46 3*8+4=28 7*8+2=58 4*8+5=37 "   # 47358 * 8 = 378864
    assert T.mul_trace(10000, 2) == "0*2+0=00 0*2+0=00 0*2+0=00 0*2+0=00 1*2+0=02 "
    with pytest.raises(ValueError, match="one digit; got d=12"):
        T.mul_trace(123, 12)


def test_mul_traces_agree_with_python_arithmetic_step_by_step():
    problems = T.sample("mul", 300, "heldout", seed=0) + T.sample("mul", 300, "train", seed=1)
    assert {int(p.payload.split("*")[1]) for p in problems} == set(range(2, 10))     # every multiplier occurs
    for p in problems:
        a, d = (int(x) for x in p.payload.split("*"))
        steps = p.trace.split()
        assert len(steps) == T.MUL_DIGITS
        carry = 0
        for k, step in enumerate(steps):                        # step k: digit k of a (units first)
            digit = a // 10**k % 10
            assert step == f"{digit}*{d}+{carry}={digit * d + carry:02d}"
            carry = (digit * d + carry) // 10
        # the trace determines the answer: the last carry (if any), then the steps' units digits, most significant first
        from_trace = (str(carry) if carry else "") + "".join(s[-1] for s in reversed(steps))
        assert from_trace == p.answer == str(a * d)
        response = p.response(with_trace=True)
        assert response == f"{p.trace}{T.ANSWER_MARK}{p.answer}{T.END}" and T.check(p, response)
        assert not T.check(p, f"{p.trace}{T.ANSWER_MARK}{a * d + 1}{T.END}")
        assert not T.check(p, f"{p.trace}{T.ANSWER_MARK}0{p.answer}{T.END}")   # a leading zero is wrong


def test_streams_of_the_instruction_tasks_are_unchanged_by_the_task_set():
    # frozen per-task streams: these problems were drawn before mul replaced add4 (sorted-name streams then)
    assert [p.prompt for p in T.sample("sort", 2, "train", seed=0)] == SORT_SEED0
    assert [p.prompt for p in T.sample("add", 2, "train", seed=0)] == ADD_SEED0


@pytest.mark.parametrize("task", sorted(T.GENERATORS))
def test_train_and_heldout_share_no_prompt_nor_payload(task):
    train = T.sample(task, 300, "train", seed=0) + T.sample(task, 300, "train", seed=1)
    held = T.sample(task, 60, "heldout", seed=0) + T.sample(task, 60, "heldout", seed=5)
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert all(T.held_out(p.payload, task) for p in held) and not any(T.held_out(p.payload, task) for p in train)
    # the two format instructions share one payload space: a held-out word is held out of both
    if task in ("rev", "brk"):
        other = "brk" if task == "rev" else "rev"
        assert all(T.held_out(p.payload, other) for p in held)


def test_sampling_is_seeded_and_distinct():
    a, b = T.sample("sort", 40, "train", seed=7), T.sample("sort", 40, "train", seed=7)
    assert a == b and len({p.prompt for p in a}) == 40
    assert T.sample("sort", 40, "train", seed=8) != a
    mix = T.mixture(T.INSTRUCTION_TASKS, 3, "heldout", seed=0)
    assert [p.task for p in mix[:4]] == list(T.INSTRUCTION_TASKS) and len(mix) == 12


def test_bad_task_split_or_size_is_named():
    with pytest.raises(ValueError, match="unknown task 'div'"):
        T.sample("div", 1, "train", 0)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        T.sample("add", 1, "test", 0)
    with pytest.raises(ValueError, match="fewer than"):
        T.sample("add", 10**5, "heldout", 0)  # 1-2-digit operands: < 10^4 problems


def test_layout_left_pads_prompts_and_masks_only_the_response():
    layout = T.Layout(prompt_len=8, response_len=6)
    p = T.Problem("rev", "abc", "rev abc=", "cba")
    tokens, mask = layout.sft_batch([p, T.Problem("add", "1+2", "1+2=", "3")])
    assert tokens.shape == mask.shape == (2, 14) and tokens.dtype == np.int32
    assert bytes(tokens[0, :8].tolist()) == b"rev abc=" and bytes(tokens[0, 8:12].tolist()) == b"cba."
    assert list(tokens[1, :4]) == [T.PAD] * 4 and bytes(tokens[1, 4:8].tolist()) == b"1+2="
    assert mask[0].tolist() == [0] * 8 + [1] * 4 + [0] * 2
    assert mask[1].tolist() == [0] * 8 + [1] * 2 + [0] * 4
    with pytest.raises(ValueError, match="more than response_len=6"):
        layout.encode([p], ["x" * 7])
    with pytest.raises(ValueError, match="more than prompt_len=8"):
        layout.prompts([T.Problem("rev", "abcdef", "rev abcdef=", "fedcba")])


def test_completion_text_and_mask_stop_at_the_first_end():
    new = np.array([[ord("5"), ord("2"), ord("."), ord("9"), ord(".")],
                    [ord("1"), ord("2"), ord("3"), ord("4"), ord("5")]], np.int32)
    assert T.completion_text(new[0]) == "52." and T.completion_text(new[1]) == "12345"
    assert T.completion_mask(new).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
