"""Verifiable tasks for Phase 5: seeded generators, exact checkers, disjoint splits, byte-token batches.

Every problem is a prompt, a final answer that a program checks exactly, and (for the multi-step task)
a step-by-step trace. Task families:

- ``add``: multi-digit addition, ``"473+58="`` -> ``"531"`` (operands of 1-3 digits);
- ``sort``: sort a string of digits, ``"sort 5291="`` -> ``"1259"`` (4-5 digits);
- ``rev``: the format instruction "answer in reverse", ``"rev cab="`` -> ``"bac"`` (3-5 letters);
- ``brk``: the format instruction "answer inside brackets", ``"brk cab="`` -> ``"[cab]"``;
- ``add4``: 4-digit + 4-digit addition with at least ``MIN_CARRIES`` carries, the multi-step task of the
  chain-of-thought and distillation experiments. Its trace is the column-by-column school method from
  the units up, one step per column: ``"7+4+0=11 "`` (digit of a, digit of b, carry in, two-digit sum
  whose tens digit is the carry out), then ``ANSWER_MARK`` and the answer.

A completion is the response text up to and including ``END``; ``final_answer`` takes what follows the
last ``ANSWER_MARK`` (or the whole response when there is none), and ``check`` compares it exactly with
the answer. A completion without ``END`` within the generated tokens is wrong.

Splits: a problem's *payload* (its operands, digits or word) is hashed (SHA-256, independent of the
seed); payloads whose hash falls in the held-out bucket are held out, all others are for training. So
train and held-out never share a prompt, nor even a payload under another instruction, whatever the
seeds, and the splits are the same on every machine.

Token layout (the project's byte tokenizer, ``tf_impl.data.ByteTokenizer``): every prompt is left-padded
with ``PAD`` (byte 0) to ``prompt_len`` tokens, so all prompts of a batch end at the same position and
``generate`` can continue them together; the response follows and is right-padded with ``PAD`` to
``response_len``. ``response_mask`` marks the response tokens (``END`` included) that the SFT loss counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tf_impl.data import ByteTokenizer

END = "."           # closes every response
ANSWER_MARK = ">"   # separates a trace from the final answer
PAD = 0             # padding byte (never produced by a task)
HELD_OUT_BUCKETS = 5  # 1 in 5 payloads is held out
MIN_CARRIES = 2     # add4 problems have at least this many column carries
ADD_DIGITS = 2      # add operands have 1 to ADD_DIGITS digits
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
TOKENIZER = ByteTokenizer()


@dataclass(frozen=True)
class Problem:
    """One verifiable problem: ``prompt`` -> ``answer`` (exact), with an optional step-by-step ``trace``."""

    task: str
    payload: str
    prompt: str
    answer: str
    trace: str = ""

    def response(self, with_trace: bool = False) -> str:
        """The target response: ``[trace ANSWER_MARK] answer END``."""
        if with_trace and self.trace:
            return f"{self.trace}{ANSWER_MARK}{self.answer}{END}"
        return f"{self.answer}{END}"


# ---------------------------------------------------------------------------------------- generators
def _digits(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A number with between ``lo`` and ``hi`` digits (uniform number of digits, then uniform value)."""
    n = int(rng.integers(lo, hi + 1))
    return int(rng.integers(10 ** (n - 1) if n > 1 else 0, 10**n))


def _word(rng: np.random.Generator, lo: int, hi: int) -> str:
    return "".join(rng.choice(list(_LETTERS), int(rng.integers(lo, hi + 1))))


def carry_trace(a: int, b: int, width: int) -> tuple[str, int]:
    """The column method on ``width``-digit operands, units first: ``("7+4+0=11 6+9+1=16 ...", carries)``."""
    steps, carry, carries = [], 0, 0
    for i in range(width):
        da, db = a // 10**i % 10, b // 10**i % 10
        s = da + db + carry
        steps.append(f"{da}+{db}+{carry}={s:02d} ")
        carry = s // 10
        carries += carry
    return "".join(steps), carries


def _add(rng):
    a, b = _digits(rng, 1, ADD_DIGITS), _digits(rng, 1, ADD_DIGITS)
    return Problem("add", f"{a}+{b}", f"{a}+{b}=", str(a + b))


def _sort(rng):
    digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(4, 6))))
    return Problem("sort", digits, f"sort {digits}=", "".join(sorted(digits)))


def _rev(rng):
    word = _word(rng, 3, 5)
    return Problem("rev", word, f"rev {word}=", word[::-1])


def _brk(rng):
    word = _word(rng, 3, 5)
    return Problem("brk", word, f"brk {word}=", f"[{word}]")


def _add4(rng):
    while True:
        a, b = int(rng.integers(1000, 10000)), int(rng.integers(1000, 10000))
        trace, carries = carry_trace(a, b, 4)
        if carries >= MIN_CARRIES:
            return Problem("add4", f"{a}+{b}", f"{a}+{b}=", str(a + b), trace)


GENERATORS: dict[str, Callable[[np.random.Generator], Problem]] = {
    "add": _add, "sort": _sort, "rev": _rev, "brk": _brk, "add4": _add4}
INSTRUCTION_TASKS = ("add", "sort", "rev", "brk")  # the instruction-following mix (SFT, GRPO)


