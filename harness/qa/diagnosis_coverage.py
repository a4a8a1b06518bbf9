"""QA.troubleshooting_coverage: how often the diagnosis ranks the right issue first, on cases it was not tuned to.

Three sets of cases, each a text and the knowledge-base issue it must be diagnosed as (ranked first):

- ``spec``: the spec's own common issues (seed ``roadmap-and-qa-spec.txt``, section 3.1, kept verbatim
  in ``tests/qa/fixtures/spec_common_issues.toml``): every error message its pattern table names (the
  regex made concrete by reading ``.*`` as one space), every symptom its guides list, and every issue
  it names only as related (the id's words). These are requirements: the knowledge base may be
  written to cover them, and where it has no entry for an issue, the case counts as a miss.
- ``dev``: real failures provoked by ``scripts/capture_failures.py`` that patterns were written against.
  They test the patterns, but scoring them would measure the knowledge base against its own source,
  so they are reported and do not count.
- ``held_out``: real failures captured after the knowledge base was frozen, with their expected issue
  fixed before capture; no pattern may be written or edited because of them (the protocol is in
  ``tests/qa/fixtures/README.md``). A held-out failure of a kind the knowledge base lacks expects an
  id that is not in it, and stays a miss until a general entry, written from other evidence, covers it.

The criterion's value is the share of hits over ``spec`` + ``held_out``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass

from harness.qa.diagnosis import diagnose_text

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests", "qa",
                            "fixtures")
SPEC_FILE = "spec_common_issues.toml"
SETS = ("spec", "dev", "held_out")
SCORED_SETS = ("spec", "held_out")


@dataclass(frozen=True)
class Case:
    """One text to diagnose: which set it belongs to, a name, the text and the issue id it must rank first.

    ``expect`` None means the text must match no known issue.
    """

    set: str
    name: str
    text: str
    expect: str | None


@dataclass(frozen=True)
class Outcome:
    """A case and the issue the diagnosis ranked first (None: nothing matched)."""

    case: Case
    top: str | None

    @property
    def hit(self) -> bool:
        """The first-ranked issue is the expected one (or nothing matched when nothing should)."""
        return self.top == self.case.expect


def spec_message(regex: str) -> str:
    """A concrete message for one of the spec's error regexes: ``.*`` read as one space.

    Raises ValueError when the result does not match the regex (a regex this rule cannot instantiate).
    """
    message = re.sub(r"\s*\.\*\s*", " ", regex)
    if not re.search(regex, message, re.IGNORECASE):
        raise ValueError(f"spec regex {regex!r} cannot be made concrete by reading '.*' as a space")
    return message


def spec_cases(path: str) -> list[Case]:
    """The ``spec`` cases of ``spec_common_issues.toml``: messages, symptoms, named-only issues.

    Args:
        path: the TOML file of the seed spec's common issues.

    Returns:
        one Case per error pattern (made concrete), per symptom and per named-only issue, in file order.
        An unreadable or empty file raises ValueError naming it.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read the spec's common issues {path} ({e})") from None
    cases = []
    for issue in data.get("issue", []):
        sid, expect = issue["spec_id"], issue["expect"]
        cases += [Case("spec", f"{sid}: message {r!r}", spec_message(r), expect) for r in issue.get("error_patterns", [])]
        cases += [Case("spec", f"{sid}: symptom {s!r}", s, expect) for s in issue.get("symptoms", [])]
        if issue.get("named_only"):
            cases.append(Case("spec", f"{sid}: named only", sid.replace("_", " "), expect))
    if not cases:
        raise ValueError(f"{path} lists no common issues")
    return cases


def captured_cases(fixtures_dir: str) -> list[Case]:
    """The ``dev`` and ``held_out`` cases: the captured logs listed in ``MANIFEST.json``.

    Args:
        fixtures_dir: the folder holding ``MANIFEST.json`` and one ``<scenario>.log`` per scenario.

    Returns:
        one Case per scenario, sorted by name. An unreadable manifest or an unknown set raises ValueError.
    """
    manifest_path = os.path.join(fixtures_dir, "MANIFEST.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)["scenarios"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read {manifest_path} ({e}); run scripts/capture_failures.py") from None
    cases = []
    for name, meta in sorted(manifest.items()):
        kind = meta.get("set", "dev")
        if kind not in ("dev", "held_out"):
            raise ValueError(f"{manifest_path}: scenario {name} has set {kind!r}, expected 'dev' or 'held_out'")
        with open(os.path.join(fixtures_dir, f"{name}.log"), errors="replace") as f:
            cases.append(Case(kind, name, f.read(), meta["expect"]))
    return cases


def all_cases(fixtures_dir: str = FIXTURES_DIR) -> list[Case]:
    """Every case: the spec's, then the captured ones."""
    return [*spec_cases(os.path.join(fixtures_dir, SPEC_FILE)), *captured_cases(fixtures_dir)]


def score(cases: list[Case]) -> list[Outcome]:
    """Diagnose every case; the first-ranked issue id of each (None when nothing matched)."""
    outcomes = []
    for case in cases:
        ranked = diagnose_text(case.text)
        outcomes.append(Outcome(case, ranked[0].issue.id if ranked else None))
    return outcomes


def coverage_by_set(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    """{set: (hits, cases)} for every set, and ``scored`` for spec + held_out together."""
    out = {}
    for name in SETS:
        mine = [o for o in outcomes if o.case.set == name]
        out[name] = (sum(o.hit for o in mine), len(mine))
    scored = [o for o in outcomes if o.case.set in SCORED_SETS]
    out["scored"] = (sum(o.hit for o in scored), len(scored))
    return out


def troubleshooting_coverage(fixtures_dir: str = FIXTURES_DIR) -> float:
    """Share of the spec's common issues and held-out real failures whose expected issue ranks first.

    Args:
        fixtures_dir: directory with ``spec_common_issues.toml``, ``MANIFEST.json`` and ``<name>.log`` files.

    Returns:
        a fraction in [0, 1]; the ``dev`` captures do not count (the patterns were written from them).
    """
    hits, total = coverage_by_set(score(all_cases(fixtures_dir)))["scored"]
    if not total:
        raise ValueError(f"{fixtures_dir}: no spec or held-out cases to score")
    return hits / total


def coverage_table(fixtures_dir: str = FIXTURES_DIR) -> str:
    """Markdown: the score per set, then every case with its expected and first-ranked issue."""
    outcomes = score(all_cases(fixtures_dir))
    lines = ["| set | hits | cases | share |", "|---|---|---|---|"]
    for name, (hits, total) in coverage_by_set(outcomes).items():
        lines.append(f"| {name} | {hits} | {total} | {hits / total:.3f} |" if total else f"| {name} | 0 | 0 | - |")
    lines += ["", "| set | case | expected | ranked first | hit |", "|---|---|---|---|---|"]
    for o in outcomes:
        name = o.case.name.replace("|", "\\|")
        lines.append(f"| {o.case.set} | {name} | {o.case.expect} | {o.top} | {'yes' if o.hit else 'NO'} |")
    return "\n".join(lines) + "\n"
