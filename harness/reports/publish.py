"""Offline HTML: point ``asv publish``'s pages at the pinned local copies of the libraries they load.

asv 0.6's ``www/index.html`` loads jQuery, flot, stupidtable, md5 and bootstrap from public CDNs, so
without internet the browser shows asv's error page. ``harness/reports/www/vendor.toml`` pins one local copy per
URL (with its licence, source and hash) under ``harness/reports/www/vendor/``; ``localize`` copies them into the
html folder and rewrites the template's tags to load them. If asv's template loads anything the manifest
does not pin (an asv upgrade), publishing stops with an ``OfflineError`` that names the difference, rather
than publishing pages that silently need the internet.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

WWW = Path(__file__).parent / "www"
VENDOR = WWW / "vendor"
MANIFEST = WWW / "vendor.toml"
VENDOR_DIR_NAME = "vendor"     # under the html folder
LOADING_ATTRS = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
                 "embed": "src", "audio": "src", "video": "src", "object": "data"}


class OfflineError(Exception):
    """The published pages would load something from outside the html folder. The message says what and how to fix."""


@dataclass(frozen=True)
class Asset:
    """One pinned library file: the CDN ``url`` asv's template loads and our local ``file`` (under vendor/)."""

    url: str
    cdn_integrity: str
    file: str
    identical: bool
    source: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """``vendor.toml``: the assets asv's template loads, and the support files they load in turn (fonts)."""

    assets: tuple[Asset, ...]
    support: tuple[tuple[str, str], ...]   # (file, sha256)

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """Every vendored file as (path under vendor/, sha256)."""
        return tuple((a.file, a.sha256) for a in self.assets) + self.support


def load_manifest(path: Path = MANIFEST) -> Manifest:
    """Parse ``vendor.toml`` into a ``Manifest``."""
    data = tomllib.loads(path.read_text())
    return Manifest(tuple(Asset(**a) for a in data["asset"]),
                    tuple((s["file"], s["sha256"]) for s in data.get("support", ())))


class _Loads(html.parser.HTMLParser):
    """Collects (url, attributes) of every tag that makes the browser fetch something (not <a> links)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = LOADING_ATTRS.get(tag)
        values = dict(attrs)
        if attr and values.get(attr):
            self.loads.append((str(values[attr]), values))


def is_external(url: str) -> bool:
    """True for a URL that leaves the html folder: any scheme-qualified or protocol-relative URL except data:."""
    return bool(re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)", url)) and not url.startswith("data:")


def external_loads(page: str) -> dict[str, dict[str, str | None]]:
    """The external URLs a page's tags load, each with the tag's attributes."""
    parser = _Loads()
    parser.feed(page)
    return {url: attrs for url, attrs in parser.loads if is_external(url)}


def asv_template() -> Path:
    """The installed asv's ``www/index.html``, which ``asv publish`` copies into the html folder."""
    import asv
    return Path(asv.__file__).parent / "www" / "index.html"


def check_template(template: str, manifest: Manifest) -> None:
    """Raise OfflineError unless ``template`` loads exactly the manifest's URLs with the manifest's integrity hashes.

    Args:
        template: the HTML text of asv's ``www/index.html`` (see ``asv_template``).
        manifest: the pinned assets of ``vendor.toml``.
    """
    loads = external_loads(template)
    pinned = {a.url: a for a in manifest.assets}
    new, gone = sorted(set(loads) - set(pinned)), sorted(set(pinned) - set(loads))
    changed = sorted(url for url in set(loads) & set(pinned)
                     if loads[url].get("integrity") != pinned[url].cdn_integrity)
    if new or gone or changed:
        import asv
        lines = [f"asv {asv.__version__}'s www/index.html no longer loads what harness/reports/www/vendor.toml pins, so "
                 "the published pages would need the internet:"]
        lines += [f"  loads {u} (not pinned)" for u in new]
        lines += [f"  no longer loads {u} (pinned)" for u in gone]
        lines += [f"  loads {u} with integrity {loads[u].get('integrity')!r}, pinned {pinned[u].cdn_integrity!r}"
                  for u in changed]
        lines.append("Fix: bring each new file from a package registry (e.g. `npm pack NAME@VERSION`) into "
                     "harness/reports/www/vendor/<lib>-<version>/ with its licence, and update vendor.toml; "
                     "or pin asv to the version the manifest was written for (pyproject.toml).")
        raise OfflineError("\n".join(lines))


