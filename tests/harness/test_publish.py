"""Offline pages: the pinned libraries (harness/reports/www/vendor.toml) against asv's template, and the rewrite."""

import hashlib
import shutil

import pytest

from harness.reports import publish


@pytest.fixture(scope="module")
def manifest():
    return publish.load_manifest()


def test_vendored_files_are_intact_and_licensed(manifest):
    publish.verify_vendor(manifest)
    for asset in manifest.assets:
        folder = publish.VENDOR / asset.file.split("/")[0]
        assert list(folder.glob("LICENSE*")) or "MIT" in (publish.VENDOR / asset.file).read_text()[:400], folder


def test_identical_copies_match_the_cdn_integrity_hash(manifest):
    identical = [a for a in manifest.assets if a.identical]
    assert len(identical) >= 6
    for asset in identical:
        algorithm = asset.cdn_integrity.split("-", 1)[0]
        assert publish.sri((publish.VENDOR / asset.file).read_bytes(), algorithm) == asset.cdn_integrity, asset.file


def test_installed_asv_template_loads_exactly_the_pinned_urls(manifest):
    publish.check_template(publish.asv_template().read_text(), manifest)


@pytest.mark.parametrize("change, named", [
    (lambda t: t.replace("</head>", '<script src="https://cdn.example/new-lib.js"></script></head>'),
     "loads https://cdn.example/new-lib.js (not pinned)"),
    (lambda t: t.replace("https://code.jquery.com/jquery-3.3.1.min.js", "https://code.jquery.com/jquery-3.7.1.min.js"),
     "no longer loads https://code.jquery.com/jquery-3.3.1.min.js"),
    (lambda t: t.replace("sha256-FgpCb/KJQlLNfOu91ta32o/NMZxltwRo8QtmkMRdAu8=", "sha256-changed"),
     "with integrity 'sha256-changed'"),
])
def test_a_changed_asv_template_fails_loudly(manifest, change, named):
    template = publish.asv_template().read_text()
    with pytest.raises(publish.OfflineError) as err:
        publish.check_template(change(template), manifest)
    assert named in str(err.value) and "vendor.toml" in str(err.value) and "npm pack" in str(err.value)


def test_localize_points_asv_index_at_local_copies(tmp_path, manifest):
    shutil.copytree(publish.asv_template().parent, tmp_path / "html")    # what asv publish copies
    index = tmp_path / "html" / "index.html"
    assert publish.external_loads(index.read_text())                     # the CDN loads we start from
    publish.localize(tmp_path / "html")
    text = index.read_text()
    assert publish.external_loads(text) == {}
    for asset in manifest.assets:
        assert f"vendor/{asset.file}" in text
    for rel, sha in manifest.files:
        assert hashlib.sha256((tmp_path / "html" / "vendor" / rel).read_bytes()).hexdigest() == sha
    assert "https://github.com/airspeed-velocity/asv/" in text            # plain links stay
    publish.localize(tmp_path / "html")                                   # idempotent
    assert index.read_text() == text


def test_check_offline_finds_any_external_load(tmp_path):
    (tmp_path / "ok.html").write_text('<a href="https://example.org">a link is fine</a><img src="data:image/png;base64,AA">')
    publish.check_offline(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.html").write_text('<link rel="stylesheet" href="//fonts.example/x.css">')
    with pytest.raises(publish.OfflineError, match="//fonts.example/x.css"):
        publish.check_offline(tmp_path)


def test_damaged_vendor_file_is_refused(tmp_path, manifest):
    shutil.copytree(publish.VENDOR, tmp_path / "vendor")
    (tmp_path / "vendor" / manifest.assets[0].file).write_text("tampered")
    with pytest.raises(publish.OfflineError, match="does not match its pinned sha256"):
        publish.verify_vendor(manifest, tmp_path / "vendor")
