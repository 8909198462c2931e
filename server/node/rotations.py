"""The key rotations a node made: its statements, its retired keys, and switching atomically.

Layout inside the node directory::

    rotations/<n>.json        rotation n's signed statement (``protocol.rotation``), kept so
                              the node can present the chain of them to its peers
    rotated/<n>/signing.key   the keys rotation n replaced, owner-only, never used again
    rotated/<n>/tls.key
    rotated/<n>/tls.crt
    rotating/                 a rotation decided but not yet finished (see below)

A rotation touches several files: the key files, the signature of every stored
epoch (re-signed with the new key, so the epoch being served stays the same
epoch), the audit log (a ``key-rotation`` entry signed by the old key, the head
by the new one) and the records above. So it is staged first under a temporary
name (``.rotating-<random>/``: the statement, the old keys, every replacement
file and where it goes), and *decided* by one ``rename`` of that directory to
``rotating/``. Everything after is idempotent and done by :func:`finish_pending`,
which every load of the node runs first (``Node.__init__``): whatever the moment
a crash hits, the next command sees either the node before the rotation (the
staging directory is left over and removed) or finishes it and sees the node
after, never a mix of old and new keys.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from nacl.signing import SigningKey, VerifyKey

from hexpsi.protocol.errors import InputError
from hexpsi.protocol.rotation import Rotation, SignedRotation, check_chain
from hexpsi.server.node.auditlog import AuditLog
from hexpsi.server.node.files import (
    SECRET_MODE,
    atomic_write,
    ensure_private_dir,
    fsync_directory,
    make_private_dir,
    read_bytes,
    read_secret,
    write_secret,
)
from hexpsi.server.node.keyfiles import SEED_SIZE, SIGNING_KEY_FILE

log = logging.getLogger(__name__)

ROTATIONS_DIR = "rotations"
ROTATED_DIR = "rotated"
PENDING_DIR = "rotating"
STAGING_PREFIX = ".rotating-"
STATEMENT_FILE = "statement.json"
MOVES_FILE = "moves.json"
OLD_DIR = "old"
NEW_DIR = "new"


def statement_path(directory: Path, sequence: int) -> Path:
    return directory / ROTATIONS_DIR / f"{sequence}.json"


def own_rotations(directory: Path, name: str) -> list[SignedRotation]:
    """The node's rotation statements, 1 to n, each handing over from the one before.

    Refuses a gap, a statement for another name, or one that does not start where
    the previous one ended; whether the last ends at the node's keys is checked
    by the caller (``Node.rotations``).
    """
    root = directory / ROTATIONS_DIR
    if not root.is_dir():
        return []
    found: dict[int, Path] = {}
    for path in root.glob("*.json"):
        if path.stem.isdigit():
            found[int(path.stem)] = path
    statements: list[SignedRotation] = []
    for index, sequence in enumerate(sorted(found), start=1):
        where = f"{ROTATIONS_DIR}/{found[sequence].name}"
        if sequence != index:
            raise InputError(f"rotation {index} is missing before it", where=where)
        statement = SignedRotation.from_json(
            read_bytes(found[sequence], what="rotation statement"), where=where
        )
        rotation = statement.rotation
        if rotation.sequence != sequence or rotation.node != name:
            raise InputError(
                f"holds rotation {rotation.sequence} of {rotation.node!r}, "
                f"not rotation {sequence} of {name!r}",
                where=where,
            )
        statements.append(statement)
    try:
        check_chain(statements, node=name)
    except InputError as error:
        raise InputError(error.message, where=ROTATIONS_DIR) from None
    return statements


def signing_key_history(rotations: Sequence[SignedRotation], current: VerifyKey) -> list[VerifyKey]:
    """Every signing key the node has had, first first, ending with ``current``."""
    keys: list[VerifyKey] = []
    for statement in rotations:
        rotation = statement.rotation
        if not keys:
            keys.append(VerifyKey(rotation.old_signing_key))
        if rotation.changes_signing_key:
            keys.append(VerifyKey(rotation.new_signing_key))
    return keys or [current]


def next_sequence(directory: Path, name: str) -> int:
    """The sequence the node's next rotation gets; never one whose old keys are kept."""
    sequence = len(own_rotations(directory, name)) + 1
    kept = directory / ROTATED_DIR
    if kept.is_dir():
        used = [int(path.name) for path in kept.iterdir() if path.name.isdigit()]
        sequence = max([sequence, *(n + 1 for n in used)])
    return sequence


# ---------------------------------------------------------------- deciding and finishing


