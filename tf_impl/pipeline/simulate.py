"""Replay a pipeline schedule on a clock: when each slot starts and ends, and the bubbles it leaves.

Framework-free. A rank runs its slots in the schedule's order; a slot starts when the rank is free and
every op in it has its inputs: an F needs the previous stage's F of the same micro-batch, a B or BW the
next stage's B/BW (the last stage's needs its own F: the loss), a W its own B. Inputs from another rank
arrive ``comm`` seconds after they are produced (point-to-point send of an activation or its gradient).

Costs are per stage (they differ: stage 0 holds the embedding, the last stage the head and the loss):
``f`` a forward chunk, ``b`` a full backward chunk, ``w`` its weight-gradient part (so the split input-
gradient B costs ``b - w``). An overlapped F&B pair costs ``f + b - fb_saving``: the time the pair's
overlap saves (on a GPU, the all-to-all and send/recv of one chunk hidden behind the other's compute).

A rank's idle time is the makespan less its busy time (``bubbles()``); the pipeline bubble (``bubble()``)
is the makespan less the busiest rank's compute, the time the schedule adds to the bottleneck rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from tf_impl.pipeline.schedules import Kind, Op, Schedule, ScheduleError


@dataclass(frozen=True)
class Costs:
    """Seconds per chunk, per stage: ``f[P]``, ``b[P]`` (full backward), ``w[P]`` (its weight part)."""

    f: tuple[float, ...]
    b: tuple[float, ...]
    w: tuple[float, ...]
    fb_saving: float = 0.0
    comm: float = 0.0

    @classmethod
    def uniform(cls, n_stages: int, f: float, b: float, w: float, fb: float | None = None,
                comm: float = 0.0) -> "Costs":
        """Every stage alike.

        Args:
            n_stages: pipeline stages.
            f: forward chunk seconds.
            b: full backward chunk seconds.
            w: its weight-gradient part (0 <= w <= b).
            fb: seconds of an overlapped F&B pair (default ``f + b``: no overlap).
            comm: seconds for an activation or gradient to reach another rank.

        Returns:
            the costs.
        """
        return cls((f,) * n_stages, (b,) * n_stages, (w,) * n_stages, 0.0 if fb is None else f + b - fb, comm)

    def __post_init__(self):
        n = len(self.f)
        if not (len(self.b) == len(self.w) == n):
            raise ValueError(f"costs need one f, b and w per stage, got {len(self.f)}, {len(self.b)}, {len(self.w)}")
        bad = [s for s in range(n) if not (0 <= self.w[s] <= self.b[s]) or self.f[s] < 0]
        if bad:
            raise ValueError(f"stage(s) {bad}: need f >= 0 and 0 <= w <= b (w is part of the full backward b)")

    def op(self, op: Op) -> float:
        """Seconds one op takes on its own."""
        s = op.stage
        return {Kind.F: self.f[s], Kind.B: self.b[s] - self.w[s], Kind.W: self.w[s], Kind.BW: self.b[s]}[op.kind]

    def slot(self, slot: tuple[Op, ...]) -> float:
        """Seconds a slot takes: one op, or an F&B pair less the overlap's saving."""
        total = sum(self.op(op) for op in slot)
        return total - self.fb_saving if len(slot) == 2 else total


@dataclass(frozen=True)
class Timeline:
    """``spans[r]``: (start, end, slot) per slot of rank r, in execution order."""

    schedule: Schedule
    spans: tuple[tuple[tuple[float, float, tuple[Op, ...]], ...], ...]

    @property
    def makespan(self) -> float:
        """Seconds from the first slot's start to the last slot's end over all ranks."""
        return max(end for spans in self.spans for _, end, _ in spans)

    def busy(self, rank: int) -> float:
        """Seconds the rank computes."""
        return sum(end - start for start, end, _ in self.spans[rank])

    def bubbles(self) -> list[float]:
        """Idle seconds per rank within the makespan."""
        return [self.makespan - self.busy(r) for r in range(self.schedule.n_ranks)]

    def bubble(self) -> float:
        """The step time beyond the busiest rank's own compute: what the pipeline adds to the bottleneck.

        With uniform stages and no F&B saving every rank is equally busy, so this is every rank's idle
        time, the published formulas' quantity. With uneven stages it leaves out the idle time a lightly
        loaded rank has anyway (load imbalance, which ``bubbles()`` includes).
        """
        return self.makespan - max(self.busy(r) for r in range(self.schedule.n_ranks))

    def check(self) -> None:
        """Raise ``ScheduleError`` if any rank runs two slots at once (a double-booked device)."""
        for r, spans in enumerate(self.spans):
            for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:]):
                if s1 < e0 - 1e-12:
                    raise ScheduleError(f"rank {r} runs {[str(o) for o in b]} at {s1:g} before "
                                        f"{[str(o) for o in a]} ends at {e0:g}")


