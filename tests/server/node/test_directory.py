"""Node directories: owner-only secrets, refusal to overwrite, identities, pinning, clear errors."""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hexpsi.protocol.errors import InputError, LocalProtocolError, Status
from hexpsi.server.node import tls
from hexpsi.server.node.config import parse_address
from hexpsi.server.node.directory import Identity, Node, init_node, load_identity

NOW = time.time()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make(tmp_path: Path, name: str, port: int = 7443) -> Node:
    return init_node(tmp_path / name, name=name, listen=f"127.0.0.1:{port}", now=NOW)


# ------------------------------------------------------------------ init


def test_init_writes_owner_only_secrets(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    directory = tmp_path / "alpha"
    assert mode(directory) == 0o700
    assert mode(directory / "peers") == 0o700
    for secret in ("signing.key", "tls.key", "oprf.master"):
        assert mode(directory / secret) == 0o600, secret
    assert mode(directory / "tls.crt") == 0o644
    assert len((directory / "signing.key").read_bytes()) == 32
    assert len(node.oprf_master) == 32
    assert node.config.res == 9
    assert node.config.res_min == 5
    # Nothing left behind from the staging directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha"]


def test_two_nodes_get_different_keys(tmp_path: Path) -> None:
    alpha, bravo = make(tmp_path, "alpha"), make(tmp_path, "bravo")
    assert alpha.oprf_master != bravo.oprf_master
    assert bytes(alpha.signing_key) != bytes(bravo.signing_key)
    assert alpha.certificate_sha256 != bravo.certificate_sha256


def test_init_refuses_an_existing_node(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    before = (tmp_path / "alpha" / "signing.key").read_bytes()
    with pytest.raises(InputError, match="already holds a hexpsi node"):
        make(tmp_path, "alpha")
    assert (tmp_path / "alpha" / "signing.key").read_bytes() == before
    assert Node(tmp_path / "alpha").identity() == node.identity()


def test_init_refuses_a_directory_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        make(tmp_path, "alpha")
    assert (tmp_path / "alpha" / "notes.txt").read_text() == "mine"


def test_init_accepts_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "alpha").mkdir(mode=0o755)
    make(tmp_path, "alpha")
    assert mode(tmp_path / "alpha") == 0o700


def test_init_validates_its_arguments_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"res must be an integer 0\.\.15"):
        init_node(tmp_path / "a", name="alpha", listen="127.0.0.1:1", res=16, now=NOW)
    with pytest.raises(InputError, match=r"res_min must be an integer 0\.\.7"):
        init_node(tmp_path / "a", name="alpha", listen="127.0.0.1:1", res=7, res_min=8, now=NOW)
    with pytest.raises(InputError, match="name must be"):
        init_node(tmp_path / "a", name="Alpha_1", listen="127.0.0.1:1", now=NOW)
    with pytest.raises(InputError, match="port must be"):
        init_node(tmp_path / "a", name="alpha", listen="127.0.0.1:0", now=NOW)
    with pytest.raises(InputError, match="not reachable by peers"):
        init_node(tmp_path / "a", name="alpha", listen="0.0.0.0:7443", now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_a_wildcard_listener_advertises_its_address(tmp_path: Path) -> None:
    node = init_node(
        tmp_path / "a", name="alpha", listen="0.0.0.0:7443", address="alpha.example:443", now=NOW
    )
    assert node.identity()["address"] == "alpha.example:443"
    assert node.config.listen == "0.0.0.0:7443"
    certificate = tls.load_certificate(node.tls_certificate_pem)
    assert tls.certificate_dns_names(certificate) == ["alpha", "alpha.example"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7443", ("127.0.0.1", 7443)),
        ("alpha.example:443", ("alpha.example", 443)),
        ("[::1]:50051", ("::1", 50051)),
    ],
)
def test_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["no-port", ":443", "::1:443", "[::1]443", "host:65536", "host:-1", "a b:1", "[x]:1"]
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_address(text)


# ------------------------------------------------------------------ identity


def test_identity_round_trips(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    document = node.identity()
    assert set(document) == {
        "version",
        "name",
        "address",
        "tls_certificate",
        "signing_public_key",
    }
    assert document["version"] == 1
    assert document["signing_public_key"] == bytes(node.signing_key.verify_key).hex()
    loaded = load_identity(json.dumps(document).encode())
    assert loaded == node.own_identity()
    assert loaded.to_json() == document


def _identity_with(tmp_path: Path, **changes: object) -> bytes:
    document = make(tmp_path, "alpha").identity()
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "version must be 1"),
        ({"name": "Alpha"}, "name must be"),
        ({"name": "bravo"}, "does not name 'bravo'"),
        ({"address": "alpha"}, "not HOST:PORT"),
        ({"signing_public_key": "ab" * 31}, "32 bytes"),
        ({"signing_public_key": "zz" * 32}, "32 bytes"),
        ({"signing_public_key": "01" + "00" * 31}, "not a valid Ed25519"),
        ({"tls_certificate": "hello"}, "one PEM certificate"),
        ({"tls_certificate": None}, "missing 'tls_certificate'"),
        ({"extra": 1}, "unknown key 'extra'"),
    ],
)
def test_bad_identities_are_refused(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_identity(_identity_with(tmp_path, **changes))


def test_an_identity_that_is_not_json_is_refused() -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        load_identity(b"\xff{")
    with pytest.raises(InputError, match="JSON object"):
        load_identity(b"[]")


# ------------------------------------------------------------------ peers


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Node, Node]:
    return make(tmp_path, "alpha", 7001), make(tmp_path, "bravo", 7002)


