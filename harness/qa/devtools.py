"""Are the development tools operational? The pinned stack imports at its pinned versions, and pip agrees.

P0.dev_tools ("All development tools operational") is measured on the interpreter that runs the
benchmarks, the environment the project's numbers come from:

* ``check_pins``: every requirement pinned in ``pyproject.toml`` (``[project] dependencies``) is
  installed at a version inside its pinned range and its top-level module imports in a fresh
  interpreter of its own (a tool such as locust monkey-patches the standard library when imported, so
  importing every tool into one process tests the mix, not the tools; each is used on its own);
* ``pip_check``: ``python -m pip check`` finds no broken or conflicting requirement.

Version ranges are evaluated with ``packaging`` (the library pip itself uses), so ``>=2.21,<2.22``
means exactly what pip means by it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from harness.data_files import read_toml

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class DevToolsError(ValueError):
    """A pyproject that cannot be read or holds a requirement that cannot be parsed."""


@dataclass(frozen=True)
class ToolCheck:
    """One pinned requirement on this interpreter.

    Attributes:
        requirement: the requirement as pinned, e.g. ``tensorflow-cpu>=2.21,<2.22``.
        installed: the installed version, or None when the distribution is absent.
        module: the top-level module imported to prove it works ("" when none was found).
        problem: why the tool is not operational; "" when it is.
    """

    requirement: str
    installed: str | None
    module: str
    problem: str

    @property
    def ok(self) -> bool:
        """True when the tool is installed in range and imports."""
        return not self.problem


def pinned_requirements(pyproject: str | os.PathLike = PYPROJECT) -> list[Requirement]:
    """The ``[project] dependencies`` of a pyproject file as parsed requirements.

    Args:
        pyproject: the project file (the checkout's ``pyproject.toml`` by default).

    Returns:
        the requirements, in file order.

    Raises:
        DevToolsError: the file is missing, not TOML, or a requirement does not parse.
    """
    path = Path(pyproject)
    data = read_toml(path, DevToolsError, "project file")
    deps = data.get("project", {}).get("dependencies")
    if not isinstance(deps, list) or not deps:
        raise DevToolsError(f"{path} has no [project] dependencies list to check")
    out = []
    for text in deps:
        try:
            out.append(Requirement(text))
        except InvalidRequirement as exc:
            raise DevToolsError(f"{path}: requirement {text!r} does not parse: {exc}") from None
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _import_name(dist: str, modules_of: dict[str, list[str]]) -> str:
    """The top-level module of distribution ``dist``: the one named like it, else the one its name starts
    with (``tensorflow`` for ``tensorflow-cpu``), else its first public module."""
    mods = sorted(m for m in modules_of.get(_norm(dist), []) if not m.startswith("_"))
    for m in mods:
        if _norm(m) == _norm(dist):
            return m
    for m in mods:
        if _norm(dist).startswith(_norm(m)):
            return m
    return mods[0] if mods else ""


def check_pins(pyproject: str | os.PathLike = PYPROJECT, import_modules: bool = True) -> list[ToolCheck]:
    """Check every pinned requirement of ``pyproject`` on this interpreter.

    Args:
        pyproject: the project file holding the pins.
        import_modules: also import each tool's top-level module, each in a fresh interpreter
            (TensorFlow and JAX take seconds).

    Returns:
        one ToolCheck per requirement, in pyproject order.
    """
    modules_of: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(_norm(dist), []).append(module)
    out = []
    for req in pinned_requirements(pyproject):
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(ToolCheck(str(req), None, "", f"{req.name} is not installed; run `pip install -e .`"))
            continue
        try:
            in_range = req.specifier.contains(Version(installed), prereleases=True)
        except InvalidVersion:
            in_range = False
        module = _import_name(req.name, modules_of)
        problem = "" if in_range else f"{req.name} {installed} is outside the pinned range {req.specifier}"
        if not problem and not module:
            problem = f"{req.name} {installed} installs no importable top-level module"
        out.append(ToolCheck(str(req), installed, module, problem))
    if import_modules:
        failures = import_problems([c.module for c in out if c.ok])
        out = [replace(c, problem=f"import {c.module} ({Requirement(c.requirement).name} {c.installed}) fails: "
                                  f"{failures[c.module]}") if c.ok and c.module in failures else c
               for c in out]
    return out


def import_problems(modules: list[str], python: str = sys.executable, timeout: float = 120.0,
                    workers: int = 2) -> dict[str, str]:
    """Import each module in a fresh interpreter of its own; map each one that fails to why.

    Args:
        modules: top-level module names.
        python: the interpreter to import with (this one by default).
        timeout: seconds one import may take before it counts as failed.
        workers: imports run at once (TensorFlow's alone takes a core for seconds).

    Returns:
        {module: the last line of its error} for the modules that did not import; {} when all did.
    """

    def one(module: str) -> tuple[str, str]:
        try:
            proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return module, f"import did not finish within {timeout:.0f} s"
        except OSError as exc:
            return module, f"{python} could not run: {exc}"
        if proc.returncode == 0:
            return module, ""
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return module, lines[-1].strip() if lines else f"exit status {proc.returncode}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return {m: why for m, why in pool.map(one, modules) if why}


def pip_check(python: str = sys.executable, timeout: float = 120.0) -> list[str]:
    """Problems ``python -m pip check`` reports for an interpreter's environment.

    Args:
        python: the interpreter whose environment to check (this one by default).
        timeout: seconds before pip is given up on.

    Returns:
        one line per problem; [] when the environment is consistent.

    Raises:
        DevToolsError: pip cannot run at all (then the tools are not operational either; the caller
            decides how to report it).
    """
    try:
        proc = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevToolsError(f"`{python} -m pip check` could not run: {exc}") from None
    if proc.returncode == 0:
        return []
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines or [f"pip check exited {proc.returncode} without output"]
