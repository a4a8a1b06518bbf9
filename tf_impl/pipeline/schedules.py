"""Pipeline-parallel schedules as data: 1F1B and DualPipe, per rank, slot by slot.

Framework-free on purpose: the same schedule object is executed on TF logical devices
(``tf_impl.pipeline.execute``), replayed by the timeline simulator (``tf_impl.pipeline.simulate``) and
checked by ``validate`` without building a model.

Vocabulary (the DualPipe README's, DeepSeek-V3 report §3.2.1):

* The model is cut into ``n_stages`` consecutive **stages** (index P below; stage P holds layers in
  order, stage 0 the embedding, the last stage the head and the loss).
* A **micro-batch** (index m) flows through the stages in one **direction**. 1F1B has one direction.
  DualPipe feeds half of the micro-batches from each end: direction 0 enters on rank 0, direction 1 on
  rank PP-1, so rank r holds stage r for direction 0 and stage PP-1-r for direction 1 (two copies of
  the parameters: the "2x" of the published table; the two copies' gradients are summed after the step).
* Op kinds: ``F`` forward chunk; ``BW`` full backward chunk (input and weight gradients); ``B`` the
  input-gradient half of a backward (what the previous stage waits for); ``W`` the weight-gradient half,
  which nothing downstream waits for and can be deferred to fill bubbles (the zero-bubble split).
* A **slot** is what a rank runs at once: one op, or an overlapped ``F&B`` pair (a forward chunk of one
  micro-batch with a full backward chunk of another, whose communication hides behind each other's
  compute).

DualPipe's per-rank order follows the eight phases DeepSeek describe and publish (warm-up forwards of
the rank's own direction, forwards of both directions, zero-bubble B/W/F, the steady state of
overlapped F&B pairs, then the drain with deferred weight gradients). The code here is written from
that description, not copied.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass


class ScheduleError(ValueError):
    """A schedule that cannot be built or is invalid; the message names the rule broken and the fix."""


class Kind(str, enum.Enum):
    """What an op computes (see the module docstring)."""

    F = "F"
    B = "B"
    W = "W"
    BW = "BW"


@dataclass(frozen=True)
class Op:
    """One chunk of work: ``kind`` for micro-batch ``micro`` at ``stage``, travelling in ``direction``."""

    kind: Kind
    micro: int
    stage: int
    direction: int = 0

    def __str__(self) -> str:
        return f"{self.kind.value}{self.micro}@{self.stage}" + (f"/d{self.direction}" if self.direction else "")


Slot = tuple[Op, ...]  # one op, or (F, BW): an overlapped F&B pair


@dataclass(frozen=True)
class Schedule:
    """Per rank, the slots it runs in order. ``placement[(stage, direction)]`` is the rank holding that
    stage's parameters for micro-batches of that direction."""

    name: str
    n_ranks: int
    n_stages: int
    n_micro: int
    ranks: tuple[tuple[Slot, ...], ...]
    placement: dict[tuple[int, int], int]

    def ops(self, rank: int) -> list[Op]:
        """The rank's ops in execution order (an F&B pair contributes its F, then its BW)."""
        return [op for slot in self.ranks[rank] for op in slot]

    def param_copies(self, rank: int) -> int:
        """How many stages' parameters the rank holds (1F1B: 1, DualPipe: 2)."""
        return sum(1 for r in self.placement.values() if r == rank)

    def peak_activations(self, rank: int) -> int:
        """Peak number of (micro-batch, stage) activations the rank holds at once, in op order: an F keeps
        its activations until the weight gradient is done (``BW``, or ``W`` after a split ``B``)."""
        held = peak = 0
        for op in self.ops(rank):
            held += {Kind.F: 1, Kind.B: 0, Kind.W: -1, Kind.BW: -1}[op.kind]
            peak = max(peak, held)
        return peak


def _check_counts(pp: int, n_micro: int, what: str) -> None:
    if pp < 1 or n_micro < 1:
        raise ScheduleError(f"{what} needs at least one rank and one micro-batch, got PP={pp}, micro-batches={n_micro}")


