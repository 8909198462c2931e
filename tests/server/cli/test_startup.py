"""Start-up stays light: a command imports only what it uses.

Scripts call ``hexpsi encode`` in loops, so no command pays for gRPC,
libsodium, the certificate code or asyncio unless it needs them. This checks
which modules a real run loaded (a fact), not how long it took (noise).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[3] / "seeds"
HEAVY = ("grpc", "google.protobuf", "rbcl", "cryptography", "nacl", "asyncio", "sqlite3")
RUN = """
import sys
from hexpsi.server.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, check=True
    )
    return set(result.stderr.split())


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["check", "--help"],
        ["evidence", "verify", "--help"],
        ["probe", "--help"],
    ],
)
def test_the_parser_alone_loads_nothing_heavy(argv: list[str]) -> None:
    loaded = loaded_by(*argv)
    for module in (*HEAVY, "h3"):
        assert module not in loaded, f"hexpsi {' '.join(argv)} imports {module}"


def test_encode_loads_h3_but_no_transport_or_crypto() -> None:
    loaded = loaded_by("encode", str(SEEDS / "strike_at_tanf.geojson"), "--format", "csv")
    assert "h3" in loaded
    for module in HEAVY:
        assert module not in loaded, f"hexpsi encode imports {module}"
