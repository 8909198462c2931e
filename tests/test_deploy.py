"""``deploy/``: what can be checked of the systemd unit and the container file without running them.

No container engine runs here, and no systemd manages these tests, so this
checks the files themselves: ``systemd-analyze verify`` accepts the unit (when
the tool is installed; the unit is parsed as INI in any case), both run the
``hexpsi`` console script that ``pyproject.toml`` declares with arguments
hexpsi's own parser accepts, monitoring stays on loopback, the service runs
unprivileged and hardened, and the container file copies only what exists.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from hexpsi.server.cli.main import build_parser
from hexpsi.server.services.addresses import parse_loopback_listen
from hexpsi.server.services.app import SHUTDOWN_GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "hexpsi.service"
CONTAINERFILE = DEPLOY / "Containerfile"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
NODE = "/var/lib/hexpsi/node"


def _is_loopback_listen(address: str, what: str) -> bool:
    host, port = parse_loopback_listen(address, what=what)
    return bool(host) and port > 0


# ---------------------------------------------------------------- the systemd unit


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value.strip())
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_the_unit_has_its_sections_and_runs_unprivileged_and_hardened() -> None:
    parsed = unit()
    assert {"Unit", "Service", "Install"} <= set(parsed.sections())
    service = parsed["Service"]
    assert service.get("User") not in (None, "", "root", "0") or service.get("DynamicUser") == "yes"
    assert service["StateDirectory"] == "hexpsi"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }.items():
        assert service.get(key) == value, key
    assert service["CapabilityBoundingSet"] == ""
    # The stop timeout covers the grace for calls in flight and the final housekeeping.
    assert _seconds(service["TimeoutStopSec"]) >= 2 * SHUTDOWN_GRACE_SECONDS
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_serves_the_node_in_its_state_directory_with_local_monitoring() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    executable = PurePosixPath(argv[0])
    assert executable.is_absolute()
    assert executable.name in SCRIPTS, f"{executable.name} is no console script of hexpsi"
    assert argv[1:3] == ["serve", NODE]
    assert PurePosixPath(NODE).parent == PurePosixPath("/var/lib") / service["StateDirectory"]
    args = build_parser().parse_args(argv[1:])
    assert args.directory == NODE
    assert not args.plaintext
    assert _is_loopback_listen(args.health_listen, "--health-listen")
    assert _is_loopback_listen(args.metrics_listen, "--metrics-listen")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """The unit as shipped, with ExecStart pointed at this checkout's ``hexpsi`` script
    (verify checks that the program exists, and /opt/hexpsi is not installed here)."""
    script = Path(sys.executable).with_name("hexpsi")
    assert script.exists(), script
    text = UNIT.read_text()
    shipped = shlex.split(unit()["Service"]["ExecStart"])[0]
    copy = tmp_path / "hexpsi.service"
    copy.write_text(text.replace(f"ExecStart={shipped} ", f"ExecStart={script} ", 1))
    assert copy.read_text() != text
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings: there must be none.
    assert result.stdout + result.stderr == ""


# ---------------------------------------------------------------- the container file


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    assert not pending, "a continuation line ends the file"
    return found


def arguments(instruction: str) -> list[str]:
    return [rest for word, rest in instructions() if word == instruction]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), text
    assert all(isinstance(part, str) for part in value), text
    return value


def environment() -> dict[str, str]:
    pairs = [shlex.split(rest) for rest in arguments("ENV")]
    return dict(pair.split("=", 1) for words in pairs for pair in words)


def test_the_image_is_python_311_slim_and_installs_hexpsi_from_the_source() -> None:
    (base,) = arguments("FROM")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    assert any(re.search(r"\bpip install \.(\s|$)", rest) for rest in arguments("RUN"))


def test_every_copy_source_exists_and_the_package_links_are_copied() -> None:
    copied: set[str] = set()
    for rest in arguments("COPY"):
        parts = [part for part in shlex.split(rest) if not part.startswith("--")]
        assert len(parts) >= 2, rest
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            copied.add(source.rstrip("/"))
    assert {"pyproject.toml", "hexpsi"} <= copied
    # hexpsi/ maps the top-level folders in with symbolic links: their targets come too.
    for link in (ROOT / "hexpsi").iterdir():
        if link.is_symlink():
            target = (link.parent / os.readlink(link)).resolve().relative_to(ROOT)
            assert str(target) in copied, f"hexpsi/{link.name} -> {target} is not copied"


def test_the_container_runs_hexpsi_serve_as_a_non_root_user_on_a_volume() -> None:
    users = arguments("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    (entrypoint,) = arguments("ENTRYPOINT")
    assert exec_form(entrypoint) == ["hexpsi"]
    assert "hexpsi" in SCRIPTS
    (cmd,) = arguments("CMD")
    assert exec_form(cmd) == ["serve", NODE]
    volumes = [path for rest in arguments("VOLUME") for path in exec_form(rest)]
    assert any(PurePosixPath(NODE).is_relative_to(volume) for volume in volumes), volumes
    exposed = {int(port.split("/")[0]) for rest in arguments("EXPOSE") for port in rest.split()}
    assert exposed


def test_the_healthcheck_probes_the_health_endpoint_the_image_configures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment()
    health = env["HEXPSI_HEALTH_LISTEN"]
    assert _is_loopback_listen(health, "--health-listen")
    assert _is_loopback_listen(env["HEXPSI_METRICS_LISTEN"], "--metrics-listen")
    (check,) = arguments("HEALTHCHECK")
    command = exec_form(check[check.index("CMD") + len("CMD") :].strip())
    assert command[0] in SCRIPTS
    probe = build_parser().parse_args(command[1:])
    assert probe.command == "probe"
    assert probe.address == health
    # The CMD, run with the image's environment, opens both endpoints.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (cmd,) = arguments("CMD")
    serve = build_parser().parse_args(exec_form(cmd))
    assert (serve.health_listen, serve.metrics_listen) == (
        health,
        env["HEXPSI_METRICS_LISTEN"],
    )