def _remove_stale_staging(directory: Path) -> None:
    """Staging directories of rotations that were never decided (a crash before the rename)."""
    for path in directory.glob(f"{STAGING_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            log.warning("removed %s: a rotation interrupted before it was decided", path.name)


def commit_rotation(
    directory: Path,
    statement: SignedRotation,
    *,
    old_files: Mapping[str, bytes],
    replacements: Sequence[tuple[str, bytes, int]],
    audit_path: Path,
) -> None:
    """Stage the rotation, decide it with one rename, then finish it.

    ``old_files`` are the key files being replaced (kept in ``rotated/<n>/``, all
    owner-only); ``replacements`` are ``(path inside the node directory, content,
    mode)`` to put in place of the old ones.
    """
    pending = directory / PENDING_DIR
    if pending.exists():
        raise InputError(
            f"{pending} exists: another rotation is being finished",
            hint="load the node once (e.g. hexpsi identity DIR) to finish it, then rotate again",
        )
    _remove_stale_staging(directory)
    staging = directory / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
    make_private_dir(staging)
    try:
        make_private_dir(staging / OLD_DIR)
        for name, data in old_files.items():
            write_secret(staging / OLD_DIR / name, data)
        make_private_dir(staging / NEW_DIR)
        moves: list[list[str]] = []
        for index, (target, data, mode) in enumerate(replacements):
            _check_target(target)
            staged = f"{NEW_DIR}/{index}-{PurePosixPath(target).name}"
            atomic_write(staging / staged, data, mode=mode)
            moves.append([staged, target])
        atomic_write(staging / MOVES_FILE, json.dumps(moves).encode("ascii"), mode=SECRET_MODE)
        atomic_write(staging / STATEMENT_FILE, statement.to_json())
        fsync_directory(staging)
        os.rename(staging, pending)
        fsync_directory(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finish_pending(directory, audit_path=audit_path)


def _check_target(target: str) -> PurePosixPath:
    path = PurePosixPath(target)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise InputError(f"a rotation may only replace files inside the node: {target!r}")
    return path


def _read_moves(pending: Path) -> list[tuple[str, str]]:
    where = f"{PENDING_DIR}/{MOVES_FILE}"
    try:
        moves = json.loads(read_bytes(pending / MOVES_FILE, what="rotation plan"))
    except ValueError:
        raise InputError("not valid JSON", where=where) from None
    if not isinstance(moves, list) or not all(
        isinstance(move, list) and len(move) == 2 and all(isinstance(p, str) for p in move)
        for move in moves
    ):
        raise InputError("not a list of [staged, target] pairs", where=where)
    for staged, target in moves:
        _check_target(staged)
        _check_target(target)
    return [(staged, target) for staged, target in moves]


def _signing_key(path: Path, *, what: str) -> SigningKey:
    seed = read_secret(path, what=what)
    if len(seed) != SEED_SIZE:
        raise InputError(f"expected a {SEED_SIZE}-byte Ed25519 seed", where=path.name)
    return SigningKey(seed)


def finish_pending(directory: Path, *, audit_path: Path) -> SignedRotation | None:
    """Finish a decided rotation, if there is one; every step may be run again.

    In order: the old keys move to ``rotated/<n>/``; the audit log gets the
    ``key-rotation`` entry (signed by the old key, the head by the new) unless it
    has it; each replacement file is renamed over its target; the statement is
    kept as ``rotations/<n>.json``; ``rotating/`` goes.
    """
    pending = directory / PENDING_DIR
    if not pending.is_dir():
        return None
    statement = SignedRotation.from_json(
        read_bytes(pending / STATEMENT_FILE, what="pending rotation statement"),
        where=f"{PENDING_DIR}/{STATEMENT_FILE}",
    )
    rotation = statement.rotation
    moves = _read_moves(pending)
    kept = directory / ROTATED_DIR / str(rotation.sequence)
    if (pending / OLD_DIR).is_dir():
        if kept.exists():
            raise InputError(
                f"cannot finish rotation {rotation.sequence}: {kept} already exists",
                hint="retired keys are never overwritten; move that directory aside first",
            )
        ensure_private_dir(directory / ROTATED_DIR)
        os.rename(pending / OLD_DIR, kept)
        fsync_directory(kept.parent)
        fsync_directory(pending)
    with AuditLog(audit_path, _old_signing_key(directory, kept, rotation)) as audit:
        if audit.rotation_entry(rotation.sequence) is None:
            new_key = _new_signing_key(directory, pending, moves)
            if bytes(new_key.verify_key) != rotation.new_signing_key:
                raise InputError(
                    f"the new signing key is not the one rotation {rotation.sequence} names",
                    where=PENDING_DIR,
                )
            audit.append_rotation(statement, new_key, rotation.rotated_at)
    for staged, target in moves:
        source = pending / staged
        if not source.exists():
            continue
        destination = directory / target
        if not destination.parent.is_dir():
            # An epoch pruned in the meantime: nothing left to re-sign.
            source.unlink()
            continue
        os.replace(source, destination)
        fsync_directory(destination.parent)
    ensure_private_dir(directory / ROTATIONS_DIR)
    atomic_write(statement_path(directory, rotation.sequence), statement.to_json())
    shutil.rmtree(pending)
    fsync_directory(directory)
    log.info("rotation %d of %s finished", rotation.sequence, rotation.node)
    return statement


def _old_signing_key(directory: Path, kept: Path, rotation: Rotation) -> SigningKey:
    retired = kept / SIGNING_KEY_FILE
    path = retired if rotation.changes_signing_key else directory / SIGNING_KEY_FILE
    key = _signing_key(path, what="signing key")
    if bytes(key.verify_key) != rotation.old_signing_key:
        raise InputError(
            f"the signing key kept is not the one rotation {rotation.sequence} hands over from",
            where=str(path.relative_to(directory)),
        )
    return key


def _new_signing_key(
    directory: Path, pending: Path, moves: Sequence[tuple[str, str]]
) -> SigningKey:
    """The signing key the rotation hands over to: staged, or already in place."""
    for staged, target in moves:
        if target == SIGNING_KEY_FILE and (pending / staged).exists():
            return _signing_key(pending / staged, what="new signing key")
    return _signing_key(directory / SIGNING_KEY_FILE, what="signing key")
