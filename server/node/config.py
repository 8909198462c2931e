"""A node's ``config.toml``: names, addresses, resolutions, limits and budgets, validated.

Every error names the key and the rule it broke (``config.toml: res must be an
integer 0..15``), and unknown keys are refused so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.geo.resolution import DEFAULT_RES, DEFAULT_RES_MIN, MAX_RES, MIN_RES
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.server.node.files import read_bytes

CONFIG_FILE = "config.toml"

NAME_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""Node names are single DNS labels: they are the TLS name peers verify."""
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_name(name: object, *, where: str = "", what: str = "name") -> str:
    """A node name: lowercase letters, digits and inner hyphens, 1..63 characters."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"{what} must be 1..63 of a-z, 0-9 and '-' (not first or last), got {name!r}",
            where=where,
        )
    return name


def parse_address(text: object, *, where: str = "", what: str = "address") -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into a checked host and port."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string HOST:PORT, got {text!r}", where=where)
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not _is_ip(host, version=6):
            raise InputError(f"{what} {text!r} is not [IPv6]:PORT", where=where)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise InputError(f"{what} {text!r} is not HOST:PORT", where=where)
        if ":" in host:
            raise InputError(f"{what} {text!r}: write IPv6 hosts as [HOST]:PORT", where=where)
        if not _is_ip(host, version=4) and not _is_hostname(host):
            raise InputError(f"{what} {text!r}: {host!r} is not a hostname or IP", where=where)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"{what} {text!r}: port must be 1..65535", where=where)
    return host, int(port_text)


def _is_ip(host: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(host).version == version
    except ValueError:
        return False


def _is_hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request and per-peer resource limits the server enforces."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_query_tokens: int = 4096
    max_sessions_per_peer: int = 4
    max_mutual_set_size: int = 1 << 18
    """Largest padded set a mutual check with a peer may use, either side's (a peer file
    may set its own); budgets bound it further."""
    clock_skew_seconds: int = int(CLOCK_SKEW_SECONDS)
    """How far a peer's clock may be from this node's, either way, before its dated
    statements are refused: descriptors dated in the future, receipts (as proposer),
    mutual statements (as responder)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Default allowance per peer and window (a peer file may override area and window)."""

    km2_per_window: float = 1000.0
    window_hours: float = 24.0
    mutual_checks_per_window: int = 12
    node_km2_per_window: float = 5000.0
    """What all peers together may probe per window: peers can collude."""
    km2h_per_window: float = 24000.0
    """Default space-time budget per peer and window (km²·h) for timed elements: a strike
    window asks each cell for a span of time. Default: the area budget for 24 h."""
    node_km2h_per_window: float = 120000.0

    @property
    def window_seconds(self) -> float:
        return self.window_hours * 3600.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The contents of ``config.toml``, validated."""

    name: str
    listen: str
    address: str
    res: int = DEFAULT_RES
    res_min: int = DEFAULT_RES_MIN
    epoch_validity_hours: float = 24.0
    slot_minutes: int = 15
    """Length of a time slot: timed positions and strike windows are rounded outward
    to whole slots. 0: epochs have no time tree and take no timed positions."""
    renew_before_hours: float = 6.0
    """A running server publishes a fresh epoch (same positions, new keys) this long
    before the served one expires; 0 turns renewal off. Default: a quarter of the
    validity."""
    limits: Limits = field(default_factory=Limits)
    budget: Budget = field(default_factory=Budget)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = CONFIG_FILE) -> NodeConfig:
        """Validate a parsed config; every error names the key and the rule."""
        reader = _TableReader(data, where=where, prefix="")
        name = check_name(reader.require("name"), where=where)
        listen = reader.require("listen")
        parse_address(listen, where=where, what="listen")
        address = reader.get("address", listen)
        address_host, _ = parse_address(address, where=where, what="address")
        if _is_unspecified(address_host):
            raise InputError(
                f"address {address!r} is not reachable by peers",
                where=where,
                hint="set address to the HOST:PORT peers should dial (init --address)",
            )
        res = reader.integer("res", DEFAULT_RES, MIN_RES, MAX_RES)
        res_min = reader.integer("res_min", DEFAULT_RES_MIN, 0, res)
        validity = reader.positive("epoch_validity_hours", 24.0)
        slot_minutes = reader.integer("slot_minutes", 15, 0, 1440)
        if slot_minutes and validity * 60 / slot_minutes > 1 << 24:
            raise InputError(
                f"epoch_validity_hours ({validity:g}) holds more than 2**24 slots of "
                f"{slot_minutes} min",
                where=where,
                hint="lengthen slot_minutes or shorten the validity",
            )
        renew_before = reader.non_negative("renew_before_hours", validity / 4)
        if renew_before >= validity:
            raise InputError(
                f"renew_before_hours ({renew_before:g}) must be less than "
                f"epoch_validity_hours ({validity:g})",
                where=where,
                hint="renewal starts that long before an epoch expires; 0 turns it off",
            )
        table = reader.table("limits")
        limits = Limits(
            **{
                key: table.integer(key, getattr(Limits(), key), low, high)
                for key, (low, high) in _LIMIT_RANGES.items()
            }
        )
        table.finish()
        table = reader.table("budget")
        defaults = Budget()
        budget = Budget(
            km2_per_window=table.non_negative("km2_per_window", defaults.km2_per_window),
            window_hours=table.positive("window_hours", defaults.window_hours),
            mutual_checks_per_window=table.integer(
                "mutual_checks_per_window", defaults.mutual_checks_per_window, 0, 2**31 - 1
            ),
            node_km2_per_window=table.non_negative(
                "node_km2_per_window", defaults.node_km2_per_window
            ),
            km2h_per_window=table.non_negative("km2h_per_window", defaults.km2h_per_window),
            node_km2h_per_window=table.non_negative(
                "node_km2h_per_window", defaults.node_km2h_per_window
            ),
        )
        table.finish()
        reader.finish()
        return cls(
            name,
            listen,
            address,
            res,
            res_min,
            epoch_validity_hours=validity,
            slot_minutes=slot_minutes,
            renew_before_hours=renew_before,
            limits=limits,
            budget=budget,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_LIMIT_RANGES = {
    "max_message_bytes": (1024, 2**31 - 1),
    "max_query_tokens": (1, 2**24),
    "max_sessions_per_peer": (1, 2**16),
    "max_mutual_set_size": (128, 1 << 20),
    "clock_skew_seconds": (1, 86_400),
}


class _TableReader:
    """Reads typed keys from one TOML table and rejects keys nobody asked for."""

    def __init__(self, data: object, *, where: str, prefix: str) -> None:
        if not isinstance(data, Mapping):
            raise InputError(f"{prefix.rstrip('.') or 'config'} must be a table", where=where)
        self._data = data
        self._where = where
        self._prefix = prefix
        self._seen: set[str] = set()

    def _key(self, key: str) -> str:
        return self._prefix + key

    def require(self, key: str) -> Any:
        if key not in self._data:
            raise InputError(f"{self._key(key)} is missing", where=self._where)
        return self.get(key, None)

    def get(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        return self._data.get(key, default)

    def table(self, key: str) -> _TableReader:
        return _TableReader(self.get(key, {}), where=self._where, prefix=self._key(key) + ".")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(
                f"{self._key(key)} must be an integer {low}..{high}, got {value!r}",
                where=self._where,
            )
        return value

    def _number(self, key: str, default: float, *, allow_zero: bool) -> float:
        value = self.get(key, default)
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        if ok and (not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
            ok = False
        if not ok:
            rule = "a number >= 0" if allow_zero else "a number > 0"
            raise InputError(f"{self._key(key)} must be {rule}, got {value!r}", where=self._where)
        return float(value)

    def positive(self, key: str, default: float) -> float:
        return self._number(key, default, allow_zero=False)

    def non_negative(self, key: str, default: float) -> float:
        return self._number(key, default, allow_zero=True)

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise InputError(
                f"unknown key {self._key(unknown[0])!r}",
                where=self._where,
                hint="check the spelling; known keys are written by hexpsi init",
            )


def load_config(path: Path) -> NodeConfig:
    raw = read_bytes(path, what="node configuration")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"not valid TOML ({exc})", where=path.name) from None
    return NodeConfig.from_dict(data, where=path.name)