def _needs(op: Op, last_stage: int) -> list[tuple[Kind, int, int]]:
    """The (kind, micro, stage) results ``op`` waits for; a backward waits for the next stage's B or BW."""
    m, s = op.micro, op.stage
    if op.kind is Kind.F:
        return [(Kind.F, m, s - 1)] if s > 0 else []
    if op.kind is Kind.W:
        return [(Kind.B, m, s)]
    return [(Kind.F, m, s)] + ([("back", m, s + 1)] if s < last_stage else [])


def _finished(done: dict, need: tuple) -> tuple[float, int] | None:
    if need[0] == "back":
        return done.get((Kind.B, need[1], need[2])) or done.get((Kind.BW, need[1], need[2]))
    return done.get(need)


def _ready_at(slot: tuple[Op, ...], rank: int, done: dict, costs: Costs, last_stage: int) -> float | None:
    """When every input of the slot's ops is on ``rank``, or None while one is still missing."""
    at = 0.0
    for op in slot:
        for need in _needs(op, last_stage):
            got = _finished(done, need)
            if got is None:
                return None
            at = max(at, got[0] + (costs.comm if got[1] != rank else 0.0))
    return at


def simulate(schedule: Schedule, costs: Costs) -> Timeline:
    """Replay ``schedule`` with ``costs``; raises ``ScheduleError`` naming the stuck slots on a deadlock.

    Args:
        schedule: what each rank runs, in order.
        costs: seconds per op and stage.

    Returns:
        the timeline: start and end of every slot on every rank.
    """
    if len(costs.f) != schedule.n_stages:
        raise ValueError(f"costs cover {len(costs.f)} stages, the schedule has {schedule.n_stages}")
    done: dict[tuple, tuple[float, int]] = {}  # (kind, micro, stage) -> (finish time, rank)
    free = [0.0] * schedule.n_ranks
    nxt = [0] * schedule.n_ranks
    spans: list[list] = [[] for _ in range(schedule.n_ranks)]
    remaining = sum(len(s) for s in schedule.ranks)
    while remaining:
        progressed = False
        for r, slots in enumerate(schedule.ranks):
            while nxt[r] < len(slots):
                ready = _ready_at(slots[nxt[r]], r, done, costs, schedule.n_stages - 1)
                if ready is None:
                    break
                start = max(ready, free[r])
                end = start + costs.slot(slots[nxt[r]])
                spans[r].append((start, end, slots[nxt[r]]))
                for op in slots[nxt[r]]:
                    done[(op.kind, op.micro, op.stage)] = (end, r)
                free[r], nxt[r], remaining, progressed = end, nxt[r] + 1, remaining - 1, True
        if not progressed:
            stuck = [f"rank {r}: {[str(o) for o in schedule.ranks[r][nxt[r]]]}"
                     for r in range(schedule.n_ranks) if nxt[r] < len(schedule.ranks[r])]
            raise ScheduleError(f"schedule {schedule.name} deadlocks: no rank can start its next slot ({'; '.join(stuck)})")
    return Timeline(schedule, tuple(tuple(s) for s in spans))


def bubble_formula(name: str, pp: int, f: float, b: float, w: float, fb: float | None = None) -> float:
    """The published bubble (DualPipe README, DeepSeek-V3 report Table 2) for uniform stages:
    1F1B ``(PP-1)(F+B)``; DualPipe ``(PP/2-1)(F&B+B-3W)``.

    Args:
        name: ``1f1b`` or ``dualpipe``.
        pp: pipeline ranks.
        f: forward chunk seconds.
        b: full backward chunk seconds.
        w: its weight-gradient part.
        fb: an overlapped F&B pair's seconds (default F + B: no overlap).

    Returns:
        the bubble in seconds.
    """
    if name == "1f1b":
        return (pp - 1) * (f + b)
    if name == "dualpipe":
        return (pp / 2 - 1) * ((f + b if fb is None else fb) + b - 3 * w)
    raise ValueError(f"no published bubble formula for {name!r}; known: 1f1b, dualpipe")
