"""``python -m harness publish``/``run``'s publishing step: loud failure when asv's pages would need the internet,
and a warning while venv-path-keyed results are left unmigrated."""

import shutil

from harness import cli
from harness.reports import publish
from tests.harness.conftest import MACHINE


def _paths(tmp_path, results):
    return cli.Paths(tmp_path, tmp_path / "asv.conf.json", results, tmp_path / "html")


def _fake_asv_publish(tmp_path, template):
    def fake(paths, *argv, capture=False):
        assert argv == ("publish",)
        shutil.copytree(template.parent, paths.html_dir, dirs_exist_ok=True)
        return 0
    return fake


def test_publish_fails_loudly_when_asv_template_loads_something_unpinned(tmp_path, tmp_results, monkeypatch, capsys):
    changed = tmp_path / "asv-www" / "index.html"
    shutil.copytree(publish.asv_template().parent, changed.parent)
    changed.write_text(changed.read_text().replace("</head>", '<script src="https://cdn.example/x.js"></script></head>'))
    monkeypatch.setattr(publish, "asv_template", lambda: changed)          # as if asv were upgraded
    monkeypatch.setattr(cli, "_asv", _fake_asv_publish(tmp_path, changed))
    assert cli._publish(_paths(tmp_path, tmp_results)) == 1
    err = capsys.readouterr().err
    assert "error: asv" in err and "https://cdn.example/x.js (not pinned)" in err


def test_publish_localizes_and_warns_about_unmigrated_results(tmp_path, tmp_results, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_asv", _fake_asv_publish(tmp_path, publish.asv_template()))
    assert cli._publish(_paths(tmp_path, tmp_results)) == 0
    assert "python -m harness migrate" in capsys.readouterr().err      # the fixture results are path-keyed
    publish.check_offline(tmp_path / "html")


def test_publish_command_writes_every_page(tmp_path, tmp_results, monkeypatch):
    monkeypatch.setattr(cli, "_asv", _fake_asv_publish(tmp_path, publish.asv_template()))
    argv = ["publish", "--config", str(tmp_path / "asv.conf.json"), "--results-dir", str(tmp_results),
            "--machine", MACHINE]
    assert cli.main(argv) == 0
    html = tmp_path / ".asv" / "html"                # asv's default html_dir beside the (absent) config
    assert (html / "roadmap.html").exists() and len(list((html / "criteria").glob("*.html"))) > 10
    assert 'href="roadmap.html"' in (html / "index.html").read_text()
    publish.check_offline(html)
