"""The roadmap as data: phases 0-6, their milestones and success criteria, and the cross-phase QA criteria.

The data is ``harness/roadmap/roadmap.toml``, read into the frozen records below when the module is imported.
Everything in it is transcribed from the seed specification (``shared/seed/roadmap-and-qa-spec.txt``):
section 4 "Master Implementation Roadmap" gives the seven phases (deliverables, success criteria,
dependencies, risks, mitigations, resources, cost); section 2 gives the tracker's default milestone for
phase 0; section 5 gives the cross-phase QA criteria. Texts are kept verbatim so that
``tests/harness/test_roadmap.py`` can check that nothing was dropped. The one addition is the
``project`` milestone: criteria this project sets itself (ARCHITECTURE.md, issue #4) that the seed has
no line for, such as TF-vs-Flax speed. It is labelled as such wherever it is shown.

Each criterion has a stable id ``<milestone prefix>.<slug>`` (``P2.moe_balance``). ``harness.roadmap.criteria``
binds ids to asv benchmarks; this module knows nothing of measurement.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.data_files import read_toml


@dataclass(frozen=True)
class Criterion:
    """One success criterion: a stable id and the roadmap's own wording."""

    id: str
    text: str


@dataclass(frozen=True)
class Milestone:
    """A set of criteria that is complete only when all of its measurable criteria pass.

    ``phase_id`` is ``None`` for cross-phase milestones (section 5 and the project's own criteria).
    """

    id: str
    name: str
    phase_id: str | None
    source: str
    criteria: tuple[Criterion, ...]
    target_date: str | None = None
    validation_tests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    """A phase's resource requirements as the seed states them."""

    team_size: int
    gpu_hours: int
    storage_tb: int
    compute_instances: int


@dataclass(frozen=True)
class Phase:
    """One roadmap phase (seed section 4.1). Its success criteria form the milestone ``M<number>``."""

    id: str
    number: int
    name: str
    description: str
    duration_weeks: int
    dependencies: tuple[str, ...]
    deliverables: tuple[str, ...]
    milestone: Milestone
    risks: tuple[str, ...]
    mitigations: tuple[str, ...]
    resources: Resources
    estimated_cost: float

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """The success criteria of this phase's milestone (a phase is done when its milestone is)."""
        return self.milestone.criteria

    @property
    def risk_mitigations(self) -> tuple[tuple[str, str], ...]:
        """(risk, mitigation) pairs; the seed lists them in matching order."""
        return tuple(zip(self.risks, self.mitigations))


class RoadmapError(ValueError):
    """An invalid roadmap file; the message names the file, the entry and the field."""


ROADMAP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roadmap.toml")
_GROUPS = ("tracker", "qa", "project")


def _criteria(entry: Mapping[str, Any], where: str) -> tuple[Criterion, ...]:
    try:
        return tuple(Criterion(str(c["id"]), str(c["text"])) for c in entry["criteria"])
    except (KeyError, TypeError) as e:
        raise RoadmapError(f"{where}: criteria must be a list of {{id, text}} tables ({e!r})") from None


def _phase(entry: Mapping[str, Any], source: str) -> Phase:
    """One ``[[phase]]`` table as a Phase; its milestone is ``M<number>``, the phase's success criteria."""
    where = f"{source}: phase {entry.get('number', '?')}"
    criteria = _criteria(entry, where)
    try:
        number = int(entry["number"])
        pid = f"phase_{number}"
        milestone = Milestone(f"M{number}", f"Phase {number} success criteria", pid, "seed 4.1", criteria)
        return Phase(pid, number, str(entry["name"]), str(entry["description"]), int(entry["duration_weeks"]),
                     tuple(entry["dependencies"]), tuple(entry["deliverables"]), milestone, tuple(entry["risks"]),
                     tuple(entry["mitigations"]), Resources(**entry["resources"]), float(entry["estimated_cost"]))
    except (KeyError, TypeError, ValueError) as e:
        raise RoadmapError(f"{where}: missing or malformed field ({e!r}); see the field list at the top of the "
                           f"file") from None


def _milestone(entry: Mapping[str, Any], source: str) -> Milestone:
    """One ``[[milestone]]`` table (a tracker, QA or project milestone) as a Milestone."""
    where = f"{source}: milestone {entry.get('id', '?')}"
    criteria = _criteria(entry, where)
    try:
        return Milestone(str(entry["id"]), str(entry["name"]), entry.get("phase_id"), str(entry["source"]),
                         criteria, entry.get("target_date"),
                         tuple(entry.get("validation_tests", ())))
    except KeyError as e:
        raise RoadmapError(f"{where}: missing field {e}") from None


def load_roadmap(path: str | os.PathLike = ROADMAP_PATH) -> tuple[tuple[Phase, ...], dict[str, tuple[Milestone, ...]]]:
    """The phases and the other milestones by group (``tracker``, ``qa``, ``project``) of a roadmap TOML file.

    Args:
        path: the file (default: the project's ``harness/roadmap/roadmap.toml``).

    Returns:
        (phases in file order, {group: milestones in file order}); a missing, malformed or incomplete file
        raises RoadmapError naming the entry.
    """
    source = os.fspath(path)
    data = read_toml(path, RoadmapError, "roadmap file")
    if data.get("schema_version") != 1:
        raise RoadmapError(f"{source}: schema_version must be 1, got {data.get('schema_version')!r}")
    phases = tuple(_phase(e, source) for e in data.get("phase", ()))
    groups: dict[str, tuple[Milestone, ...]] = {g: () for g in _GROUPS}
    for entry in data.get("milestone", ()):
        group = entry.get("group")
        if group not in groups:
            raise RoadmapError(f"{source}: milestone {entry.get('id', '?')}: group {group!r} is not one of "
                               f"{list(_GROUPS)}")
        groups[group] += (_milestone(entry, source),)
    if not phases:
        raise RoadmapError(f"{source}: no [[phase]] entries")
    return phases, groups


