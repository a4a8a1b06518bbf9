"""P0.dev_tools: pinned ranges checked against what is installed, and pip check's verdict."""

import importlib.metadata as metadata
import os
import stat

import pytest

from harness.qa.devtools import DevToolsError, check_pins, import_problems, pip_check, pinned_requirements


def _pyproject(tmp_path, *deps):
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname = 'x'\ndependencies = [" + ", ".join(repr(d) for d in deps) + "]\n")
    return path


def test_in_range_out_of_range_and_missing_tools(tmp_path):
    installed = metadata.version("tabulate")
    checks = check_pins(_pyproject(tmp_path, f"tabulate=={installed}", "tabulate<0.1", "no-such-dist-xyz>=1"))
    ok, old, missing = checks
    assert ok.ok and ok.module == "tabulate" and ok.installed == installed
    assert not old.ok and "outside the pinned range <0.1" in old.problem
    assert not missing.ok and "no-such-dist-xyz is not installed" in missing.problem


def test_distribution_and_module_names_differ(tmp_path):
    (check,) = check_pins(_pyproject(tmp_path, "pytest-cov>=1"), import_modules=False)
    assert check.module == "pytest_cov" and check.ok


def test_the_project_pins_are_all_read():
    names = [r.name for r in pinned_requirements()]
    assert {"tensorflow-cpu", "jax", "flax", "numpy", "asv", "pytest", "packaging"} <= set(names)


def test_bad_pyproject_is_named(tmp_path):
    with pytest.raises(DevToolsError, match="does not parse"):
        check_pins(_pyproject(tmp_path, "tabulate>>1"))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(DevToolsError, match="no \\[project\\] dependencies"):
        pinned_requirements(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(DevToolsError, match="project file .*pyproject.toml is not valid TOML"):
        pinned_requirements(tmp_path / "pyproject.toml")
    with pytest.raises(DevToolsError, match="does not exist"):
        pinned_requirements(tmp_path / "none.toml")


def test_pip_check_reports_each_problem(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'foo 1.0 has requirement bar>=2, but you have bar 1.0.'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert pip_check(str(fake)) == ["foo 1.0 has requirement bar>=2, but you have bar 1.0."]
    clean = tmp_path / "clean"
    clean.write_text("#!/bin/sh\necho 'No broken requirements found.'\nexit 0\n")
    clean.chmod(clean.stat().st_mode | stat.S_IEXEC)
    assert pip_check(str(clean)) == []
    with pytest.raises(DevToolsError, match="could not run"):
        pip_check(os.fspath(tmp_path / "missing-python"))


def test_each_import_runs_in_a_fresh_interpreter(tmp_path, monkeypatch):
    """A module that breaks only after another one (locust's gevent patching did, after ssl) must not
    fail the check: each tool is imported alone, as it is used."""
    (tmp_path / "poisons.py").write_text("import builtins\nbuiltins.POISONED = True\n")
    (tmp_path / "victim.py").write_text("import builtins\nassert not getattr(builtins, 'POISONED', False)\n")
    (tmp_path / "broken.py").write_text("raise ImportError('needs libfoo.so')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert import_problems(["poisons", "victim"]) == {}
    assert import_problems(["broken", "no_such_module_xyz"]) == {
        "broken": "ImportError: needs libfoo.so",
        "no_such_module_xyz": "ModuleNotFoundError: No module named 'no_such_module_xyz'",
    }


def test_a_failing_import_is_reported_with_its_requirement(tmp_path, monkeypatch):
    import harness.qa.devtools as devtools

    monkeypatch.setattr(devtools, "import_problems", lambda modules, **_: {"tabulate": "ImportError: boom"})
    (check,) = check_pins(_pyproject(tmp_path, "tabulate>=0.1"))
    assert not check.ok and check.problem.startswith("import tabulate (tabulate ") and "ImportError: boom" in check.problem
