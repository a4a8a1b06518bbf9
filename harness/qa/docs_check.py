"""Cross-phase QA numbers: docstring completeness of the public API, and test coverage.

``docs_score(paths)`` walks the AST of every ``.py`` file under ``paths`` (nothing is imported) and
checks the documentation rules below. The score is the share of checks that pass, so it moves by
one check at a time and an asv ``track_`` benchmark can record it per commit.

Rules: the seed's code documentation standard (section 1.2, ``CodeDocumentationStandards``) as far as
a program can check it: docstrings for classes and methods, ``Args:``/``Returns:`` sections, type
hints for all parameters and returns, and its naming conventions.

- **D100** every non-empty module has a docstring.
- **D101** every public class has a docstring ("class_docstring: Required").
- **D102** every public function and method has a docstring. Public means: no leading underscore,
  not nested in a function, in a public class, and listed in ``__all__`` when the module has one.
  Dunder methods are exempt: ``__init__``'s arguments belong in the class docstring.
- **D103** a public function's docstring documents its parameters with an ``Args:`` section naming
  each one ("method_docstring: Required with Args, Returns, and description"). In model code (files
  under ``tf_impl/`` or ``reference/``) stating shapes ("of shape [B, T, D]", "[E]") may stand in
  for the ``Args:`` section, as the project's style asks shapes of model code.
- **D104** a public function that returns a value has a ``Returns:``/``Yields:`` section (in model
  code, a stated shape will do).
- **D105** an ``Args:`` section names no parameter the signature lacks (stale docs).
- **D106** a public function annotates every parameter and its return ("type_hints: Required for all
  public methods").
- **D107** names follow the standard's conventions: classes PascalCase, functions, methods and their
  parameters snake_case.

D103 and D104 apply only to functions with at least two parameters besides ``self``/``cls``, or a
body longer than ten lines (the seed standard's "complex_function_docstring: Required for functions
> 10 lines"). A one-parameter helper such as ``rms_norm(x)`` or a property is documented by its
one-line docstring and type hints; demanding an ``Args:`` block there would reward boilerplate, not
information. Not checked, because no program can: whether a description is clear, and the
standard's "key features" of a class.

``coverage_percent(path)`` reads the total of a pytest-cov JSON report (``--cov-report=json``).

CLI (``python -m harness docs``): ``docs [PATH ...] [--min-score 0.9] [--coverage JSON]``; exits 1
when the score is below ``--min-score`` (the seed's "documentation completeness > 90%").
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PATHS = ("tf_impl", "reference", "harness")
MODEL_DIRS = ("tf_impl", "reference")
COMPLEX_BODY_LINES = 10
MIN_SCORE = 0.9

_SKIP_DIRS = {"__pycache__", ".venv", ".git", ".asv", "node_modules"}
_SECTION_RE = re.compile(r"^(\s*)(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?|Attributes)\s*:\s*$")
_SECTION_ALIASES = {"Arguments": "Args", "Parameters": "Args", "Return": "Returns"}
_ARG_RE = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)\s*(\([^)]*\))?\s*:")
_PASCAL_RE = re.compile(r"_?[A-Z][A-Za-z0-9]*")
_SNAKE_RE = re.compile(r"_*[a-z][a-z0-9_]*")
_SHAPE_RE = re.compile(r"of shape|\[[A-Za-z0-9_]+(?:\s*[-+*/]\s*\w+)*(?:\s*,\s*(?:\.\.\.|[A-Za-z0-9_]+(?:\s*[-+*/]\s*\w+)*))*\]")


class DocsCheckError(ValueError):
    """A path that does not exist or holds no Python files."""


class CoverageError(ValueError):
    """A coverage report that is missing, unreadable or not pytest-cov's JSON format."""


@dataclass(frozen=True)
class Violation:
    """One failed check: where, which rule, which object, and what is wrong."""

    path: str
    line: int
    rule: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule} {self.name}: {self.message}"


def _sections(doc: str) -> dict[str, list[str]]:
    """Google-style sections of a cleaned docstring: {'Args': [lines...], 'Returns': [...]}."""
    out: dict[str, list[str]] = {}
    current, indent = None, 0
    for line in doc.splitlines():
        m = _SECTION_RE.match(line)
        if m:
            current, indent = _SECTION_ALIASES.get(m.group(2), m.group(2)), len(m.group(1))
            out.setdefault(current, [])
            continue
        if current is None:
            continue
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            current = None
            continue
        out[current].append(line)
    return out


