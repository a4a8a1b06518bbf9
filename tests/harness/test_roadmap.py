"""The roadmap data is complete against the seed specification, and its roll-ups are right."""

import ast
import re
from pathlib import Path

import pytest

from harness import roadmap

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "roadmap-and-qa-spec.txt"


def _demojibake(text: str) -> str:
    """The seed's non-ASCII was saved as UTF-8 read as cp1252 ('â†’' for '→'); undo that where it applies."""
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _code_block(text: str, marker: str) -> ast.Module:
    start = text.index(marker)
    return ast.parse(text[start: text.index("```", start)])


@pytest.fixture(scope="module")
def seed() -> str:
    if not SEED.exists():
        pytest.skip(f"seed spec not found at {SEED} (CI clones the repo next to shared/; absent here)")
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed_phases(seed: str) -> dict[str, dict]:
    """Section 4's RoadmapPhase(...) calls, keyword -> literal value."""
    tree = _code_block(seed, "# roadmap/master_roadmap.py")
    phases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RoadmapPhase":
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            phases[kw["phase_id"]] = kw
    return phases


def _clean(values):
    return tuple(_demojibake(v) for v in values)


def test_seed_has_seven_phases(seed_phases):
    assert sorted(seed_phases) == [f"phase_{i}" for i in range(7)]


@pytest.mark.parametrize("field,ours", [
    ("key_deliverables", lambda p: p.deliverables),
    ("success_criteria", lambda p: tuple(c.text for c in p.criteria)),
    ("risk_factors", lambda p: p.risks),
    ("mitigation_strategies", lambda p: p.mitigations),
    ("dependencies", lambda p: p.dependencies),
    ("name", lambda p: p.name),
    ("description", lambda p: p.description),
    ("duration_weeks", lambda p: p.duration_weeks),
    ("estimated_cost", lambda p: p.estimated_cost),
    ("resource_requirements", lambda p: vars(p.resources)),
])
def test_every_phase_field_matches_the_seed(seed_phases, field, ours):
    for phase in roadmap.PHASES:
        want = seed_phases[phase.id][field]
        want = _clean(want) if isinstance(want, list) else _demojibake(want) if isinstance(want, str) else want
        assert ours(phase) == want, f"{phase.id}.{field} differs from the seed"


def test_tracker_milestone_matches_seed_section_2(seed):
    tree = _code_block(seed, "# tracking/progress_tracker.py")
    found = [ast.literal_eval(n) for n in ast.walk(tree) if isinstance(n, ast.Dict)
             and any(isinstance(k, ast.Constant) and k.value == "success_criteria" for k in n.keys)]
    assert len(found) == 1
    (ours,) = roadmap.TRACKER_MILESTONES
    assert ours.id == found[0]["id"] and ours.name == found[0]["name"]
    assert tuple(c.text for c in ours.criteria) == tuple(found[0]["success_criteria"])
    assert ours.validation_tests == tuple(found[0]["validation_tests"])
    assert ours.target_date == found[0]["target_date"]


def test_cross_phase_criteria_match_seed_section_5(seed):
    section = seed[seed.index("## 5. Success Criteria and Validation Targets"):]
    groups = re.split(r"^### (5\.\d) ", section, flags=re.M)[1:]
    seed_groups = {num: re.findall(r"^- \[ \] (.+?)\s*$", body, flags=re.M)
                   for num, body in zip(groups[::2], groups[1::2])}
    ours = {m.source.split()[-1]: [c.text for c in m.criteria] for m in roadmap.QA_MILESTONES}
    assert ours == seed_groups


def test_criterion_ids_unique_and_well_formed():
    ids = roadmap.all_criteria()
    assert len(ids) == sum(len(m.criteria) for m in roadmap.MILESTONES)
    for cid in ids:
        assert re.fullmatch(r"(P[0-6]|QA|PX)\.[a-z0-9_]+", cid), cid


def test_schedule_critical_path_and_totals():
    sched = {s.phase_id: s for s in roadmap.schedule()}
    assert (sched["phase_0"].start_week, sched["phase_0"].end_week) == (0, 4)
    assert (sched["phase_6"].start_week, sched["phase_6"].end_week) == (44, 50)
    assert roadmap.critical_path() == tuple(f"phase_{i}" for i in range(7))
    t = roadmap.totals()
    assert (t.duration_weeks, t.estimated_cost, t.gpu_hours, t.max_team_size) == (50, 655000.0, 12600, 6)


def test_schedule_rejects_cycles():
    p0, p1 = roadmap.PHASES[:2]
    looped = (roadmap.Phase(**{**vars(p0), "dependencies": ("phase_1",)}), p1)
    with pytest.raises(ValueError, match="cycle"):
        roadmap.schedule(looped)


def test_the_roadmap_is_read_from_its_toml_file():
    """The records are the data file's: loading the file again gives the same phases and milestones."""
    phases, groups = roadmap.load_roadmap()
    assert phases == roadmap.PHASES and groups["qa"] == roadmap.QA_MILESTONES
    assert groups["tracker"] == roadmap.TRACKER_MILESTONES and groups["project"] == roadmap.PROJECT_MILESTONES


def test_a_broken_roadmap_file_names_the_entry_and_the_problem(tmp_path):
    text = Path(roadmap.ROADMAP_PATH).read_text()
    cases = {
        "missing.toml": (None, "does not exist"),
        "invalid.toml": ("[[phase]\n", "not valid TOML"),
        "version.toml": (text.replace("schema_version = 1", "schema_version = 2"), "schema_version must be 1"),
        "field.toml": (text.replace("duration_weeks = 6\n", "", 1), r"phase 1: missing or malformed field"),
        "group.toml": (text.replace('group = "qa"', 'group = "misc"', 1), r"milestone QA5.1: group 'misc'"),
        "criteria.toml": (text.replace('{id = "P0.tf_gpu", ', '{', 1), r"phase 0: criteria must be a list of \{id, text\} tables"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(roadmap.RoadmapError, match=message):
            roadmap.load_roadmap(path)
