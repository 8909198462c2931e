"""The committed generated code matches the schema: regenerate and compare."""

from __future__ import annotations

from pathlib import Path

from hexpsi.server.rpc import generate as protogen


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = protogen.generate(tmp_path)
    assert fresh, "protoc generated nothing"
    committed_dir = protogen.ROOT / protogen.PACKAGE_PATH
    for path in fresh:
        relative = path.relative_to(tmp_path / protogen.PACKAGE_PATH)
        committed = committed_dir / relative
        assert committed.exists(), (
            f"{relative} is not committed; run python -m hexpsi.server.rpc.generate"
        )
        assert committed.read_bytes() == path.read_bytes(), (
            f"{relative} is stale; run python -m hexpsi.server.rpc.generate"
        )


def test_generated_code_is_inside_server_not_top_level() -> None:
    assert not (protogen.ROOT / "proto" / "__init__.py").exists()
    assert not list((protogen.ROOT / "proto").rglob("*.py"))
