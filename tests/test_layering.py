"""The package layering, checked on the source (AST), not by convention.

- ``tf_impl/`` and ``reference/`` import from ``harness`` only the framework-free contract
  (``harness.config``, ``harness.state``, ``harness.io``), and never each other, ``benchmarks`` or
  ``experiments``: they are two independent implementations at the bottom of the stack.
- No module reaches into another package's private members: no ``from pkg.mod import _name`` across
  packages (nor between two modules of ``STRICT_PACKAGES``), no ``mod._name`` on an imported module of another package, and no ``obj._name`` on an
  object whose private attribute only another package defines (e.g. ``model._trunk`` from
  ``tf_impl/speculative.py`` would be fine, from ``benchmarks/`` it is not).
- No source file of the model and experiment packages is over ~500 lines (STYLE.md).

Each checker is run once on a snippet that breaks its rule, so a checker that silently finds nothing
cannot pass.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tf_impl", "reference", "benchmarks", "harness", "experiments")
MODEL_PACKAGES = ("tf_impl", "reference")
CONTRACT = {"harness.config", "harness.state", "harness.io"}
MAX_LINES = 500
# packages where even a module of the same package may not import another module's private names
# (harness is left out until its own restructuring splits the modules that share helpers today)
STRICT_PACKAGES = ("tf_impl", "reference", "benchmarks", "experiments")


def _sources(packages=PACKAGES) -> dict[str, tuple[str, ast.Module]]:
    """``{"pkg/mod.py": (package, tree)}`` for every Python file of ``packages``."""
    out = {}
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[str(path.relative_to(ROOT))] = (pkg, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (lazy imports inside functions included), as dotted names.

    ``from harness import config`` counts as ``harness.config``; ``from harness.config import X`` as
    ``harness.config``.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module in PACKAGES:  # ``from harness import config``: the names are modules
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def layering_violations(files: dict[str, tuple[str, ast.Module]]) -> list[str]:
    """Imports from a model package of anything above it, or of harness beyond the contract."""
    bad = []
    for name, (pkg, tree) in files.items():
        if pkg not in MODEL_PACKAGES:
            continue
        for line, module in _imported_modules(tree):
            top = module.split(".")[0]
            if top == "harness" and not any(module == c or module.startswith(c + ".") for c in CONTRACT):
                bad.append(f"{name}:{line} imports {module} (only {sorted(CONTRACT)} of harness)")
            elif top in PACKAGES and top not in ("harness", pkg):
                bad.append(f"{name}:{line} imports {module} ({pkg} is independent of {top})")
    return bad


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(files: dict[str, tuple[str, ast.Module]]) -> dict[str, set[str]]:
    """Per package, every name it defines: functions, classes, assigned attributes and variables, arguments."""
    defined = collections.defaultdict(set)
    for pkg, tree in files.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined[pkg].add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined[pkg].add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined[pkg].add(node.id)
            elif isinstance(node, ast.arg):
                defined[pkg].add(node.arg)
    return defined


def private_access_violations(files: dict[str, tuple[str, ast.Module]]) -> list[str]:
    """Uses of another package's private members (see the module docstring for the three forms)."""
    defined = _defined_names(files)
    bad = []
    for name, (pkg, tree) in files.items():
        modules = {}  # local alias -> imported module of another project package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                top = node.module.split(".")[0]
                for alias in node.names:
                    if top in PACKAGES and _private(alias.name) and (top != pkg or pkg in STRICT_PACKAGES):
                        bad.append(f"{name}:{node.lineno} imports {alias.name} from {node.module}")
                    if top in PACKAGES and top != pkg:
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in PACKAGES and top != pkg:
                        modules[alias.asname or top] = alias.name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Name) and base.id in modules:
                bad.append(f"{name}:{node.lineno} uses {base.id}.{node.attr} of {modules[base.id]}")
            elif node.attr not in defined[pkg]:
                owners = [p for p in PACKAGES if p != pkg and node.attr in defined[p]]
                if owners:
                    bad.append(f"{name}:{node.lineno} uses .{node.attr}, a private member of {'/'.join(owners)}")
    return bad


# ---------------------------------------------------------------------------------------- the repository
def test_model_packages_import_only_the_harness_contract():
    assert layering_violations(_sources()) == []


def test_no_module_reaches_into_another_packages_private_members():
    assert private_access_violations(_sources()) == []


@pytest.mark.parametrize("package", ["tf_impl", "reference", "experiments", "benchmarks"])
def test_source_files_stay_small(package):
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"files over {MAX_LINES} lines (split them by what they do): {long}"


# ---------------------------------------------------------------------------------------- the checkers
def _snippets(**sources: str) -> dict[str, tuple[str, ast.Module]]:
    return {f"{pkg}/x.py": (pkg, ast.parse(src)) for pkg, src in sources.items()}


def test_layering_checker_catches_a_diagnostics_import():
    files = _snippets(tf_impl="from harness.config import ModelConfig\nfrom harness import io\n"
                              "def f():\n    from harness.signals import loss_spike_count\n",
                      reference="import tf_impl.model\n")
    assert layering_violations(files) == [
        "tf_impl/x.py:4 imports harness.signals (only ['harness.config', 'harness.io', 'harness.state'] of harness)",
        "reference/x.py:1 imports tf_impl.model (reference is independent of tf_impl)",
    ]


def test_private_access_checker_catches_all_three_forms():
    files = _snippets(
        tf_impl="class Transformer:\n    def _trunk(self):\n        self._cos = 1\n",
        reference="def _mask(): pass\n",
        experiments="from experiments.balance import _data\n",
        harness="from reference.model import _mask\nimport tf_impl.model as tm\n"
                "def f(model):\n    tm._helper()\n    return model._trunk(), model._cos, model.__class__\n",
    )
    assert sorted(private_access_violations(files)) == sorted([
        "harness/x.py:1 imports _mask from reference.model",
        "experiments/x.py:1 imports _data from experiments.balance",
        "harness/x.py:4 uses tm._helper of tf_impl.model",
        "harness/x.py:5 uses ._trunk, a private member of tf_impl",
        "harness/x.py:5 uses ._cos, a private member of tf_impl",
    ])
