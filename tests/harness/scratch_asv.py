"""A scratch asv project whose history is recorded from two checkout folders with two venvs, as users do.

``build(tmp)`` makes a git repo holding ``asv.conf.json`` (the project's, with its plugins) and one generated
benchmark module that provides a real bound benchmark of ``harness.roadmap.criteria`` (so the roadmap and criterion
pages have data), records commits 1 and 2 from folder ``a`` with venv ``a/.venv``, clones the repo to folder
``b`` (the results travel with it, as committed results do), records commit 3 there with venv ``b/.venv``,
and runs ``python -m harness publish``. Each venv is a bare venv that sees this interpreter's packages, so
the two differ only in their paths, which is exactly what used to split the history.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from dataclasses import dataclass
from pathlib import Path

from harness.roadmap import suite
from harness.roadmap.criteria import BINDINGS, Check

REPO = Path(__file__).resolve().parents[2]
MACHINE = "harness-host"
PREFERRED = "bench_kvcache.KVCache.track_reduction_vs_mha"


@dataclass(frozen=True)
class Scratch:
    """Where the scratch history lives and what it recorded."""

    a: Path
    b: Path
    commits: tuple[str, ...]          # oldest first; 1 and 2 recorded in a, 3 in b
    criterion: str
    check: Check
    values: tuple[float, ...]         # the check's value at each commit

    @property
    def html(self) -> Path:
        """The published html folder (in b)."""
        return self.b / ".asv" / "html"

    @property
    def results(self) -> Path:
        """The results folder holding all three commits (in b)."""
        return self.b / ".asv" / "results"


def pick_check() -> tuple[str, Check]:
    """A gating check on a parameterised track_ benchmark, preferably the MLA cache reduction."""
    candidates = [(cid, c) for cid, b in BINDINGS.items() if b.checks for c in b.checks
                  if c.gate and c.params and ".track_" in c.benchmark]
    assert candidates, "harness.roadmap.criteria binds no parameterised track_ benchmark; the HTML tests need one"
    return next(((cid, c) for cid, c in candidates if c.benchmark == PREFERRED), candidates[0])


def _benchmark_source(check: Check) -> str:
    module, cls, method = check.benchmark.split(".")
    spec = suite.discover()[check.benchmark]   # asv's values are repr() strings: source text as they stand
    params = "[" + ", ".join("[" + ", ".join(values) + "]" for values in spec.params) + "]"
    return textwrap.dedent(f'''\
        """Scratch stand-in for {check.benchmark}: returns the value values.json holds for its parameters."""
        import json
        from pathlib import Path


        class {cls}:
            params = {params}
            param_names = {list(spec.param_names)!r}
            version = "1"

            def {method}(self, *args):
                values = json.loads((Path(__file__).parent / "values.json").read_text())
                return values.get(repr(args), 0.5)

            {method}.unit = {spec.unit!r}
        ''')


def _venv(path: Path) -> Path:
    """A bare venv at ``path`` whose interpreter also sees this interpreter's site-packages."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    site = Path(sysconfig.get_paths(vars={"base": str(path), "platbase": str(path)})["purelib"])
    (site / "harness-tests.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return path / "bin" / "python"


def _git(root: Path, *argv: str) -> str:
    return subprocess.check_output(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=root,
                                   text=True).strip()


def _commit(root: Path, check: Check, value: float, message: str) -> str:
    key = repr(tuple(v for _, v in check.params))
    (root / "benchmarks" / "values.json").write_text(json.dumps({key: value}))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", message)
    return _git(root, "rev-parse", "HEAD")


def asv(root: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run asv (this interpreter's) on ``root``'s config; raises with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "asv", *argv, "--config", str(root / "asv.conf.json")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise AssertionError(f"asv {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def record(root: Path, python: Path, sha: str) -> None:
    """``asv run`` of commit ``sha`` in ``root`` with interpreter ``python``, as ``python -m harness run`` does."""
    asv(root, "machine", "--yes", "--machine", MACHINE)
    asv(root, "run", "-E", f"existing-stable:{python}", "--set-commit-hash", sha, "--machine", MACHINE, "--quick")


def build(tmp: Path) -> Scratch:
    """Record the three-commit, two-folder history and publish it (see the module docstring)."""
    criterion, check = pick_check()
    lo, hi = check.threshold * 0.9, check.threshold * 1.02   # values either side of the threshold
    values = (lo, hi, hi * 1.01) if check.comparator.value in (">", ">=") else (hi, lo, lo * 0.99)
    a, b = tmp / "a", tmp / "elsewhere" / "b"
    (a / "benchmarks").mkdir(parents=True)
    shutil.copy(REPO / "asv.conf.json", a / "asv.conf.json")
    (a / "benchmarks" / "__init__.py").write_text("")
    (a / "benchmarks" / f"{check.benchmark.split('.')[0]}.py").write_text(_benchmark_source(check))
    (a / ".gitignore").write_text(".venv/\n.asv/env/\n.asv/html/\n")
    _git(tmp, "init", "-q", "-b", "main", str(a))
    py_a = _venv(a / ".venv")
    commits = [_commit(a, check, values[0], "one")]
    record(a, py_a, commits[0])
    commits.append(_commit(a, check, values[1], "two"))
    record(a, py_a, commits[1])
    _git(a, "add", "-A")
    _git(a, "commit", "-qm", "recorded results")      # the results travel with the repo
    _git(tmp, "clone", "-q", str(a), str(b))
    py_b = _venv(b / ".venv")
    commits.append(_commit(b, check, values[2], "three"))
    record(b, py_b, commits[2])
    proc = subprocess.run([sys.executable, "-m", "harness", "publish", "--config", str(b / "asv.conf.json")],
                          cwd=b, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise AssertionError(f"harness publish exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return Scratch(a, b, tuple(commits), criterion, check, values)
