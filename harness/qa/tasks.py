"""Implementation tasks (``harness/qa/tasks.toml``): read, validated and queried.

Tasks are versioned data. Phases and milestones are ``harness.roadmap``'s; a task names its phase
(``phase_0`` .. ``phase_6`` or ``cross-phase``) and optionally a milestone, which defaults to its
phase's milestone (``phase_2`` -> ``M2``). Loading rejects duplicate ids, unknown phases, milestones,
statuses, priorities and dependency ids, and dependency cycles, naming each offender. What the tasks say
about the milestones is ``harness.qa.progress``'s.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness import roadmap
from harness.data_files import read_toml
from harness.qa.levels import Level

TASKS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks.toml")


class TasksError(ValueError):
    """An invalid tasks file; the message names every offending task, field or cycle."""


class Status(str, enum.Enum):
    """Where a task stands."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Task:
    """One implementation task from tasks.toml, with its milestone resolved."""

    id: str
    title: str
    phase: str
    milestone: str
    status: Status
    priority: Level
    depends_on: tuple[str, ...] = ()
    note: str = ""
    tests: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        """Done or cancelled: nothing left to do."""
        return self.status in (Status.DONE, Status.CANCELLED)


_FIELDS = {"id", "title", "phase", "milestone", "status", "priority", "depends_on", "note", "tests"}
_REQUIRED = ("id", "title", "phase", "status", "priority")


def _phase_milestones() -> dict[str, str]:
    return {p.id: p.milestone.id for p in roadmap.PHASES}


def parse_tasks(data: Mapping, source: str = "tasks") -> list[Task]:
    """Validate parsed TOML (``{"schema_version": 1, "task": [...]}``) into tasks.

    Args:
        data: the dict tomllib returns.
        source: file name for error messages.

    Returns:
        the tasks in file order; raises TasksError listing every problem found.
    """
    if data.get("schema_version") != 1:
        raise TasksError(f"{source}: schema_version must be 1, got {data.get('schema_version')!r}")
    entries = data.get("task")
    if not isinstance(entries, list) or not entries:
        raise TasksError(f"{source}: no [[task]] entries")
    phase_milestone = _phase_milestones()
    phases = set(phase_milestone) | {roadmap.CROSS_PHASE}
    milestones = {m.id: m for m in roadmap.MILESTONES}
    problems: list[str] = []
    tasks: list[Task] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, 1):
        where = f"task #{n} ({entry.get('id', 'no id')})"
        missing = [f for f in _REQUIRED if f not in entry]
        unknown = sorted(set(entry) - _FIELDS)
        if missing or unknown:
            problems.append(f"{where}: missing fields {missing}" if missing else f"{where}: unknown fields {unknown}")
            continue
        tid = str(entry["id"])
        if tid in seen:
            problems.append(f"{where}: duplicate task id {tid}")
        seen.add(tid)
        try:
            status = Status(entry["status"])
        except ValueError:
            problems.append(f"{where}: status {entry['status']!r} is not one of {[s.value for s in Status]}")
            continue
        try:
            priority = Level.parse(entry["priority"])
        except ValueError as e:
            problems.append(f"{where}: priority {e}")
            continue
        phase = entry["phase"]
        if phase not in phases:
            problems.append(f"{where}: unknown phase {phase!r}; the roadmap has {sorted(phases)}")
            continue
        milestone = entry.get("milestone") or phase_milestone.get(phase)
        if milestone is None:
            problems.append(f"{where}: a {roadmap.CROSS_PHASE} task must name its milestone, one of {sorted(milestones)}")
            continue
        if milestone not in milestones:
            problems.append(f"{where}: unknown milestone {milestone!r}; the roadmap has {sorted(milestones)}")
            continue
        deps = entry.get("depends_on", [])
        if not isinstance(deps, list):
            problems.append(f"{where}: depends_on must be a list of task ids")
            continue
        tests = entry.get("tests", [])
        if not (isinstance(tests, list) and all(isinstance(x, str) and x.startswith("tests/") for x in tests)):
            problems.append(f"{where}: tests must be a list of test node ids or files under tests/")
            continue
        tasks.append(Task(tid, str(entry["title"]), phase, milestone, status, priority,
                          tuple(str(d) for d in deps), str(entry.get("note", "")), tuple(tests)))
    ids = {t.id for t in tasks}
    for t in tasks:
        unknown_deps = [d for d in t.depends_on if d not in ids]
        if unknown_deps:
            problems.append(f"task {t.id} depends on unknown task id(s) {unknown_deps}")
    if problems:
        raise TasksError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    cycle = find_cycle(tasks)
    if cycle:
        raise TasksError(f"{source}: dependency cycle {' -> '.join(cycle)}")
    return tasks


def load_tasks(path: str | os.PathLike = TASKS_PATH) -> list[Task]:
    """Read and validate a tasks TOML file; missing or malformed files raise TasksError."""
    path = os.fspath(path)
    return parse_tasks(read_toml(path, TasksError, "tasks file"), source=path)


def find_cycle(tasks: Sequence[Task]) -> list[str] | None:
    """A dependency cycle as a closed path ``[a, b, ..., a]``, or None when the graph is acyclic.

    Args:
        tasks: tasks whose ``depends_on`` ids all exist.

    Returns:
        the first cycle found by depth-first search in file order, or None.
    """
    deps = {t.id: t.depends_on for t in tasks}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps[node]:
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for t in tasks:
        if t.id not in state:
            found = visit(t.id)
            if found:
                return found
    return None


def consistency_warnings(tasks: Sequence[Task]) -> list[str]:
    """Statuses that contradict the dependencies: a done task whose dependency is not done."""
    by_id = {t.id: t for t in tasks}
    return [
        f"task {t.id} is {t.status.value} but depends on {d} ({by_id[d].status.value})"
        for t in tasks if t.status is Status.DONE for d in t.depends_on if by_id[d].status is not Status.DONE
    ]


def ready_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Tasks that can start now: todo, with every dependency done or cancelled; highest priority first."""
    by_id = {t.id: t for t in tasks}
    ready = [t for t in tasks if t.status is Status.TODO and all(by_id[d].closed for d in t.depends_on)]
    return sorted(ready, key=lambda t: -t.priority)
