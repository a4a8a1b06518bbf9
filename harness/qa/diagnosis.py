"""Diagnosis: rank the knowledge base's issues by the evidence a log (or live signals) shows.

Two kinds of evidence feed a diagnosis:

- **Patterns.** Each matched pattern of an issue (``harness.qa.knowledge``) adds its weight to the
  issue's score by a noisy-OR, ``confidence = 1 - prod(1 - w_i)``, over distinct matched patterns,
  capped at 0.99. A single decisive message (``OOM when allocating tensor``) gives about 0.95, and
  several weak hints add up.
- **Live signals.** ``harness.qa.signals`` checks numbers found in the log (losses, gradient norms,
  learning rates, expert loads) or measured by a training loop; each ``Finding`` adds its weight to
  the issue it points to.

Ranking is by confidence, then severity. One exception: an issue that ``refines`` a more general one
(a divergence from a too-high learning rate refines "NaN/Inf loss") ranks right before it when both
match, because the specific cause is the more useful answer and its evidence is the general one's too.

``troubleshooting_coverage`` (in ``harness.qa.diagnosis_coverage``) scores this ranking against the spec's
common issues and captured real failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from harness.qa.knowledge import KNOWLEDGE_BASE, Issue
from harness.qa.signals import Finding, signals_from_log

# A log never proves a cause: however much evidence agrees, confidence stops here.
MAX_CONFIDENCE = 0.99
# A refining issue is moved before its general one only on evidence at least this strong.
REFINE_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Evidence:
    """One reason for a diagnosis: a matched pattern or a live-signal Finding."""

    weight: float
    means: str
    excerpt: str


@dataclass(frozen=True)
class Diagnosis:
    """An issue with its confidence (noisy-OR of the evidence weights) and the evidence."""

    issue: Issue
    confidence: float
    evidence: tuple[Evidence, ...]


def _line_of(text: str, match: re.Match) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end >= 0 else len(text)].strip()[:240]


def _specific_first(ranked: list[Diagnosis]) -> list[Diagnosis]:
    """Move each matched refining issue (confidence >= REFINE_MIN_CONFIDENCE) right before its general one."""
    out = list(ranked)
    for d in ranked:
        parent = d.issue.refines
        if parent is None or d.confidence < REFINE_MIN_CONFIDENCE:
            continue
        ids = [x.issue.id for x in out]
        if parent in ids and ids.index(parent) < ids.index(d.issue.id):
            out.remove(d)
            out.insert(ids.index(parent), d)
    return out


def diagnose_text(text: str, signals: Iterable[Finding] = (),
                  knowledge_base: Sequence[Issue] = KNOWLEDGE_BASE) -> list[Diagnosis]:
    """Rank the known issues that ``text`` (a log or error message) shows.

    Args:
        text: log text; any length, any content (never raises on unknown input).
        signals: extra live-signal Findings measured outside the log.
        knowledge_base: the issues to match (default: the project's knowledge base).

    Returns:
        Diagnoses with confidence > 0, best first (ties: higher severity first; a refining issue
        before its general one). Empty when no pattern or signal matched; see closest_issues then.
    """
    by_id = {issue.id: issue for issue in knowledge_base}
    evidence: dict[str, list[Evidence]] = {}
    for issue in knowledge_base:
        for pattern in issue.patterns:
            match = pattern.search(text)
            if match:
                evidence.setdefault(issue.id, []).append(Evidence(pattern.weight, pattern.means, _line_of(text, match)))
    seen_messages = set()
    for finding in [*signals_from_log(text), *signals]:
        if finding.message in seen_messages or finding.issue_id not in by_id:
            continue
        seen_messages.add(finding.message)
        evidence.setdefault(finding.issue_id, []).append(Evidence(finding.weight, "live signal", finding.message))
    ranked = []
    for issue_id, items in evidence.items():
        miss = 1.0
        for item in items:
            miss *= 1.0 - item.weight
        items.sort(key=lambda e: -e.weight)
        ranked.append(Diagnosis(by_id[issue_id], round(min(1.0 - miss, MAX_CONFIDENCE), 4), tuple(items)))
    ranked.sort(key=lambda d: (-d.confidence, -d.issue.severity, d.issue.id))
    return _specific_first(ranked)


_WORD_RE = re.compile(r"[a-z][a-z0-9_]{2,}")
_STOP = frozenset("the and for with from that this are was not but has have into its when one all any use".split())


def _tokens(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if w not in _STOP}


def closest_issues(text: str, n: int = 3) -> list[tuple[Issue, float]]:
    """The ``n`` issues whose descriptions share the most words with ``text`` (Jaccard overlap).

    Args:
        text: the unmatched log or description.
        n: how many candidates.

    Returns:
        (issue, overlap in [0, 1]) pairs, best first; issues with no shared word are left out.
    """
    words = _tokens(text)
    scored = []
    for issue in KNOWLEDGE_BASE:
        vocab = _tokens(" ".join([issue.title, issue.description, *issue.symptoms, *issue.root_causes]))
        union = words | vocab
        score = len(words & vocab) / len(union) if union else 0.0
        if score > 0:
            scored.append((issue, round(score, 4)))
    scored.sort(key=lambda pair: (-pair[1], pair[0].id))
    return scored[:n]


def _evidence_lines(evidence: Sequence[Evidence]) -> list[str]:
    """One bullet per distinct log line, listing what each pattern matched there means."""
    by_line: dict[str, list[str]] = {}
    for e in evidence:
        by_line.setdefault(e.excerpt, []).append(f"{e.means} ({e.weight:.2f})")
    return [f"- `{line}`: {'; '.join(means)}" for line, means in by_line.items()]


def format_diagnosis(text: str, diagnoses: list[Diagnosis], top: int = 3) -> str:
    """Markdown for a ranked diagnosis, or 'no known issue matched' with the closest candidates.

    Args:
        text: the log or error text that was diagnosed (used to find the closest candidates).
        diagnoses: the matched issues, best first (``diagnose(text)``).
        top: how many of them to show.

    Returns:
        the Markdown report, ending in a newline.
    """
    if not diagnoses:
        lines = ["# Diagnosis", "", "No known issue matched."]
        candidates = closest_issues(text)
        if candidates:
            lines += ["", "Closest candidates by shared words (weak evidence):"]
            lines += [f"- `{issue.id}` {issue.title} (word overlap {score:.2f})" for issue, score in candidates]
        lines += ["", "Run `python -m harness diagnose --report-template LOGFILE` to file an issue."]
        return "\n".join(lines) + "\n"
    lines = ["# Diagnosis", ""]
    for rank, d in enumerate(diagnoses[:top], 1):
        lines += [
            f"## {rank}. {d.issue.title} (`{d.issue.id}`), confidence {d.confidence:.2f}",
            f"Category: {d.issue.category.value}; severity: {d.issue.severity.name}; phases: {d.issue.phases}",
            "",
            "Evidence:",
            *_evidence_lines(d.evidence),
            "",
            "Try, in order:",
            *[f"{i}. {s}" for i, s in enumerate(d.issue.solutions, 1)],
            "",
        ]
    if len(diagnoses) > top:
        lines.append("Also matched: " + ", ".join(f"`{d.issue.id}` ({d.confidence:.2f})" for d in diagnoses[top:]))
    return "\n".join(lines).rstrip() + "\n"

