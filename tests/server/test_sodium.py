"""Importing the group does no I/O of ours; ``sodium.load`` then removes rbcl's leftover file."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib, os
import hexpsi.protocol.crypto.group as group
path = importlib.import_module("rbcl._sodium").lib_path
print(os.path.exists(path))
from hexpsi.server import sodium
removed = sodium.load()
print(removed == __import__("pathlib").Path(path), os.path.exists(path), sodium.load())
print(group.scalar_mult(group.random_scalar(os.urandom), group.GENERATOR) != group.GENERATOR)
"""


def test_import_leaves_the_file_and_load_removes_it_once() -> None:
    lines = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert lines[0] == "True", "importing hexpsi.protocol must not delete anything"
    assert lines[1] == "True False None", "load() removes the file once and is idempotent"
    assert lines[2] == "True", "the group still works once the file is gone"
