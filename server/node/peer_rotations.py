"""Re-pinning a peer on the strength of its rotation statements (``protocol.rotation``).

A statement counts only if it hands over from exactly what is pinned: the
peer's name, its pinned signing key (whose signature it must carry) and its
pinned certificate. :func:`apply_statements` takes the statements an operator
was handed (``hexpsi peer update DIR NAME --rotation FILE``), every one of
which must apply, in sequence order; anything else is refused with the reason.

The new certificate must be a pinnable one for the peer's name, and neither it
nor the new signing key may be pinned for another peer. The peer
file then holds the new identity and every statement applied
(``PeerBook.repin``), so the ledger, which knows peers by name, carries on.
"""

from __future__ import annotations

from collections.abc import Sequence

from hexpsi.protocol.rotation import Pinned, SignedRotation, hand_over
from hexpsi.server.node import tls
from hexpsi.server.node.identity import Identity
from hexpsi.server.node.peers import Peer, PeerBook


def pinned(peer: Peer) -> Pinned:
    """What this node pins of ``peer``, as the protocol judges statements against it."""
    return Pinned(
        node=peer.name,
        signing_key=peer.identity.signing_public_key,
        certificate_sha256=bytes.fromhex(peer.certificate_sha256),
        rotations=peer.rotations,
    )


def _repin(book: PeerBook, peer: Peer, state: Pinned) -> tuple[Peer, list[SignedRotation]]:
    applied = list(state.rotations[len(peer.rotations) :])
    if not applied:
        return peer, []
    last = applied[-1].rotation
    where = f"rotation {last.sequence} of {peer.name}"
    certificate = tls.load_certificate(last.new_certificate, where=where)
    tls.check_peer_certificate(certificate, peer.name, where=where)
    identity = Identity(
        peer.name, peer.identity.address, tls.certificate_pem(certificate), last.new_signing_key
    )
    return book.repin(identity, state.rotations), applied


def apply_statements(
    book: PeerBook, name: str, statements: Sequence[SignedRotation]
) -> tuple[Peer, list[SignedRotation]]:
    """Re-pin ``name`` through every one of ``statements``; returns the peer and them."""
    peer = book.peer(name)
    return _repin(book, peer, hand_over(pinned(peer), statements))


PEER_ROTATION_AUDIT_KIND = "peer-rotation"
"""This node's audit entry when it re-pins a peer on the strength of a statement."""


def audit_details(statement: SignedRotation, *, via: str) -> dict[str, object]:
    """What the ``peer-rotation`` entry says: which rotation, from which keys to which, how."""
    rotation = statement.rotation
    return {
        "rotation": rotation.sequence,
        "changed": rotation.what,
        "old_signing_key": rotation.old_signing_key.hex(),
        "new_signing_key": rotation.new_signing_key.hex(),
        "old_certificate_sha256": rotation.old_certificate_sha256.hex(),
        "new_certificate_sha256": rotation.new_certificate_sha256.hex(),
        "via": via,
    }
