"""``hexpsi.protocol`` stays sans-IO: no transport, no clock, no OS randomness, no files.

Every module of the package is found by its import name and parsed; every
import is resolved to an absolute module name (relative ones included) and
every attribute chain to the dotted name it reaches through those imports, so
``from time import time``, ``import os as o; o.unlink(p)`` and
``from ...server import x`` are all seen for what they are. A second test
imports the whole package in a fresh interpreter and checks which modules
came with it.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hexpsi.protocol

PACKAGE = "hexpsi.protocol"

FORBIDDEN_MODULES = (
    "asyncio",
    "concurrent",
    "google.protobuf",
    "grpc",
    "hexpsi.server",
    "http",
    "importlib",
    "io",
    "multiprocessing",
    "os",
    "pathlib",
    "random",
    "secrets",
    "select",
    "selectors",
    "shutil",
    "signal",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "urllib",
)
"""Whole modules protocol code may not touch: transport, OS, clock, disk, dynamic imports."""
FORBIDDEN_NAMES = (
    "datetime.date.today",
    "datetime.datetime.now",
    "datetime.datetime.today",
    "datetime.datetime.utcnow",
)
"""Members of otherwise pure modules that read the clock."""
FORBIDDEN_ATTRIBUTES = (
    "randombytes",
    "crypto_core_ristretto255_random",
    "crypto_core_ristretto255_scalar_random",
)
"""libsodium's own randomness, reachable through a loaded library object."""
FORBIDDEN_BUILTINS = ("open", "input", "print", "__import__", "exec", "eval", "breakpoint")


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _forbidden(name: str) -> bool:
    return _is_under(name, FORBIDDEN_MODULES) or _is_under(name, FORBIDDEN_NAMES)


class _Scanner(ast.NodeVisitor):
    """Collects violations in one module, resolving names through its imports."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.aliases: dict[str, str] = {}
        self.found: list[tuple[int, str]] = []

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), what))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _forbidden(alias.name):
                self._flag(node, f"imports {alias.name}")
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else local

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = importlib.util.resolve_name("." * node.level + (node.module or ""), self.package)
        if _forbidden(base):
            self._flag(node, f"imports from {base}")
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if _forbidden(full) and not _forbidden(base):
                self._flag(node, f"imports {full}")
            self.aliases[alias.asname or alias.name] = full

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            head = self._dotted(node.value)
            return None if head is None else f"{head}.{node.attr}"
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._dotted(node)
        if dotted is not None and _is_under(dotted, FORBIDDEN_NAMES):
            self._flag(node, f"uses {dotted}")
        if any(part in node.attr for part in FORBIDDEN_ATTRIBUTES):
            self._flag(node, f"uses {node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS and node.id not in self.aliases:
            self._flag(node, f"uses the builtin {node.id}")


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What in ``source`` (the text of ``module``) breaks the sans-IO rule."""
    scanner = _Scanner(module, is_package)
    scanner.visit(ast.parse(source))
    return [f"{module}:{line} {what}" for line, what in sorted(scanner.found)]


def protocol_modules() -> Iterator[tuple[str, Path, bool]]:
    """Every module of ``hexpsi.protocol`` with its file, found by import name."""
    root = Path(hexpsi.protocol.__file__)
    yield PACKAGE, root, True
    for info in pkgutil.walk_packages(hexpsi.protocol.__path__, PACKAGE + "."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None, info.name
        assert spec.origin is not None, info.name
        yield info.name, Path(spec.origin), info.ispkg


def test_every_protocol_subpackage_is_scanned() -> None:
    names = {name for name, _, _ in protocol_modules()}
    for expected in ("geo", "crypto", "snapshot", "epoch", "check", "mutual"):
        assert f"{PACKAGE}.{expected}" in names
    assert len(names) > 30


def test_protocol_does_no_io() -> None:
    found = [
        violation
        for name, path, is_package in protocol_modules()
        for violation in violations(path.read_text(), name, is_package=is_package)
    ]
    assert found == []


def test_importing_protocol_loads_no_transport_or_server() -> None:
    """In a fresh interpreter, every protocol module imported; what came along?"""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hexpsi.protocol as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'hexpsi.protocol.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    # (socket is not in the list: h3 and the crypto libraries bring it through the stdlib.)
    for module in ("grpc", "google.protobuf", "asyncio", "sqlite3", "hexpsi.server"):
        assert module not in loaded, f"importing hexpsi.protocol loads {module}"


def test_scanner_catches_every_kind_of_violation() -> None:
    """Each line below breaks the rule in a different way; each must be caught."""
    bad = [
        "import grpc",
        "from time import time",
        "from os import urandom",
        "import os as o\no.unlink('f')",
        "from ... import server",
        "from ...server.node import files",
        "from hexpsi.server import workers",
        "import google.protobuf.message",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime as dt\nx = dt.date.today()",
        "data = open('f').read()",
        "lib.randombytes_buf(buf, 32)",
        "import importlib\nm = importlib.import_module('socket')",
    ]
    for sample in bad:
        assert violations(sample, "hexpsi.protocol.geo.sample"), sample


def test_scanner_lets_pure_code_pass() -> None:
    good = [
        "import hashlib\nx = hashlib.sha256(b'').digest()",
        "from . import tokens\nfrom ..crypto import group",
        "from datetime import datetime, timezone\nx = datetime.fromtimestamp(0, timezone.utc)",
        "reader.open(3)",
        "from hexpsi.protocol.errors import InputError",
    ]
    for sample in good:
        assert violations(sample, "hexpsi.protocol.geo.sample") == [], sample
