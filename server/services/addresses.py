"""Addresses a server binds: ``HOST:PORT`` with port 0 allowed, and which hosts are loopback.

Shared by the node's gRPC server (plaintext is refused off loopback) and its
local monitoring endpoints (health and metrics are refused off loopback).
"""

from __future__ import annotations

import ipaddress

from hexpsi.protocol.errors import InputError
from hexpsi.server.node.config import parse_address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(address: str, *, what: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` to bind; port 0 lets the system choose a free port (tests, tools)."""
    head, sep, port = address.rpartition(":")
    if sep and port == "0":
        host, _ = parse_address(f"{head}:1", what=what)
        return host, 0
    return parse_address(address, what=what)


def parse_loopback_listen(address: str, *, what: str) -> tuple[str, int]:
    """``HOST:PORT`` on a loopback address, or one line saying why not.

    For endpoints without TLS or authentication: only local processes reach them.
    """
    host, port = parse_listen(address, what=what)
    if not is_loopback(host):
        raise InputError(
            f"refusing {what} {address}: it serves without TLS, so only on a loopback address",
            hint=f"use 127.0.0.1:{port or 'PORT'} or [::1]:{port or 'PORT'}",
        )
    return host, port


def bind_address(host: str, port: int) -> str:
    """``host:port`` as gRPC binds it (``[v6]:port`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
