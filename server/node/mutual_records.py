"""What both sides keep of a mutual check: the receipt on disk and the audit entry.

Receipts live in ``mutual/<receipt_id>`` inside the node directory (owner-only:
they name the peer and the count). Every session that got as far as being
charged leaves an audit entry on the responder, and every session the proposer
started leaves one on the proposer, completed or not, so an abandoned or
refused exchange is on record too. A completed entry carries the whole signed
receipt, so the audit log alone lets a third party check the result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hexpsi.protocol.errors import HexpsiError, InputError
from hexpsi.protocol.mutual.messages import MutualReceipt
from hexpsi.server.node.directory import Node
from hexpsi.server.node.files import SECRET_MODE, atomic_write, ensure_private_dir

MUTUAL_DIR = "mutual"
AUDIT_KIND = "mutual"
"""Audit entry kind on both sides; ``role`` in the details says which side wrote it."""


def receipt_path(node: Node, receipt_id: str) -> Path:
    if len(receipt_id) != 32 or any(c not in "0123456789abcdef" for c in receipt_id):
        raise InputError(f"{receipt_id!r} is not a receipt id (32 lowercase hex characters)")
    return node.directory / MUTUAL_DIR / receipt_id


def store_receipt(node: Node, receipt: MutualReceipt) -> Path:
    """Write the receipt atomically; returns where."""
    directory = node.directory / MUTUAL_DIR
    ensure_private_dir(directory)
    path = receipt_path(node, receipt.receipt_id)
    atomic_write(path, receipt.encode(), mode=SECRET_MODE)
    return path


def load_receipt(node: Node, receipt_id: str) -> MutualReceipt:
    path = receipt_path(node, receipt_id)
    try:
        return MutualReceipt.decode(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"no mutual receipt {receipt_id} in {node.directory}") from None


def completed_details(receipt: MutualReceipt, *, role: str, **extra: Any) -> dict[str, Any]:
    """Audit details of a completed check: the signed receipt and its fields spelled out."""
    statement = receipt.statement
    return {
        "role": role,
        "outcome": "completed",
        "receipt_id": receipt.receipt_id,
        "receipt": receipt.encode().hex(),
        "session_id": statement.session_id.hex(),
        "shared_cells": statement.shared_cells,
        "area_km2": statement.area_km2,
        "res": statement.res,
        "proposer_set_size": statement.proposer_set_size,
        "responder_set_size": statement.responder_set_size,
        "responder_epoch_id": statement.responder_epoch_id.hex(),
        "proposer_epoch_id": statement.proposer_epoch_id.hex(),
        "transcript_hash": statement.transcript_hash.hex(),
        **extra,
    }


def failed_details(
    *, role: str, session_id: bytes, error: BaseException, **extra: Any
) -> dict[str, Any]:
    """Audit details of a check that was charged or started but not completed."""
    if isinstance(error, HexpsiError):
        reason, status = error.explain(), error.status.value
    elif isinstance(error, asyncio.CancelledError | GeneratorExit):
        reason, status = "the call was cancelled or cut off", "CANCELLED"
    else:
        reason, status = f"internal error ({type(error).__name__})", "INTERNAL"
    return {
        "role": role,
        "outcome": "failed",
        "session_id": session_id.hex(),
        "status": status,
        "error": reason,
        **extra,
    }
