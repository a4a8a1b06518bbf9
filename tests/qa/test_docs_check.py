"""Documentation rules on small fixture modules (read as text, never imported) and the coverage reader."""

import json
import os

import pytest

from harness.qa.docs_check import (
    CoverageError,
    DocsCheckError,
    coverage_percent,
    docs_score,
    documented_args,
    main,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MODEL = ("fixtures",)  # treat the fixture directory as model code (rules D103, D104)


def fixture(name):
    return os.path.join(FIXTURES, name)


def rules(violations):
    return sorted((v.rule, v.name) for v in violations)


def test_clean_model_module_passes_every_rule():
    score, violations = docs_score([fixture("docs_clean.py")], model_dirs=MODEL)
    assert violations == []
    assert score == 1.0


def test_missing_docstrings_are_each_reported():
    score, violations = docs_score([fixture("docs_missing.py")], model_dirs=MODEL)
    assert rules(violations) == [("D100", "docs_missing"), ("D101", "Expert"), ("D102", "Expert.forward"),
                                 ("D102", "swiglu")]
    # 5 docstring checks (module, class, 3 functions), only `documented` passes; plus one type-hint and
    # one naming check per class or function, all passing (3 + 4).
    assert score == pytest.approx(1 - 4 / 12)


def test_model_code_needs_args_and_returns_or_shapes():
    score, violations = docs_score([fixture("docs_no_args.py")], model_dirs=MODEL)
    assert rules(violations) == [("D103", "attention"), ("D103", "scatter"), ("D104", "attention"),
                                 ("D104", "scatter")]
    scatter = next(v for v in violations if v.rule == "D103" and v.name == "scatter")
    assert "['experts']" in scatter.message  # names the undocumented parameter
    assert score == pytest.approx(1 - 4 / 17)  # 11 docstring checks + 3 type-hint + 3 naming checks


def test_shapes_stand_in_for_args_only_in_model_code():
    """Outside tf_impl/ and reference/, a complex function needs Args and Returns sections: stated shapes
    are the model code's convention, not the standard's sections."""
    _, violations = docs_score([fixture("docs_clean.py")], model_dirs=())
    assert rules(violations) == [("D103", "apply_rope"), ("D104", "apply_rope")]
    assert "no Args section for parameters ['x', 'cos', 'sin']" in violations[0].message


def test_type_hints_and_naming_conventions():
    score, violations = docs_score([fixture("docs_hints_names.py")], model_dirs=())
    assert rules(violations) == [("D106", "route"), ("D107", "expert_pool"), ("D107", "splitTokens")]
    by_rule = {v.rule + v.name: v.message for v in violations}
    assert by_rule["D106route"] == "no type hint for ['x', 'the return']"
    assert "['splitTokens', 'nTokens']" in by_rule["D107splitTokens"]


def test_stale_parameter_in_args_section_is_caught():
    score, violations = docs_score([fixture("docs_stale.py")], model_dirs=())
    assert rules(violations) == [("D105", "load")]
    assert "checkpoint_dir" in violations[0].message
    assert str(violations[0]).startswith(os.path.join("tests", "qa", "fixtures", "docs_stale.py") + ":4: D105 load")


def test_documented_args_parses_google_style_with_types_and_stars():
    doc = "Do it.\n\nArgs:\n    x (Tensor): input\n        of shape [B, T].\n    **kwargs: extra\n\nReturns:\n    y"
    assert documented_args(doc) == ["x", "kwargs"]
    assert documented_args("No sections here.") == []


def test_directory_walk_scores_all_fixtures_together():
    score, violations = docs_score([FIXTURES], model_dirs=MODEL)
    assert 0.0 < score < 1.0
    assert {v.path.split(os.sep)[-1] for v in violations} == {"docs_missing.py", "docs_no_args.py", "docs_stale.py",
                                                              "docs_hints_names.py"}


def test_missing_path_and_empty_directory_raise(tmp_path):
    with pytest.raises(DocsCheckError, match="does not exist"):
        docs_score([str(tmp_path / "nope")])
    with pytest.raises(DocsCheckError, match="no Python files"):
        docs_score([str(tmp_path)])


def test_unparsable_file_is_a_violation_not_a_crash(tmp_path):
    (tmp_path / "broken.py").write_text("def f(:\n")
    score, violations = docs_score([str(tmp_path)])
    assert score == 0.0 and violations[0].rule == "D000"


def test_dunder_all_limits_the_public_api(tmp_path):
    (tmp_path / "m.py").write_text('"""Doc."""\n__all__ = ["shown"]\n\ndef shown() -> None:\n    """Doc."""\n\n'
                                   'def hidden():\n    pass\n')
    assert docs_score([str(tmp_path)]) == (1.0, [])


def test_project_score_is_a_fraction():
    score, _ = docs_score()
    assert 0.0 <= score <= 1.0


def test_cli_exit_code_follows_min_score(capsys):
    assert main([fixture("docs_clean.py")]) == 0
    assert main([fixture("docs_missing.py"), "--min-score", "0.9"]) == 1
    assert "documentation completeness 66.7%" in capsys.readouterr().out
    assert main(["/nonexistent/path"]) == 2


def test_coverage_percent_reads_pytest_cov_json(tmp_path):
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps({"meta": {"version": "7"}, "files": {},
                                "totals": {"covered_lines": 87, "num_statements": 100, "percent_covered": 87.0}}))
    assert coverage_percent(path) == 87.0


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    ("{not json", "not readable JSON"),
    ('{"files": {}}', "no totals.percent_covered"),
    ('{"totals": {"percent_covered": 140}}', "outside"),
])
def test_coverage_percent_errors_say_what_to_run(tmp_path, content, match):
    path = tmp_path / "coverage.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CoverageError, match=match) as info:
        coverage_percent(path)
    if content != '{"totals": {"percent_covered": 140}}':
        assert "--cov-report=json" in str(info.value)
