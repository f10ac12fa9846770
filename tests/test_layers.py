"""The package's imports flow one way: no cycle among nodeagent modules, no import from a lower layer to a higher one.

Every module under ``nodeagent/`` is parsed with ``ast`` (nothing is imported, so optional clients
such as libvirt or kubernetes need not be installed) and every import is counted: module level,
inside functions (lazy imports that keep CLI start light) and under ``if TYPE_CHECKING:`` (a
type-only import still makes the reader hold the other module in mind, and becomes a real one
the day someone needs the name at run time). Only ``importlib.import_module`` with a computed name is
out of its sight: the CLI's lazy command group (``commands/lazy.py``) loads its own package's modules so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "nodeagent"

# Low → high. A module may import from its own layer and the layers below it, never from one above.
# Each entry names a module or a package (a package covers every module below it).
LAYERS: list[tuple[str, ...]] = [
    # Vocabulary and the host seam: plain values, text parsers, the fixed names users depend on, Kubernetes'
    # naming rules, the one Host through which every path is read, the files nodeagent owns on a host (paths
    # and drop-in format, read by discovery and written by prep), and general utilities: the HTTP server
    # metrics and health both serve through, the back-off policy publisher and daemon both retry with, and
    # the redaction of credentials in host files' text (capture uses it), the strict YAML reader of the
    # documents operators write (profiles, workload classes), the Host's openat2 opener under --root,
    # the fast indented JSON writer, the import of a library's submodules without its package __init__ and
    # loggers that import logging when first used.
    ("nodeagent", "nodeagent.value", "nodeagent.parse", "nodeagent.contract", "nodeagent.kubenames",
     "nodeagent.host", "nodeagent.owned", "nodeagent.httpserver", "nodeagent.backoff", "nodeagent.redact",
     "nodeagent.yamldoc", "nodeagent.inroot", "nodeagent.jsontext", "nodeagent.lazypkg", "nodeagent.lazylog"),
    # The facts' data model: what discovery fills in and everything above reads.
    ("nodeagent.inventory",),
    # Reading facts: the Inventory from sysfs/procfs, live sources (libvirt, NVML, /proc/<pid>), and the
    # capture of a host's files into a replayable tree (it runs discovery to know what to capture).
    ("nodeagent.discover", "nodeagent.sources", "nodeagent.capture"),
    # Judging facts against rules: checks, workload readiness (the table of workload classes), labels, the
    # profile schema and its GPU selection, and
    # the terminal views of an Inventory with its checks and labels (``inspect``/``check``/``labels``).
    ("nodeagent.checks", "nodeagent.workloads", "nodeagent.labels", "nodeagent.profile", "nodeagent.gpuselect",
     "nodeagent.terminal", "nodeagent.gpulabels", "nodeagent.vgpupool",
     "nodeagent.vgpuspec"),
    # Acting on a judgement, each on its own: changing the host (prep), exporting (metrics), publishing (k8s).
    ("nodeagent.prep", "nodeagent.metrics", "nodeagent.k8s"),
    # The long-running agent that drives the three above.
    ("nodeagent.daemon",),
    # Entry points: the click commands and the CLI group that loads them lazily.
    ("nodeagent.commands", "nodeagent.cli", "nodeagent.__main__"),
]

# Cycles still on main that another open change removes. Each entry is the cycle's modules (any order);
# an entry whose cycle is gone fails the test, so the list cannot go stale.
KNOWN_CYCLES: list[frozenset[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every nodeagent module that ``module`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module.
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                     for alias in node.names]
        else:
            continue
        for imported in names:
            name = imported
            while name and name not in known:  # ``import nodeagent.a.b`` → the deepest module that exists
                name = name.rpartition(".")[0]
            if name.startswith("nodeagent") and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> int:
    best, best_len = -1, -1
    for index, members in enumerate(LAYERS):
        for member in members:
            covers = module == member or (member != "nodeagent" and module.startswith(member + "."))
            if covers and len(member) > best_len:
                best, best_len = index, len(member)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_lazy_and_relative_imports() -> None:
    """The graph is only as good as the walker: a lazy import inside a function counts."""
    graph = _graph()
    assert "nodeagent.daemon.service" in graph["nodeagent.commands.serve"]  # imported inside a function
    assert "nodeagent.cli" in graph["nodeagent.__main__"]


def test_the_walker_on_every_form_of_import(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import nodeagent.k.deep.missing\n"  # the deepest module that exists: nodeagent.k.deep
        "from . import sibling\n"  # relative: a submodule of the package
        "from ..up import name\n"  # relative, two levels: a name from a module
        "if TYPE_CHECKING:\n"
        "    from nodeagent.typed import T\n"
        "def f():\n"
        "    import nodeagent.lazy\n"
        "    from nodeagent import pkgmod\n"
    )
    known = {"nodeagent", "nodeagent.k", "nodeagent.k.deep", "nodeagent.p", "nodeagent.p.q", "nodeagent.p.q.a",
             "nodeagent.p.q.sibling", "nodeagent.p.up", "nodeagent.typed", "nodeagent.lazy", "nodeagent.pkgmod"}
    assert _imports("nodeagent.p.q.a", source, known) == {
        "nodeagent.k.deep", "nodeagent.p.q.sibling", "nodeagent.p.up", "nodeagent.typed", "nodeagent.lazy",
        "nodeagent.pkgmod"}


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in _modules() if _layer(name) < 0)
    assert not unplaced, f"add these modules to a layer in LAYERS: {unplaced}"


def test_no_import_goes_up_a_layer() -> None:
    graph = _graph()
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in sorted(graph.items()) for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    cycles = [frozenset(cycle) for cycle in _cycles(_graph())]
    unexpected = [sorted(cycle) for cycle in cycles if cycle not in KNOWN_CYCLES]
    assert not unexpected, f"import cycles among nodeagent modules: {unexpected}"
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in cycles]
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


@pytest.mark.parametrize(("module", "expected"), [
    ("nodeagent", 0),  # the package itself (its __version__), not everything below it
    ("nodeagent.host", 0),
    ("nodeagent.discover", 2),  # a package's __init__ is in its package's layer
    ("nodeagent.discover.pci", 2),
    ("nodeagent.prep.vfio", 4),
    ("nodeagent.__main__", len(LAYERS) - 1),
    ("nodeagent.not_placed", -1),  # a new module must be placed: test_every_module_has_a_layer says so
])
def test_layer_of_a_module(module: str, expected: int) -> None:
    assert _layer(module) == expected