def documented_args(doc: str) -> list[str]:
    """Parameter names listed in the ``Args:`` section of ``doc`` (``*args``/``**kwargs`` without stars).

    Args:
        doc: a cleaned docstring (``ast.get_docstring`` output).

    Returns:
        the names in order of appearance; [] when there is no Args section.
    """
    lines = [l for l in _sections(doc).get("Args", []) if l.strip()]
    if not lines:
        return []
    entry_indent = min(len(l) - len(l.lstrip()) for l in lines)
    names = []
    for line in lines:
        if len(line) - len(line.lstrip()) == entry_indent:
            m = _ARG_RE.match(line.strip())
            if m:
                names.append(m.group(1).lstrip("*"))
    return names


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> list[str]:
    a = node.args
    names = [p.arg for p in [*a.posonlyargs, *a.args]]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if in_class and not is_static and names and names[0] in ("self", "cls"):
        names = names[1:]
    names += [p.arg for p in a.kwonlyargs]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return names


def _returns_value(node: ast.AST) -> bool:
    """True when the function body (nested defs excluded) returns a non-None value or yields."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(child, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(child, ast.Return) and child.value is not None:
            if not (isinstance(child.value, ast.Constant) and child.value.value is None):
                return True
        stack.extend(ast.iter_child_nodes(child))
    return False


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
    if not body:
        return 0
    return (node.end_lineno or body[-1].lineno) - body[0].lineno + 1


def _is_overload_or_setter(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in node.decorator_list:
        if isinstance(d, ast.Name) and d.id == "overload":
            return True
        if isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter"):
            return True
    return False


def _module_all(tree: ast.Module) -> set[str] | None:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            try:
                return set(ast.literal_eval(stmt.value))
            except ValueError:
                return None
    return None


class _FileChecker:
    """The checks of one file: counts every check made and collects the failures."""

    def __init__(self, path: str, display: str, model_code: bool):
        self.path, self.display, self.model_code = path, display, model_code
        self.checks = 0
        self.violations: list[Violation] = []

    def check(self, ok: bool, line: int, rule: str, name: str, message: str) -> None:
        self.checks += 1
        if not ok:
            self.violations.append(Violation(self.display, line, rule, name, message))

    def run(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        if not source.strip():
            return
        try:
            tree = ast.parse(source, filename=self.path)
        except SyntaxError as e:
            self.check(False, e.lineno or 1, "D000", os.path.basename(self.path), f"cannot parse: {e.msg}")
            return
        module = os.path.splitext(os.path.basename(self.path))[0]
        self.check(ast.get_docstring(tree) is not None, 1, "D100", module, "module has no docstring")
        exported = _module_all(tree)
        for stmt in tree.body:
            name = getattr(stmt, "name", None)
            if name is None or name.startswith("_") or (exported is not None and name not in exported):
                continue
            self._visit(stmt, prefix="", in_class=False)

    def _visit(self, node: ast.stmt, prefix: str, in_class: bool) -> None:
        qualname = prefix + node.name
        if isinstance(node, ast.ClassDef):
            self.check(ast.get_docstring(node) is not None, node.lineno, "D101", qualname, "class has no docstring")
            self.check(bool(_PASCAL_RE.fullmatch(node.name)), node.lineno, "D107", qualname,
                       "class name is not PascalCase")
            for member in node.body:
                name = getattr(member, "name", None)
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not name.startswith("_"):
                    self._visit(member, prefix=qualname + ".", in_class=True)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_overload_or_setter(node):
            self._function(node, qualname, in_class)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, in_class: bool) -> None:
        params = _params(node, in_class)
        annotated = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                                     node.args.vararg, node.args.kwarg) if a is not None and a.annotation is not None}
        unhinted = [p for p in params if p not in annotated] + (["the return"] if node.returns is None else [])
        self.check(not unhinted, node.lineno, "D106", qualname, f"no type hint for {unhinted}")
        badly_named = [n for n in (node.name, *params) if not _SNAKE_RE.fullmatch(n)]
        self.check(not badly_named, node.lineno, "D107", qualname, f"names not snake_case: {badly_named}")
        doc = ast.get_docstring(node)
        self.check(doc is not None, node.lineno, "D102", qualname, "function has no docstring")
        if doc is None:
            return
        listed = documented_args(doc)
        if listed:
            stale = [n for n in listed if n not in params]
            self.check(not stale, node.lineno, "D105", qualname,
                       f"Args section names {stale}, which the signature {params} lacks")
        if len(params) < 2 and _body_lines(node) <= COMPLEX_BODY_LINES:
            return
        has_shape = self.model_code and bool(_SHAPE_RE.search(doc))
        if params:
            if listed:
                missing = [p for p in params if p not in listed]
                self.check(not missing, node.lineno, "D103", qualname, f"Args section does not document {missing}")
            else:
                self.check(has_shape, node.lineno, "D103", qualname,
                           f"no Args section{' and no shapes' if self.model_code else ''} for parameters {params}")
        if _returns_value(node):
            sections = _sections(doc)
            self.check("Returns" in sections or "Yields" in sections or has_shape, node.lineno, "D104", qualname,
                       "returns a value but has no Returns section" + (" and no shapes" if self.model_code else ""))


def _python_files(paths: Iterable[str]) -> Iterator[str]:
    for path in paths:
        if not os.path.exists(path):
            raise DocsCheckError(f"{path} does not exist")
        if os.path.isfile(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))


def docs_report(paths: Sequence[str], model_dirs: Sequence[str] = MODEL_DIRS) -> tuple[int, list[Violation]]:
    """Count the documentation checks over ``paths`` and collect the failures.

    Args:
        paths: files or directories (walked recursively for ``*.py``).
        model_dirs: directory names whose files count as model code (shapes may stand in for Args/Returns).

    Returns:
        (number of checks made, violations sorted by path and line).
    """
    files = list(_python_files(paths))
    if not files:
        raise DocsCheckError(f"no Python files under {list(paths)}")
    checks, violations = 0, []
    for path in files:
        parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
        display = os.path.relpath(path, REPO_ROOT) if os.path.abspath(path).startswith(REPO_ROOT) else path
        checker = _FileChecker(path, display, model_code=any(d in parts for d in model_dirs))
        checker.run()
        checks += checker.checks
        violations += checker.violations
    return checks, sorted(violations, key=lambda v: (v.path, v.line, v.rule))


def docs_score(paths: Sequence[str] = (), model_dirs: Sequence[str] = MODEL_DIRS) -> tuple[float, list[Violation]]:
    """Documentation completeness in [0, 1]: the share of passed checks over ``paths``.

    Args:
        paths: files or directories; () means the project's tf_impl/, reference/ and harness/
            (those that exist).
        model_dirs: directory names whose files count as model code (shapes may stand in for Args/Returns).

    Returns:
        (score, violations). The score is 1.0 when there is nothing to check (only empty files).
    """
    if not paths:
        paths = [p for p in (os.path.join(REPO_ROOT, d) for d in DEFAULT_PATHS) if os.path.isdir(p)]
    checks, violations = docs_report(paths, model_dirs)
    return (1.0 - len(violations) / checks if checks else 1.0), violations


def coverage_percent(coverage_json_path: str | os.PathLike) -> float:
    """Total line coverage in percent from a pytest-cov JSON report (``--cov-report=json:PATH``).

    Args:
        coverage_json_path: the report coverage.py wrote.

    Returns:
        ``totals.percent_covered`` as a float in [0, 100].
    """
    path = os.fspath(coverage_json_path)
    hint = "run: pytest --cov=harness --cov=tf_impl --cov=reference --cov-report=json:" + path
    if not os.path.exists(path):
        raise CoverageError(f"coverage report {path} does not exist; {hint}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CoverageError(f"coverage report {path} is not readable JSON ({e}); {hint}") from None
    try:
        value = float(data["totals"]["percent_covered"])
    except (TypeError, KeyError, ValueError):
        raise CoverageError(f"coverage report {path} has no totals.percent_covered; is it coverage.py's JSON format? {hint}") from None
    if not 0.0 <= value <= 100.0:
        raise CoverageError(f"coverage report {path} says {value}% covered, outside [0, 100]")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """CLI ``python -m harness docs``; returns 1 when the score is below --min-score, 2 on bad input.

    Args:
        argv: the options after ``docs`` (paths, ``--min-score``, ``--limit``, ``--coverage``); None reads
            ``sys.argv[1:]``.

    Returns:
        the exit code: 0 when the score reaches ``--min-score``, 1 below it, 2 for a bad path or coverage report.
    """
    parser = argparse.ArgumentParser(prog="python -m harness docs", description="Docstring completeness of the public API.")
    parser.add_argument("paths", nargs="*", help=f"files or directories (default: {' '.join(DEFAULT_PATHS)})")
    parser.add_argument("--min-score", type=float, default=MIN_SCORE, help=f"fail below this score (default {MIN_SCORE})")
    parser.add_argument("--limit", type=int, default=50, help="violations to print (default 50)")
    parser.add_argument("--coverage", metavar="JSON", help="also print the coverage total of this pytest-cov JSON report")
    args = parser.parse_args(argv)
    try:
        score, violations = docs_score(args.paths)
        coverage = coverage_percent(args.coverage) if args.coverage else None
    except (DocsCheckError, CoverageError) as e:
        print(f"docs: {e}", file=sys.stderr)
        return 2
    for v in violations[: args.limit]:
        print(v)
    if len(violations) > args.limit:
        print(f"... and {len(violations) - args.limit} more")
    by_rule: dict[str, int] = {}
    for v in violations:
        by_rule[v.rule] = by_rule.get(v.rule, 0) + 1
    counts = ", ".join(f"{rule}: {n}" for rule, n in sorted(by_rule.items())) or "none"
    print(f"documentation completeness {100 * score:.1f}% (minimum {100 * args.min_score:.0f}%); violations by rule: {counts}")
    if coverage is not None:
        print(f"test coverage {coverage:.1f}%")
    return 0 if score >= args.min_score else 1
