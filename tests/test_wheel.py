"""A wheel that works anywhere: built with ``pip wheel``, installed into a fresh venv, run.

The wheel must carry one import name (``hexpsi``; no top-level ``protocol`` or
``server``), its console script, and the demo scenario as package data, so
``hexpsi demo`` runs from any directory with nothing but the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_tree(target: Path) -> Path:
    """A copy of the working tree's project files (symbolic links kept), so the build
    writes its ``build/`` and ``*.egg-info`` there and not into the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            destination.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, destination)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (and its dependencies from the index) installed."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to copy the project from")
    root = tmp_path_factory.mktemp("wheel")
    source = _source_tree(root / "src")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
    )
    (wheel,) = wheels.glob("hexpsi-*.whl")
    environment = root / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
    return environment


def test_the_wheel_holds_one_import_name(installed: Path) -> None:
    python = installed / "bin" / "python"
    elsewhere = installed.parent
    for name in ("protocol", "server"):
        refused = subprocess.run(
            [python, "-c", f"import {name}"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode != 0, f"the wheel installs a top-level {name!r}"
    subprocess.run(
        [python, "-c", "import hexpsi.protocol, hexpsi.server.cli.main"], cwd=elsewhere, check=True
    )


def test_the_installed_demo_runs_from_any_directory(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [installed / "bin" / "hexpsi", "demo", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["as_expected"] is True
    assert [check["conflict"] for check in report["checks"]] == [True, False, False, True]