def one_f_one_b(pp: int, n_micro: int) -> Schedule:
    """The 1F1B schedule (PipeDream-flush): rank r runs min(PP-1-r, M) warm-up forwards, then alternates
    one forward with one full backward, then drains the remaining backwards. One direction, stage r on rank r.

    Args:
        pp: pipeline ranks (= stages).
        n_micro: micro-batches per step.

    Returns:
        the schedule.
    """
    _check_counts(pp, n_micro, "1F1B")
    ranks = []
    for r in range(pp):
        warm = min(pp - 1 - r, n_micro)
        slots: list[Slot] = [(Op(Kind.F, m, r),) for m in range(warm)]
        for i in range(n_micro - warm):
            slots += [(Op(Kind.F, warm + i, r),), (Op(Kind.BW, i, r),)]
        slots += [(Op(Kind.BW, m, r),) for m in range(n_micro - warm, n_micro)]
        ranks.append(tuple(slots))
    return Schedule("1f1b", pp, pp, n_micro, tuple(ranks), {(s, 0): s for s in range(pp)})


class _DualPipeRank:
    """Builds one rank's DualPipe slots. Local phase 0 is the direction entering at this rank's own end of
    the pipeline (direction 0 on the first half of the ranks, direction 1 on the second half)."""

    def __init__(self, rank: int, pp: int, n_micro: int):
        self.rank, self.pp, self.half = rank, pp, n_micro // 2
        self.second_half = rank >= pp // 2
        self.next_f = [0, 0]
        self.next_b = [0, 0]
        self.deferred: collections.deque[Op] = collections.deque()  # split B's whose W is still to run
        self.slots: list[Slot] = []

    def _where(self, phase: int) -> tuple[int, int]:
        direction = phase ^ self.second_half
        stage = self.rank if direction == 0 else self.pp - 1 - self.rank
        return direction, stage

    def _forward(self, phase: int) -> Op:
        direction, stage = self._where(phase)
        op = Op(Kind.F, self.next_f[phase] + direction * self.half, stage, direction)
        self.next_f[phase] += 1
        return op

    def _backward(self, phase: int, split: bool) -> Op:
        direction, stage = self._where(phase)
        op = Op(Kind.B if split else Kind.BW, self.next_b[phase] + direction * self.half, stage, direction)
        self.next_b[phase] += 1
        if split:
            self.deferred.append(op)
        return op

    def f(self, phase: int) -> None:
        self.slots.append((self._forward(phase),))

    def b(self, phase: int, split: bool = False) -> None:
        self.slots.append((self._backward(phase, split),))

    def w(self) -> None:
        done = self.deferred.popleft()
        self.slots.append((Op(Kind.W, done.micro, done.stage, done.direction),))

    def fb(self, f_phase: int, b_phase: int) -> None:
        self.slots.append((self._forward(f_phase), self._backward(b_phase, split=False)))


def dualpipe(pp: int, n_micro: int) -> Schedule:
    """DualPipe's bidirectional schedule for ``pp`` ranks (even) and ``n_micro`` micro-batches (even,
    >= 2*PP), half of them per direction.

    Per rank r, with h = min(r, PP-1-r) its distance from the nearer end, H = PP/2 and n = M/2 micro-batches
    per direction, the phases are: 2(H-h-1) forwards of its own direction; h+1 pairs of forwards of both
    directions; H-h-1 rounds of split-backward / weight / forward of the other direction; n-PP+h+1 rounds of
    two overlapped F&B pairs (the steady state; the two middle ranks run their first round unoverlapped);
    H-h-1 rounds of backward + F&B pair; h+1 pairs of backwards of both directions (the later half split, their
    weight gradients deferred); H-h-1 rounds of weight + split backward; h+1 weight gradients to finish.

    Args:
        pp: pipeline ranks (= stages), even.
        n_micro: micro-batches per step, even and >= 2 * pp; micro-batches n_micro/2.. travel the other way.

    Returns:
        the schedule, with ``placement`` holding both copies of every stage.
    """
    if pp < 2 or pp % 2:
        raise ScheduleError(f"DualPipe needs an even number of pipeline ranks >= 2, got PP={pp}; use PP=2, 4, 8, ...")
    if n_micro % 2 or n_micro < 2 * pp:
        raise ScheduleError(f"DualPipe needs an even number of micro-batches >= 2*PP={2 * pp}, got {n_micro}; "
                            f"raise the micro-batch count (half of them enter from each end)")
    big_h, n = pp // 2, n_micro // 2
    ranks = []
    for r in range(pp):
        h = min(r, pp - 1 - r)
        middle = h == big_h - 1
        k = _DualPipeRank(r, pp, n_micro)
        for _ in range(2 * (big_h - h - 1)):          # 1: own-direction warm-up
            k.f(0)
        for _ in range(h + 1):                         # 2: forwards of both directions
            k.f(0)
            k.f(1)
        for _ in range(big_h - h - 1):                 # 3: zero-bubble B, W, F of the other direction
            k.b(1, split=True)
            k.w()
            k.f(1)
        for i in range(n - pp + h + 1):                # 4: steady state, two F&B pairs per round
            if i == 0 and middle:                      #    the middle ranks' first round is not overlapped
                k.f(0)
                k.b(1)
            else:
                k.fb(0, 1)
            k.fb(1, 0)
        for _ in range(big_h - h - 1):                 # 5: backward + F&B pair
            k.b(1)
            k.fb(1, 0)
        split = False
        for i in range(h + 1):                         # 6: backwards of both directions, later half split
            if i == (h + 1) // 2 and h % 2 == 1:
                split = True
            k.b(1, split)
            if i == (h + 1) // 2 and h % 2 == 0:
                split = True
            k.b(0, split)
        for _ in range(big_h - h - 1):                 # 7: deferred weight + split backward
            k.w()
            k.b(0, split=True)
        while k.deferred:                              # 8: the remaining weight gradients (h+1 of them)
            k.w()
        ranks.append(tuple(k.slots))
    placement = {(s, 0): s for s in range(pp)} | {(s, 1): pp - 1 - s for s in range(pp)}
    return Schedule("dualpipe", pp, pp, n_micro, tuple(ranks), placement)