def identity_of(node: Node) -> Identity:
    return load_identity(node.own_identity().to_bytes())


def test_add_peer_with_overrides_persists(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    peer = alpha.add_peer(
        identity_of(bravo), address="10.0.0.2:7002", budget_km2=250, window_hours=6
    )
    assert (peer.address, peer.budget_km2, peer.window_hours) == ("10.0.0.2:7002", 250.0, 6.0)
    assert peer.window_seconds == 6 * 3600
    assert peer.certificate_sha256 == bravo.certificate_sha256
    stored = json.loads((alpha.directory / "peers" / "bravo.json").read_text())
    assert stored["certificate_sha256"] == bravo.certificate_sha256
    reloaded = Node(alpha.directory).peer("bravo")
    assert reloaded == peer


def test_a_peer_without_overrides_follows_the_node_defaults(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    peer = alpha.add_peer(identity_of(bravo))
    assert peer.address == "127.0.0.1:7002"
    assert peer.budget_km2 == alpha.config.budget.km2_per_window
    assert peer.window_hours == alpha.config.budget.window_hours
    assert peer.overrides == {}


def test_bad_overrides_are_refused(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    with pytest.raises(InputError, match="window_hours"):
        alpha.add_peer(identity_of(bravo), window_hours=0)
    with pytest.raises(InputError, match="budget_km2"):
        alpha.add_peer(identity_of(bravo), budget_km2=float("inf"))
    with pytest.raises(InputError, match="HOST:PORT"):
        alpha.add_peer(identity_of(bravo), address="nowhere")
    assert alpha.peers() == []


def test_re_pinning_a_name_needs_replace(tmp_path: Path, pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    alpha.add_peer(identity_of(bravo))
    impostor = init_node(tmp_path / "other", name="bravo", listen="127.0.0.1:9", now=NOW)
    with pytest.raises(InputError, match="already pinned"):
        alpha.add_peer(identity_of(impostor))
    assert alpha.peer("bravo").certificate_sha256 == bravo.certificate_sha256
    alpha.add_peer(identity_of(impostor), replace=True)
    assert Node(alpha.directory).peer("bravo").certificate_sha256 == impostor.certificate_sha256


def test_own_identity_and_duplicate_keys_are_refused(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    with pytest.raises(InputError, match="own identity"):
        alpha.add_peer(identity_of(alpha))
    alpha.add_peer(identity_of(bravo))
    same_key = Identity(
        "charlie",
        "127.0.0.1:1",
        alpha.own_identity().certificate_pem,
        bravo.own_identity().signing_public_key,
    )
    with pytest.raises(InputError, match="own identity"):
        alpha.add_peer(same_key)


def test_unknown_peer_lists_the_known_ones(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    with pytest.raises(InputError, match="none yet") as none:
        alpha.peer("bravo")
    assert none.value.status is Status.NOT_FOUND
    alpha.add_peer(identity_of(bravo))
    with pytest.raises(InputError, match=r"unknown peer 'charlie' \(pinned peers: bravo\)"):
        alpha.peer("charlie")


def test_peer_by_certificate_matches_exactly_the_pinned_one(
    tmp_path: Path, pair: tuple[Node, Node]
) -> None:
    alpha, bravo = pair
    alpha.add_peer(identity_of(bravo))
    pem = bravo.tls_certificate_pem
    der = tls.load_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert alpha.peer_by_certificate(pem) == alpha.peer("bravo")
    assert alpha.peer_by_certificate(der) == alpha.peer("bravo")
    assert alpha.peer_by_certificate(pem.decode()) == alpha.peer("bravo")
    stranger = init_node(tmp_path / "s", name="bravo", listen="127.0.0.1:9", now=NOW)
    assert alpha.peer_by_certificate(stranger.tls_certificate_pem) is None


def test_trusted_roots_hold_every_pinned_certificate(tmp_path: Path) -> None:
    alpha = make(tmp_path, "alpha")
    with pytest.raises(LocalProtocolError, match="no peers are pinned"):
        alpha.trusted_roots_pem()
    others = [make(tmp_path, name) for name in ("charlie", "bravo")]
    for other in others:
        alpha.add_peer(identity_of(other))
    roots = alpha.trusted_roots_pem()
    assert roots == others[1].tls_certificate_pem + others[0].tls_certificate_pem
    assert [peer.name for peer in alpha.peers()] == ["bravo", "charlie"]


def test_an_edited_peer_file_is_caught(pair: tuple[Node, Node]) -> None:
    alpha, bravo = pair
    alpha.add_peer(identity_of(bravo))
    path = alpha.directory / "peers" / "bravo.json"
    record = json.loads(path.read_text())
    record["certificate_sha256"] = "00" * 32
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"peers/bravo\.json: the pinned fingerprint"):
        Node(alpha.directory)
    path.rename(path.with_name("charlie.json"))
    with pytest.raises(InputError, match="holds the identity of 'bravo'"):
        Node(alpha.directory)


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("res = 9", "res = 16"), "config.toml: res must be an integer 0..15"),
        (lambda t: t.replace("res = 9", 'res = "9"'), "config.toml: res must be an integer"),
        (lambda t: t.replace("res_min = 5", "res_min = 10"), "res_min must be an integer 0..9"),
        (lambda t: t.replace('name = "alpha"', ""), "config.toml: name is missing"),
        (lambda t: "colour = 1\n" + t, "unknown key 'colour'"),
        (
            lambda t: t.replace("max_query_tokens = 4096", "max_query_tokns = 4096"),
            "unknown key 'limits.max_query_tokns'",
        ),
        (
            lambda t: t.replace("window_hours = 24.0", "window_hours = 0"),
            "budget.window_hours must be a number > 0",
        ),
        (
            lambda t: t.replace("max_query_tokens = 4096", "max_query_tokens = true"),
            "limits.max_query_tokens must be an integer",
        ),
        (
            lambda t: t.replace("clock_skew_seconds = 300", "clock_skew_seconds = 0"),
            "limits.clock_skew_seconds must be an integer 1..86400, got 0",
        ),
        (
            lambda t: t.replace("clock_skew_seconds = 300", "clock_skew_seconds = 300.5"),
            "limits.clock_skew_seconds must be an integer 1..86400, got 300.5",
        ),
        (
            lambda t: t.replace("clock_skew_seconds = 300", "clock_skew_seconds = 90000"),
            "limits.clock_skew_seconds must be an integer 1..86400, got 90000",
        ),
        (
            lambda t: t.replace("renew_before_hours = 6.0", "renew_before_hours = 24"),
            "renew_before_hours (24) must be less than epoch_validity_hours (24)",
        ),
        (
            lambda t: t.replace("renew_before_hours = 6.0", "renew_before_hours = -1"),
            "renew_before_hours must be a number >= 0",
        ),
        (lambda t: t + "[[broken", "config.toml: not valid TOML"),
        (lambda t: t.replace("127.0.0.1:7443", "nowhere"), "config.toml: listen 'nowhere'"),
    ],
)
def test_a_corrupt_config_gives_a_clear_error(tmp_path: Path, edit, message: str) -> None:
    node = make(tmp_path, "alpha")
    config = node.directory / "config.toml"
    config.write_text(edit(config.read_text()))
    with pytest.raises(InputError, match=re.escape(message)):
        Node(node.directory)


def test_missing_config_keys_take_their_defaults(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    (node.directory / "config.toml").write_text('name = "alpha"\nlisten = "127.0.0.1:7443"\n')
    loaded = Node(node.directory)
    assert loaded.config.limits.max_query_tokens == 4096
    assert loaded.config.limits.clock_skew_seconds == 300
    assert loaded.config.address == "127.0.0.1:7443"


def test_the_clock_skew_is_read_from_the_limits_table(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    config = node.directory / "config.toml"
    assert "clock_skew_seconds = 300" in config.read_text()
    config.write_text(
        config.read_text().replace("clock_skew_seconds = 300", "clock_skew_seconds = 60")
    )
    assert Node(node.directory).config.limits.clock_skew_seconds == 60


def test_a_readable_secret_is_refused(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    (node.directory / "tls.key").chmod(0o644)
    with pytest.raises(InputError, match=r"tls\.key: TLS private key is accessible by other users"):
        Node(node.directory)


def test_damaged_key_files_are_named(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    seed = node.directory / "signing.key"
    seed.write_bytes(seed.read_bytes()[:31])
    with pytest.raises(InputError, match=r"signing\.key: expected a 32-byte Ed25519 seed"):
        Node(node.directory)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    (node.directory / "oprf.master").unlink()
    with pytest.raises(InputError, match=r"oprf\.master: missing OPRF master secret"):
        Node(node.directory)


def test_a_certificate_from_another_node_is_caught(tmp_path: Path) -> None:
    alpha, bravo = make(tmp_path, "alpha"), make(tmp_path, "bravo")
    (alpha.directory / "tls.crt").write_bytes(bravo.tls_certificate_pem)
    with pytest.raises(InputError, match=r"tls\.key does not match"):
        Node(alpha.directory)


def test_not_a_node_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a hexpsi node directory") as caught:
        Node(tmp_path / "nothing")
    assert "hexpsi init" in caught.value.explain()


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    node = make(tmp_path, "alpha")
    assert node.oprf_master.hex() not in repr(node)
    assert "alpha" in repr(node)
