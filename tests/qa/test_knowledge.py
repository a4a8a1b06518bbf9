"""The knowledge base is data: harness/qa/knowledge_base.toml, validated into frozen Issue records."""

import dataclasses

import pytest

from harness.qa import knowledge
from harness.qa.knowledge import KnowledgeBaseError, parse_knowledge_base
from harness.qa.levels import Level

GOOD = {"id": "a", "title": "A", "category": "memory", "severity": "high", "phases": "P1", "description": "d",
        "patterns": [{"regex": "boom", "weight": 0.9, "means": "m"}], "symptoms": ["s"], "root_causes": ["r"],
        "solutions": ["f"], "prevention": ["p"]}


def parse(*issues):
    return parse_knowledge_base({"schema_version": 1, "issue": list(issues)})


def test_project_knowledge_base_loads_into_frozen_records():
    kb = knowledge.load_knowledge_base()
    assert kb == knowledge.KNOWLEDGE_BASE and len(kb) >= 15
    with pytest.raises(dataclasses.FrozenInstanceError):
        kb[0].title = "changed"
    assert {"gpu_not_found", "distributed_failure", "lr_divergence", "tensorrt_failure"} <= {i.id for i in kb}


def test_every_problem_is_named_at_once():
    with pytest.raises(KnowledgeBaseError) as info:
        parse(GOOD, {**GOOD, "id": "b", "category": "weather"}, {**GOOD, "id": "c", "severity": "urgent"},
              {**GOOD, "id": "d", "patterns": [{"regex": "(", "weight": 0.5, "means": "m"}]},
              {**GOOD, "id": "e", "patterns": [{"regex": "x", "weight": 1.5, "means": "m"}]},
              {**GOOD, "id": "f", "related": ["ghost"]}, {**GOOD, "id": "g", "refines": "nowhere"},
              {**GOOD, "id": "h", "colour": "red"}, {"id": "i"}, {**GOOD, "symptoms": []}, GOOD)
    message = str(info.value)
    for expected in ("category 'weather'", "severity 'urgent' is not one of", "does not compile",
                     "weight 1.5 must lie in (0, 1)", "unknown issue id 'ghost'", "unknown issue id 'nowhere'",
                     "unknown fields ['colour']", "missing fields", "must be non-empty lists", "duplicate issue id a"):
        assert expected in message


def test_bad_files_raise_knowledge_base_error(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        knowledge.load_knowledge_base(tmp_path / "none.toml")
    bad = tmp_path / "kb.toml"
    bad.write_text("schema_version = 1\n[[issue]\n")
    with pytest.raises(KnowledgeBaseError, match="not valid TOML"):
        knowledge.load_knowledge_base(bad)
    bad.write_text("schema_version = 2\n")
    with pytest.raises(KnowledgeBaseError, match="schema_version must be 1"):
        knowledge.load_knowledge_base(bad)


def test_priority_and_severity_are_one_enum():
    from harness.qa import tasks

    task_field = {f.name: f.type for f in dataclasses.fields(tasks.Task)}["priority"]
    issue_field = {f.name: f.type for f in dataclasses.fields(knowledge.Issue)}["severity"]
    assert task_field == issue_field == "Level"
    assert Level.parse("Critical") is Level.CRITICAL and Level.LOW < Level.HIGH
    with pytest.raises(ValueError, match="not one of"):
        Level.parse("urgent")