def sri(data: bytes, algorithm: str) -> str:
    """Subresource-integrity string (``sha256-<base64>``) of ``data``, as in an HTML integrity attribute.

    Args:
        data: the file's bytes.
        algorithm: a ``hashlib`` name that SRI allows: ``"sha256"``, ``"sha384"`` or ``"sha512"``.

    Returns:
        ``"<algorithm>-<base64 digest>"``.
    """
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def verify_vendor(manifest: Manifest, vendor: Path = VENDOR) -> None:
    """Raise OfflineError if a vendored file is missing or its bytes differ from the pinned hash.

    Args:
        manifest: the pinned files and their sha256 hashes (``vendor.toml``).
        vendor: the folder holding the vendored files.
    """
    bad = []
    for rel, sha in manifest.files:
        path = vendor / rel
        if not path.is_file():
            bad.append(f"  {path} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            bad.append(f"  {path} does not match its pinned sha256 {sha}")
    if bad:
        raise OfflineError("vendored web libraries are damaged:\n" + "\n".join(bad)
                           + "\nFix: `git checkout -- harness/reports/www/vendor` (or re-vendor and update vendor.toml)")


def copy_vendor(html_dir: str | Path, manifest: Manifest | None = None) -> Path:
    """Copy the verified vendored files into ``<html_dir>/vendor``, with their licences.

    Args:
        html_dir: the published html folder.
        manifest: the pinned files; None loads ``vendor.toml``.

    Returns:
        the ``<html_dir>/vendor`` folder. Raises OfflineError before copying anything when a vendored file
        is damaged.
    """
    manifest = manifest or load_manifest()
    verify_vendor(manifest)
    dest = Path(html_dir) / VENDOR_DIR_NAME
    for rel, _ in manifest.files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VENDOR / rel, dest / rel)
    for licence in VENDOR.glob("*/*"):
        if licence.name.startswith("LICENSE") or licence.suffix == ".json":
            shutil.copyfile(licence, dest / licence.relative_to(VENDOR))
    return dest


def _local_tag(tag: str, asset: Asset) -> str:
    local = f"{VENDOR_DIR_NAME}/{asset.file}"
    if tag.startswith("<link"):
        return f'<link rel="stylesheet" href="{local}">'
    return f'<script src="{local}" onerror="js_load_failure()">'


def localize_page(page: str, manifest: Manifest) -> str:
    """``page`` with every pinned CDN tag replaced by one loading the local copy (no integrity/crossorigin).

    Args:
        page: the HTML text of a published page.
        manifest: the pinned assets: their CDN URLs and local files.

    Returns:
        the rewritten HTML; tags of URLs the manifest does not pin are left as they are.
    """
    for asset in manifest.assets:
        pattern = re.compile(r'<(?:script|link)\b[^>]*?(?:src|href)="' + re.escape(asset.url) + r'"[^>]*>')
        page = pattern.sub(lambda m, a=asset: _local_tag(m.group(0), a), page)
    return page


def check_offline(html_dir: str | Path) -> None:
    """Raise OfflineError if any page under ``html_dir`` still loads an external URL."""
    leaks = [f"  {page}: {url}" for page in sorted(Path(html_dir).rglob("*.html"))
             for url in external_loads(page.read_text(errors="replace"))]
    if leaks:
        raise OfflineError("published pages load from outside the html folder:\n" + "\n".join(leaks))


def localize(html_dir: str | Path) -> None:
    """Make ``asv publish``'s output in ``html_dir`` work offline (see the module docstring)."""
    html_dir = Path(html_dir)
    manifest = load_manifest()
    index = html_dir / "index.html"
    check_template(asv_template().read_text(), manifest)   # the installed asv's, so a rerun is idempotent
    copy_vendor(html_dir, manifest)
    index.write_text(localize_page(index.read_text(), manifest))
    check_offline(html_dir)
