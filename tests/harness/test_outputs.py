"""Output files named by the user (report --out, progress --out, diagnose --guide) are never overwritten
without --force; the one helper behind all three is ``harness.io.write_output``."""

from __future__ import annotations

import json

import pytest

from harness import roadmap
from harness.cli import main
from harness.io import write_output
from harness.qa import progress, troubleshoot

from .conftest import MACHINE

PRECIOUS = "my notes, not a report\n"


def _report(results_dir, tmp_path, out, *extra):
    config = tmp_path / "asv.conf.json"
    config.write_text('{"version": 1, "html_dir": "html"}')
    return main(["report", "--config", str(config), "--results-dir", str(results_dir), "--machine", MACHINE,
                 "--out", str(out), *extra])


def _progress(tmp_path, out, *extra):
    tasks = tmp_path / "tasks.toml"
    tasks.write_text('schema_version = 1\n[[task]]\nid = "a"\ntitle = "t"\nphase = "phase_6"\n'
                     'status = "done"\npriority = "low"\ndepends_on = []\n')
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text(json.dumps({c.id: "PASS" for c in roadmap.phase_by_id("phase_6").milestone.criteria}))
    return progress.main(["--tasks", str(tasks), "--verdicts", str(verdicts), "--out", str(out), *extra])


def _guide(tmp_path, out, *extra):
    return troubleshoot.main(["--guide", str(out), *extra])


@pytest.mark.parametrize("command", ["report", "progress", "guide"])
def test_existing_output_file_is_refused_without_force_and_replaced_with_it(command, results_dir, tmp_path, capsys):
    out = tmp_path / "mine.md"
    out.write_text(PRECIOUS)
    run = {"report": lambda *x: _report(results_dir, tmp_path, out, *x),
           "progress": lambda *x: _progress(tmp_path, out, *x),
           "guide": lambda *x: _guide(tmp_path, out, *x)}[command]
    assert run() == 2
    assert out.read_text() == PRECIOUS
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert run("--force") == 0
    assert out.read_text() != PRECIOUS and out.read_text().startswith("#")


def test_write_output_creates_directories_and_refuses_directories(tmp_path):
    target = tmp_path / "a" / "b" / "out.md"
    assert write_output(target, "x\n") == target and target.read_text() == "x\n"
    with pytest.raises(FileExistsError, match="--force"):
        write_output(target, "y\n")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_output(tmp_path / "a", "y\n", force=True)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.md"]  # no temporary file left behind
