"""The import graph keeps its layers: no cycles, and every arrow points down.

``cli/`` -> ``runs/`` (orchestrators) -> engine, samplers, results store, reports -> pure core
(scenario, recorder, capacity maths, planner, generators) -> errors, units. Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("toolkit", "reference_server")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for t in targets:
            while t and t not in known:  # `import toolkit.x.y` names a module; strip attributes
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if w.startswith(v + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_was_read() -> None:
    assert "toolkit.runs.bench" in GRAPH and "toolkit.results" in GRAPH["toolkit.runs.bench"]
    assert "toolkit.engine.driver" in GRAPH["toolkit.runs.bench"]  # a lazy import is an edge
    assert "toolkit.drills.judge" in GRAPH["toolkit.runs.drill"]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _offenders(prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} -> {t}" for m, deps in GRAPH.items() if m.startswith(prefixes)
        for t in deps if t.startswith(forbidden)
    )


PURE = ("toolkit.capacity", "toolkit.generators", "toolkit.scenario", "toolkit.recorder", "toolkit.units",
        "toolkit.thresholds", "toolkit.errors", "toolkit.results", "toolkit.report", "toolkit.engine",
        "toolkit.samplers", "toolkit.corpus", "toolkit.history", "toolkit.gate", "toolkit.drills", "toolkit.nginxconf")


@pytest.mark.parametrize("layer", PURE)
def test_lower_layers_import_no_orchestrator_and_no_cli(layer: str) -> None:
    assert _offenders((layer,), ("toolkit.runs", "toolkit.cli")) == []


def test_orchestrators_do_not_import_the_cli() -> None:
    assert _offenders(("toolkit.runs",), ("toolkit.cli",)) == []


def test_the_server_imports_neither_the_cli_nor_the_orchestrators() -> None:
    assert _offenders(("reference_server",), ("toolkit.cli", "toolkit.runs", "toolkit.engine")) == []


def test_the_pure_core_does_no_io_imports() -> None:
    """Capacity maths and generators take data and return data: no network, processes or clock."""
    io_modules = ("socket", "subprocess", "urllib.request", "httpx", "locust", "gevent", "psutil")
    offenders = []
    for name, path in _modules().items():
        if not name.startswith(("toolkit.capacity", "toolkit.generators", "toolkit.units", "toolkit.recorder",
                                "toolkit.drills", "toolkit.nginxconf")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name} imports {n}" for n in names if n.split(".")[0] in {m.split(".")[0] for m in io_modules}
                          and n.startswith(io_modules)]
    assert offenders == []
