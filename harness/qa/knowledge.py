"""The troubleshooting knowledge base: ``knowledge_base.toml`` read and validated into frozen records.

The knowledge base is data, not code (STYLE.md 5): each known failure is an ``[[issue]]`` in
``harness/qa/knowledge_base.toml`` with the regexes of the messages it produces, its root causes,
solutions and prevention. ``load_knowledge_base`` validates a file and names every problem at once
(duplicate or unknown ids, unknown categories or severities, regexes that do not compile, weights
outside (0, 1), missing or unknown fields). ``KNOWLEDGE_BASE`` is the project's file, loaded once.

Matching lives in ``harness.qa.diagnosis``; the guide and the CLI in ``harness.qa.troubleshoot``.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import Mapping

from harness.data_files import read_toml
from harness.qa.levels import Level

KNOWLEDGE_BASE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "knowledge_base.toml")


class KnowledgeBaseError(ValueError):
    """An invalid knowledge-base file; the message names every offending issue and field."""


class Category(str, enum.Enum):
    """Where in the stack an issue lives."""

    MEMORY = "memory"
    TRAINING_STABILITY = "training stability"
    MOE_ROUTING = "MoE routing"
    PRECISION = "precision"
    COMPILATION = "compilation"
    SHAPES_AND_CONFIG = "shapes and config"
    CHECKPOINT = "checkpoint"
    DATA_PIPELINE = "data pipeline"
    EQUIVALENCE = "TF/JAX equivalence"
    ENVIRONMENT = "environment"
    ACCELERATOR = "GPU / CUDA"
    DISTRIBUTED = "distributed"
    DEPLOYMENT = "deployment"


@dataclass(frozen=True)
class Pattern:
    """A regex over log text, the weight of its evidence in (0, 1), and what a match means."""

    regex: str
    weight: float
    means: str

    def search(self, text: str) -> re.Match | None:
        """The last match in ``text`` (case-insensitive, ``^``/``$`` per line), or None.

        The last one, because a traceback ends with the exception message, while earlier matches
        are often the source line that raised it.
        """
        match = None
        for match in re.finditer(self.regex, text, re.IGNORECASE | re.MULTILINE):
            pass
        return match


@dataclass(frozen=True)
class Issue:
    """One known failure: how to recognise it, why it happens, how to fix and prevent it.

    ``refines`` names a more general issue of which this one is a known cause (a divergence from a
    too-high learning rate refines "NaN/Inf loss"); when both match a log, the specific one ranks first.
    """

    id: str
    title: str
    category: Category
    severity: Level
    phases: str
    description: str
    symptoms: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    root_causes: tuple[str, ...]
    solutions: tuple[str, ...]
    prevention: tuple[str, ...]
    related: tuple[str, ...] = ()
    refines: str | None = None


_LISTS = ("symptoms", "root_causes", "solutions", "prevention")
_REQUIRED = ("id", "title", "category", "severity", "phases", "description", "patterns", *_LISTS)
_FIELDS = {*_REQUIRED, "related", "refines"}
_PATTERN_FIELDS = {"regex", "weight", "means"}


def _patterns(entry: Mapping, where: str, problems: list[str]) -> tuple[Pattern, ...]:
    out = []
    raw = entry["patterns"]
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: patterns must be a non-empty list of {{regex, weight, means}}")
        return ()
    for n, p in enumerate(raw, 1):
        if not isinstance(p, dict) or set(p) != _PATTERN_FIELDS:
            problems.append(f"{where}: pattern #{n} must have exactly the fields {sorted(_PATTERN_FIELDS)}")
            continue
        try:
            re.compile(p["regex"])
        except (re.error, TypeError) as e:
            problems.append(f"{where}: pattern #{n} regex {p['regex']!r} does not compile ({e})")
            continue
        weight = p["weight"]
        if not isinstance(weight, (int, float)) or not 0.0 < weight < 1.0:
            problems.append(f"{where}: pattern #{n} weight {weight!r} must lie in (0, 1)")
            continue
        out.append(Pattern(p["regex"], float(weight), str(p["means"])))
    return tuple(out)


def parse_knowledge_base(data: Mapping, source: str = "knowledge base") -> tuple[Issue, ...]:
    """Validate parsed TOML (``{"schema_version": 1, "issue": [...]}``) into issues.

    Args:
        data: the dict tomllib returns.
        source: file name for error messages.

    Returns:
        the issues in file order; raises KnowledgeBaseError listing every problem found.
    """
    if data.get("schema_version") != 1:
        raise KnowledgeBaseError(f"{source}: schema_version must be 1, got {data.get('schema_version')!r}")
    entries = data.get("issue")
    if not isinstance(entries, list) or not entries:
        raise KnowledgeBaseError(f"{source}: no [[issue]] entries")
    problems: list[str] = []
    issues: list[Issue] = []
    categories = {c.name.lower(): c for c in Category}
    for n, entry in enumerate(entries, 1):
        where = f"issue #{n} ({entry.get('id', 'no id')})"
        missing = [f for f in _REQUIRED if f not in entry]
        unknown = sorted(set(entry) - _FIELDS)
        if missing or unknown:
            problems.append(f"{where}: missing fields {missing}" if missing else f"{where}: unknown fields {unknown}")
            continue
        category = categories.get(str(entry["category"]).lower())
        if category is None:
            problems.append(f"{where}: category {entry['category']!r} is not one of {sorted(categories)}")
            continue
        try:
            severity = Level.parse(entry["severity"])
        except ValueError as e:
            problems.append(f"{where}: severity {e}")
            continue
        bad_lists = [f for f in _LISTS if not (isinstance(entry[f], list) and entry[f])]
        if bad_lists:
            problems.append(f"{where}: {bad_lists} must be non-empty lists of strings")
            continue
        patterns = _patterns(entry, where, problems)
        if not patterns:
            continue
        issues.append(Issue(
            id=str(entry["id"]), title=str(entry["title"]), category=category, severity=severity,
            phases=str(entry["phases"]), description=str(entry["description"]),
            symptoms=tuple(map(str, entry["symptoms"])), patterns=patterns,
            root_causes=tuple(map(str, entry["root_causes"])), solutions=tuple(map(str, entry["solutions"])),
            prevention=tuple(map(str, entry["prevention"])), related=tuple(map(str, entry.get("related", ()))),
            refines=entry.get("refines") or None,
        ))
    ids = [i.id for i in issues]
    problems += [f"duplicate issue id {i}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for issue in issues:
        for other in [*issue.related, *([issue.refines] if issue.refines else [])]:
            if other not in ids or other == issue.id:
                problems.append(f"issue {issue.id} refers to unknown issue id {other!r}")
    if problems:
        raise KnowledgeBaseError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return tuple(issues)


def load_knowledge_base(path: str | os.PathLike = KNOWLEDGE_BASE_PATH) -> tuple[Issue, ...]:
    """Read and validate a knowledge-base TOML file; a missing or malformed file raises KnowledgeBaseError."""
    path = os.fspath(path)
    return parse_knowledge_base(read_toml(path, KnowledgeBaseError, "knowledge base"), source=path)


KNOWLEDGE_BASE: tuple[Issue, ...] = load_knowledge_base()
_ISSUES = {issue.id: issue for issue in KNOWLEDGE_BASE}


def get_issue(issue_id: str) -> Issue:
    """The knowledge-base entry ``issue_id``; an unknown id raises KeyError listing the known ones."""
    try:
        return _ISSUES[issue_id]
    except KeyError:
        raise KeyError(f"unknown issue id {issue_id!r}; known ids are {sorted(_ISSUES)}") from None