SCHEDULES = {"1f1b": one_f_one_b, "dualpipe": dualpipe}


def build(name: str, pp: int, n_micro: int) -> Schedule:
    """The schedule called ``name`` for ``pp`` ranks and ``n_micro`` micro-batches.

    Args:
        name: ``1f1b`` or ``dualpipe``.
        pp: pipeline ranks.
        n_micro: micro-batches per step.

    Returns:
        the schedule; unknown names and impossible sizes raise ``ScheduleError``.
    """
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown pipeline schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](pp, n_micro)


def validate(schedule: Schedule) -> None:
    """Raise ``ScheduleError`` listing every broken rule (an empty list means the schedule is sound):

    * every (micro-batch, stage) runs exactly one F and either one BW or one B and one W, on the rank that
      ``placement`` gives for its direction;
    * on that rank, its F comes before its B/BW, and its W after its B;
    * a slot holds one op, or an F with a BW (an F&B pair).

    Cross-rank dependencies (F after the previous stage's F, B after the next stage's B) and that no rank
    runs two slots at once are checked by replaying the schedule (``simulate.simulate`` raises on a deadlock;
    ``simulate.Timeline.check`` on overlapping slots).

    Args:
        schedule: the schedule to check.
    """
    problems: list[str] = []
    seen: dict[tuple[Kind, int, int], tuple[int, int]] = {}
    for r, slots in enumerate(schedule.ranks):
        for i, slot in enumerate(slots):
            kinds = tuple(op.kind for op in slot)
            if kinds not in ((Kind.F,), (Kind.B,), (Kind.W,), (Kind.BW,), (Kind.F, Kind.BW)):
                problems.append(f"rank {r} slot {i} holds {[str(o) for o in slot]}: a slot is one op or an F&B pair")
            for op in slot:
                want = schedule.placement.get((op.stage, op.direction))
                if want != r:
                    problems.append(f"{op} runs on rank {r} but stage {op.stage} direction {op.direction} lives on rank {want}")
                key = (op.kind, op.micro, op.stage)
                if key in seen:
                    problems.append(f"{op} runs twice (rank {seen[key][0]} slot {seen[key][1]} and rank {r} slot {i})")
                seen[key] = (r, i)
    for m in range(schedule.n_micro):
        for s in range(schedule.n_stages):
            f, b, w, bw = (seen.get((k, m, s)) for k in (Kind.F, Kind.B, Kind.W, Kind.BW))
            if f is None:
                problems.append(f"micro-batch {m} never runs forward at stage {s}")
                continue
            if bw is None and (b is None or w is None):
                problems.append(f"micro-batch {m} at stage {s} lacks its backward (BW, or both B and W)")
                continue
            if bw is not None and (b is not None or w is not None):
                problems.append(f"micro-batch {m} at stage {s} runs both a full backward and a split one")
            back = bw or b
            if back <= f:
                problems.append(f"micro-batch {m} at stage {s}: backward (slot {back[1]}) before forward (slot {f[1]})")
            if w is not None and w <= b:
                problems.append(f"micro-batch {m} at stage {s}: weight gradient (slot {w[1]}) before B (slot {b[1]})")
    if problems:
        raise ScheduleError(f"schedule {schedule.name} (PP={schedule.n_ranks}, {schedule.n_micro} micro-batches) is "
                            f"invalid:\n  " + "\n  ".join(problems))
