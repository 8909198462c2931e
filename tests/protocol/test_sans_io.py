"""``protocol/`` stays sans-IO: no transport, no clock, no OS randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import protocol

PROTOCOL_DIR = Path(protocol.__file__).parent

FORBIDDEN_MODULES = {
    "grpc",
    "google",
    "asyncio",
    "socket",
    "ssl",
    "server",
    "sqlite3",
    "subprocess",
    "random",
    "secrets",
    "urllib",
    "http",
}
FORBIDDEN_CALLS = {
    ("os", "urandom"),
    ("os", "getrandom"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
}
FORBIDDEN_NAMES = {
    "randombytes",
    "crypto_core_ristretto255_random",
    "crypto_core_ristretto255_scalar_random",
}
FORBIDDEN_BUILTINS = {"open", "input", "print"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{path.name}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_CALLS:
                found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
            if node.attr in FORBIDDEN_NAMES:
                found.append(f"{path.name}:{node.lineno} uses {node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES | FORBIDDEN_BUILTINS:
            found.append(f"{path.name}:{node.lineno} uses {node.id}")
    return found


def test_protocol_modules_exist() -> None:
    assert len(list(PROTOCOL_DIR.rglob("*.py"))) >= 3


def test_protocol_imports_no_io() -> None:
    violations = [v for path in PROTOCOL_DIR.rglob("*.py") for v in _violations(path)]
    assert violations == []


def test_detector_catches_a_violation(tmp_path: Path) -> None:
    """The scanner itself must fail on code that breaks the rule."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import grpc\nimport os\nx = os.urandom(8)\nfrom time import time\n"
        "data = open('f').read()\nreader.open(3)\n"
    )
    assert len(_violations(bad)) == 3
