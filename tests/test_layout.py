"""The tree reads like the architecture: one import name, layers that only look down, no cycles.

Every module of ``hexpsi`` is parsed and every import resolved to an absolute
module name (relative and function-level imports included). ``hexpsi.server``
is layered: a module may import ``hexpsi.protocol``, its own part of the server
and any part ranked below it, never one ranked at or above it; clients and
services do not import each other. ``hexpsi.protocol`` never imports the server
(``tests/protocol/test_sans_io.py`` holds the rest of that rule).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import hexpsi

SERVER_LAYERS = {
    "rpc": 0,
    "sodium": 0,
    "workers": 1,
    "node": 2,
    "streams": 3,
    "inputs": 4,
    "services": 5,
    "clients": 5,
    "demo": 6,
    "bench": 7,
    "cli": 8,
}
"""Each part of ``hexpsi.server`` and its rank: lower parts never import higher ones."""
GENERATED = "hexpsi.server.rpc.hexpsi"


def modules() -> Iterator[tuple[str, Path, bool]]:
    for info in pkgutil.walk_packages(hexpsi.__path__, "hexpsi."):
        if info.name.startswith(GENERATED):
            continue
        spec = importlib.util.find_spec(info.name)
        assert spec is not None
        assert spec.origin is not None
        yield info.name, Path(spec.origin), info.ispkg


def imports_of(name: str, path: Path, is_package: bool) -> set[str]:
    """Every hexpsi module ``name`` imports, resolved (a ``from X import y`` of a
    submodule counts as that submodule)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if not base.startswith("hexpsi"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return {module for module in found if module.startswith("hexpsi.")}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


GRAPH = {name: imports_of(name, path, ispkg) for name, path, ispkg in modules()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["hexpsi", "server"] or len(parts) < 3:
        return None
    return parts[2]


def test_every_server_part_has_a_rank() -> None:
    parts = {_part(name) for name in GRAPH} - {None}
    assert parts <= set(SERVER_LAYERS), parts - set(SERVER_LAYERS)


def test_server_parts_import_only_downward() -> None:
    wrong = []
    for module, imported in GRAPH.items():
        part = _part(module)
        if part is None:
            continue
        for target in imported:
            other = _part(target)
            if other is None or other == part or target.startswith(GENERATED):
                continue
            if SERVER_LAYERS[other] >= SERVER_LAYERS[part]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_protocol_never_imports_the_server() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, imported in GRAPH.items()
        if module.startswith("hexpsi.protocol")
        for target in imported
        if target.startswith("hexpsi.server")
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    """Depth-first search over the module graph; a back edge is a cycle."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_only_one_top_level_name_is_packaged() -> None:
    """The build maps the folders into ``hexpsi`` alone (``pyproject.toml``)."""
    root = Path(hexpsi.__file__).parent
    assert (root / "protocol").resolve() == (root.parent / "protocol").resolve()
    assert (root / "server").resolve() == (root.parent / "server").resolve()
    text = (root.parent / "pyproject.toml").read_text()
    assert 'include = ["hexpsi", "hexpsi.*"]' in text
