"""Verifiable tasks for Phase 5: seeded generators, exact checkers, disjoint splits, byte-token batches.

Every problem is a prompt, a final answer that a program checks exactly, and (for the multi-step task)
a step-by-step trace. Task families:

- ``add``: multi-digit addition, ``"473+58="`` -> ``"531"`` (operands of 1-3 digits);
- ``sort``: sort a string of digits, ``"sort 5291="`` -> ``"1259"`` (4-5 digits);
- ``rev``: the format instruction "answer in reverse", ``"rev cab="`` -> ``"bac"`` (3-5 letters);
- ``brk``: the format instruction "answer inside brackets", ``"brk cab="`` -> ``"[cab]"``;
- ``mul``: short multiplication, a ``MUL_DIGITS``-digit number times one digit from 2 to 9,
  ``"47358*8="`` -> ``"378864"``: the multi-step task of the chain-of-thought and distillation
  experiments. Its trace is the school method from the units up, one step per digit of ``a``:
  ``"8*8+0=64 "`` (digit of a, the multiplier, carry in, two-digit result whose tens digit is the
  next carry), then ``ANSWER_MARK`` and the answer (the last carry, if any, then the units digits of
  the steps, most significant first).

Why ``mul`` needs the steps (argued before any run; it replaced ``add4``, 4-digit addition with >= 2
carries, which the 64-wide 2-layer student learned without a trace to 0.8-0.9 exact match so that a
trace had little left to add). The answer is written most significant digit first, so the model's first
answer token already depends on every digit of ``a`` through the whole carry chain. In addition a carry is
0 or 1 and the carry into column k is decided by ONE column: the nearest column below k whose digit sum is
not 9 (it generates a carry or kills it). That is a single "find the nearest such position" lookup, which
one attention layer can learn, so 2 layers can add in one pass, as ``add4`` showed. In multiplication by a
digit d the carry into column k is ``floor(d * 0.a_{k-1}...a_0)``, one of 9 values that depends on ALL
lower digits at geometrically shrinking weight (1/10, 1/100, ...) with no single deciding column; each
step's carry is a non-linear function (``floor((a_k d + c_k) / 10)``) of the previous one, 5 deep for
the leading digit. Two attention layers cannot run a 5-deep chain of dependent table look-ups, so a
direct model must approximate it in one pass and be wrong near every carry boundary, while with the trace
each step is one table look-up (a_k * d + c_k) on three tokens it can copy. Five digits (rather than four)
lengthen the chain at a cost of 9 tokens; the problem space (~720k problems) is far larger than a
training run sees (2,500 steps x 32), so neither arm can memorise its way to held-out problems.

What the pilot then showed (one seed, the full 2,500 steps, after the argument above was written and not
changed since): direct 0.43, traces 0.37 held-out exact match. The argument overrated how long the chain
is that a direct model must run: for d = 2 and d = 5 the carry into a column is decided by the ONE digit
below it (``floor(2x)`` and ``floor(5x)`` depend on x's first digit only), and for the other d mostly by
the one or two digits below, so a local look-up solves many problems without the chain. Nothing was tuned
after the pilot; the full run's gain is the result, whatever it is.

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
MUL_DIGITS = 5      # mul multiplies a MUL_DIGITS-digit number by one digit
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


def mul_trace(a: int, d: int) -> str:
    """Short multiplication of ``a`` by the digit ``d``, units first: ``"8*8+0=64 5*8+6=46 ..."``.

    One step per digit of ``a``: ``digit*d+carry=rr`` with ``rr`` the two-digit result (tens digit = next carry).
    """
    if not 0 <= d <= 9:
        raise ValueError(f"mul_trace multiplies by one digit; got d={d}")
    steps, carry = [], 0
    for digit in (int(c) for c in reversed(str(a))):
        r = digit * d + carry
        steps.append(f"{digit}*{d}+{carry}={r:02d} ")
        carry = r // 10
    return "".join(steps)


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


def _mul(rng):
    a, d = int(rng.integers(10 ** (MUL_DIGITS - 1), 10**MUL_DIGITS)), int(rng.integers(2, 10))
    return Problem("mul", f"{a}*{d}", f"{a}*{d}=", str(a * d), mul_trace(a, d))


GENERATORS: dict[str, Callable[[np.random.Generator], Problem]] = {
    "add": _add, "sort": _sort, "rev": _rev, "brk": _brk, "mul": _mul}
# Each task's random stream (frozen, so adding a task never changes another's problems; 1 was add4's, now mul's).
_STREAM = {"add": 0, "mul": 1, "brk": 2, "rev": 3, "sort": 4}
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
    rng = np.random.default_rng([seed, _STREAM[task], int(want_held_out)])
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