_PHASES, _MILESTONE_GROUPS = load_roadmap()
PHASES: tuple[Phase, ...] = _PHASES
# Seed section 2.1: the progress tracker's default milestone ("Additional milestones would be defined here").
TRACKER_MILESTONES: tuple[Milestone, ...] = _MILESTONE_GROUPS["tracker"]
# Seed section 5: cross-phase success criteria and validation targets.
QA_MILESTONES: tuple[Milestone, ...] = _MILESTONE_GROUPS["qa"]
# Not in the seed: what this project itself must show (ARCHITECTURE.md: the Flax reference under jax.jit
# is the speed peer; MoE cost must follow activated, not total, experts).
PROJECT_MILESTONES: tuple[Milestone, ...] = _MILESTONE_GROUPS["project"]

MILESTONES: tuple[Milestone, ...] = (
    tuple(p.milestone for p in PHASES) + TRACKER_MILESTONES + QA_MILESTONES + PROJECT_MILESTONES
)

CROSS_PHASE = "cross-phase"


def phase_by_id(phase_id: str) -> Phase:
    """The phase with id ``phase_id``; a KeyError that lists the valid ids otherwise."""
    for phase in PHASES:
        if phase.id == phase_id:
            return phase
    raise KeyError(f"unknown phase {phase_id!r}; the roadmap has {[p.id for p in PHASES]}")


def all_criteria() -> dict[str, tuple[Milestone, Criterion]]:
    """Every criterion id -> (its milestone, the criterion), in roadmap order."""
    out: dict[str, tuple[Milestone, Criterion]] = {}
    for milestone in MILESTONES:
        for criterion in milestone.criteria:
            if criterion.id in out:
                raise ValueError(f"criterion id {criterion.id} appears twice (in {out[criterion.id][0].id} "
                                 f"and {milestone.id}); ids must be unique")
            out[criterion.id] = (milestone, criterion)
    return out


@dataclass(frozen=True)
class ScheduledPhase:
    """Earliest start and finish (in weeks from project start) given the dependencies."""

    phase_id: str
    start_week: int
    end_week: int
    on_critical_path: bool = field(default=False)


def schedule(phases: tuple[Phase, ...] = PHASES) -> tuple[ScheduledPhase, ...]:
    """Earliest-start schedule over the dependency graph, with the critical path marked.

    Args:
        phases: the phases with durations and dependencies (default: the roadmap's).

    Returns:
        one ScheduledPhase per phase, in the order given: start and end week, and whether it is on the
        critical path. A dependency cycle raises ValueError naming it.
    """
    by_id = {p.id: p for p in phases}
    finish: dict[str, int] = {}

    def end(pid: str, trail: tuple[str, ...] = ()) -> int:
        if pid in trail:
            raise ValueError(f"dependency cycle: {' -> '.join(trail + (pid,))}")
        if pid not in finish:
            deps = by_id[pid].dependencies
            finish[pid] = max((end(d, trail + (pid,)) for d in deps), default=0) + by_id[pid].duration_weeks
        return finish[pid]

    for p in phases:
        end(p.id)
    critical = set(critical_path(phases, finish))
    return tuple(ScheduledPhase(p.id, finish[p.id] - p.duration_weeks, finish[p.id], p.id in critical)
                 for p in phases)


def critical_path(phases: tuple[Phase, ...] = PHASES, finish: dict[str, int] | None = None) -> tuple[str, ...]:
    """The longest dependency chain (phase ids, first to last).

    Args:
        phases: the phases with durations and dependencies (default: the roadmap's).
        finish: ``{phase id: end week}`` of an earliest-start schedule; None computes it with ``schedule``.

    Returns:
        the phase ids from the first phase of the chain to the one that finishes last.
    """
    if finish is None:
        return tuple(s.phase_id for s in schedule(phases) if s.on_critical_path)
    by_id = {p.id: p for p in phases}
    path = [max(finish, key=lambda pid: finish[pid])]
    while by_id[path[-1]].dependencies:
        path.append(max(by_id[path[-1]].dependencies, key=lambda pid: finish[pid]))
    return tuple(reversed(path))


@dataclass(frozen=True)
class Totals:
    """Whole-roadmap roll-ups (see ``totals``): peaks for team and instances, sums for cost and GPU hours."""

    duration_weeks: int
    estimated_cost: float
    gpu_hours: int
    max_team_size: int
    storage_tb: int
    max_compute_instances: int


def totals(phases: tuple[Phase, ...] = PHASES) -> Totals:
    """Roll-ups as the seed defines them: duration along the critical path, summed cost, GPU hours, storage."""
    return Totals(
        duration_weeks=max(s.end_week for s in schedule(phases)),
        estimated_cost=sum(p.estimated_cost for p in phases),
        gpu_hours=sum(p.resources.gpu_hours for p in phases),
        max_team_size=max(p.resources.team_size for p in phases),
        storage_tb=sum(p.resources.storage_tb for p in phases),
        max_compute_instances=max(p.resources.compute_instances for p in phases),
    )