def held_out(payload: str, task: str) -> bool:
    """True when ``payload`` belongs to the held-out split (a seed-free SHA-256 bucket).

    The format instructions ``rev`` and ``brk`` share one payload space (words), so a word held out of
    one is held out of the other too.
    """
    space = "word" if task in ("rev", "brk") else task
    digest = hashlib.sha256(f"{space}:{payload}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELD_OUT_BUCKETS == 0


def sample(task: str, n: int, split: str, seed: int) -> list[Problem]:
    """``n`` distinct problems of ``task`` from ``split`` (``"train"`` or ``"heldout"``), seeded.

    Raises ValueError naming the valid choices for an unknown task or split.
    """
    if task not in GENERATORS:
        raise ValueError(f"unknown task {task!r}; use one of {sorted(GENERATORS)}")
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'heldout'")
    want_held_out = split == "heldout"
    rng = np.random.default_rng([seed, sorted(GENERATORS).index(task), int(want_held_out)])
    out, seen, misses = [], set(), 0
    while len(out) < n:
        # 20,000 draws in a row without a new problem: the split has (practically) run out, so say so rather
        # than loop; a fixed budget proportional to n would spin for minutes on an impossible request.
        if misses > 20_000:
            raise ValueError(f"task {task!r} has fewer than {n} distinct {split} problems; ask for fewer")
        p = GENERATORS[task](rng)
        if held_out(p.payload, task) == want_held_out and p.prompt not in seen:
            seen.add(p.prompt)
            out.append(p)
            misses = 0
        else:
            misses += 1
    return out


def mixture(tasks: Sequence[str], n_per_task: int, split: str, seed: int) -> list[Problem]:
    """``n_per_task`` problems of every task in ``tasks``, interleaved (task 0, 1, ..., 0, 1, ...)."""
    per = [sample(t, n_per_task, split, seed) for t in tasks]
    return [p for group in zip(*per) for p in group]


# ---------------------------------------------------------------------------------------- checking
def final_answer(completion: str) -> str | None:
    """The answer a completion gives: the text before the first END, after the last ANSWER_MARK; None without END."""
    if END not in completion:
        return None
    body = completion.split(END, 1)[0]
    return body.rsplit(ANSWER_MARK, 1)[-1]


def check(problem: Problem, completion: str) -> bool:
    """Exact check: the completion's final answer equals the problem's answer, character for character."""
    return final_answer(completion) == problem.answer


def reward(problem: Problem, completion: str) -> float:
    """The rule-based reward of GRPO: 1.0 for an exactly correct final answer, else 0.0."""
    return 1.0 if check(problem, completion) else 0.0


# ---------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Layout:
    """Token positions: prompts left-padded to ``prompt_len``, responses right-padded to ``response_len``."""

    prompt_len: int
    response_len: int

    @property
    def seq_len(self) -> int:
        """T = prompt_len + response_len."""
        return self.prompt_len + self.response_len

    def prompts(self, problems: Sequence[Problem]) -> np.ndarray:
        """Prompt tokens int32 [B, prompt_len], left-padded with PAD."""
        out = np.full((len(problems), self.prompt_len), PAD, np.int32)
        for i, p in enumerate(problems):
            ids = TOKENIZER.encode(p.prompt)
            if len(ids) > self.prompt_len:
                raise ValueError(f"prompt {p.prompt!r} has {len(ids)} tokens, more than prompt_len={self.prompt_len}")
            out[i, self.prompt_len - len(ids):] = ids
        return out

    def encode(self, problems: Sequence[Problem], responses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens int32 [B, T], response_mask float32 [B, T])`` for prompts followed by ``responses``.

        ``response_mask`` is 1 on the response's tokens (END included) and 0 on the prompt and padding.
        A response longer than ``response_len`` is an error naming it.
        """
        tokens = np.full((len(problems), self.seq_len), PAD, np.int32)
        mask = np.zeros((len(problems), self.seq_len), np.float32)
        tokens[:, :self.prompt_len] = self.prompts(problems)
        for i, r in enumerate(responses):
            ids = TOKENIZER.encode(r)
            if len(ids) > self.response_len:
                raise ValueError(f"response {r!r} has {len(ids)} tokens, more than response_len={self.response_len}")
            tokens[i, self.prompt_len:self.prompt_len + len(ids)] = ids
            mask[i, self.prompt_len:self.prompt_len + len(ids)] = 1.0
        return tokens, mask

    def sft_batch(self, problems: Sequence[Problem], with_trace: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and response mask for supervised fine-tuning on the problems' gold responses."""
        return self.encode(problems, [p.response(with_trace) for p in problems])


def completion_text(new_tokens) -> str:
    """Decode generated tokens (one row), cutting after the first END (the rest is never read)."""
    text = TOKENIZER.decode(np.asarray(new_tokens).reshape(-1))
    return text.split(END, 1)[0] + END if END in text else text


def completion_mask(new_tokens: np.ndarray) -> np.ndarray:
    """float32 [B, R]: 1 on each generated completion up to and including its first END, 0 after it."""
    is_end = np.asarray(new_tokens) == ord(END)
    after_end = np.cumsum(is_end, axis=1) - is_end  # ENDs strictly before this position
    return (after_end == 0).astype(np.float32)
