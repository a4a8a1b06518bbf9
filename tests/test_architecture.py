"""The layering diagram of docs/architecture.md matches the imports, both ways.

The diagram's nodes name module prefixes; every import between two nodes (a module-level or a lazy
``import`` inside a function, or a module named as a string for ``importlib``, as the CLI dispatches its
subcommands) must be an arrow of the diagram, and every arrow must be backed by at least one import. The
arrows form no cycle, and the model packages reach into ``harness`` only through the contract.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
NODE = re.compile(r'^\s*(\w+)\["([^"]+)"\]')
ARROW = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$")
MODULE_NAME = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+$")


def diagram() -> tuple[dict[str, tuple[str, ...]], set[tuple[str, str]]]:
    """(node id -> the module prefixes its label lists, arrows) of the first mermaid block of the doc."""
    text = DOC.read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert block, f"{DOC} has no ```mermaid block"
    nodes, arrows = {}, set()
    for line in block.group(1).splitlines():
        if m := NODE.match(line):
            nodes[m.group(1)] = tuple(p.strip() for p in m.group(2).split(","))
        elif m := ARROW.match(line):
            arrows.add((m.group(1), m.group(2)))
    return nodes, arrows


def packages() -> list[str]:
    """The top-level packages pyproject installs (tf_impl, reference, harness, benchmarks, experiments, ...)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    return sorted({p.split(".")[0] for p in listed} | {"benchmarks"})


def modules() -> dict[str, Path]:
    """Every module of those packages: dotted name -> file."""
    out = {}
    for pkg in packages():
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports: absolute and relative imports anywhere in the file, and string
    constants that are exactly a project module's name (``importlib.import_module`` targets)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            if node.value in known:
                found.add(node.value)
    tops = set(packages())
    return {m for m in found if m.split(".")[0] in tops}


def node_of(module: str, nodes: dict[str, tuple[str, ...]]) -> str | None:
    """The node whose label holds the longest prefix of ``module``; None when no node does."""
    best = max(((len(p), nid) for nid, prefixes in nodes.items() for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    return best[1] if best else None


def edges() -> dict[tuple[str, str], list[str]]:
    """Node -> node import arrows found in the code, each with a few of the imports behind it."""
    nodes, _ = diagram()
    known = modules()
    out: dict[tuple[str, str], list[str]] = {}
    unplaced = []
    for name, path in known.items():
        if name in packages() and not path.read_text().strip():
            continue  # an empty package root holds no code
        src = node_of(name, nodes)
        if src is None:
            unplaced.append(name)
            continue
        for target in imports(name, path, known):
            dst = node_of(target, nodes)
            if dst is None and not (target in packages() and not known[target].read_text().strip()):
                unplaced.append(target)
            elif dst is not None and dst != src:
                out.setdefault((src, dst), []).append(f"{name} -> {target}")
    assert not unplaced, f"modules no node of the diagram in {DOC.name} holds: {sorted(set(unplaced))}"
    return out


def test_every_import_between_layers_is_an_arrow_of_the_diagram():
    _, arrows = diagram()
    missing = {edge: found[:3] for edge, found in edges().items() if edge not in arrows}
    assert not missing, f"imports the diagram of {DOC.name} does not allow (draw the arrow or drop the import): {missing}"


def test_every_arrow_of_the_diagram_is_an_import():
    _, arrows = diagram()
    stale = arrows - set(edges())
    assert not stale, f"arrows of {DOC.name} that no import backs (remove them): {sorted(stale)}"


def test_the_arrows_point_one_way():
    nodes, arrows = diagram()
    assert {a for a, _ in arrows} | {b for _, b in arrows} <= set(nodes), "an arrow names an undefined node"
    order: list[str] = []
    remaining = set(nodes)
    while remaining:
        leaves = {n for n in remaining if not any(a == n and b in remaining for a, b in arrows)}
        assert leaves, f"the diagram has a cycle among {sorted(remaining)}"
        order += sorted(leaves)
        remaining -= leaves


@pytest.mark.parametrize("model", ["tf_impl", "reference"])
def test_models_import_only_the_contract_from_harness(model):
    nodes, arrows = diagram()
    contract = {"harness.config", "harness.state", "harness.io"}
    harness_nodes = {nid for nid, prefixes in nodes.items() if any(p.startswith("harness") for p in prefixes)}
    model_node = node_of(model, nodes)
    reached = {b for a, b in arrows if a == model_node} & harness_nodes
    assert all(set(nodes[n]) <= contract for n in reached), (model, reached)
    known = modules()
    bad = sorted(t for name, path in known.items() if node_of(name, nodes) == model_node
                 for t in imports(name, path, known) if t.startswith("harness") and t not in contract)
    assert not bad, f"{model} imports from harness more than the contract: {bad}"
