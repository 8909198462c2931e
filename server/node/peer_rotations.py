"""Re-pinning a peer on the strength of its rotation statements (``protocol.rotation``).

A statement counts only if it hands over from exactly what is pinned: the
peer's name, its pinned signing key (whose signature it must carry) and its
pinned certificate. Two ways in:

- :func:`apply_statements`: statements an operator was handed
  (``hexpsi peer update DIR NAME --rotation FILE``), every one of which must
  apply, in sequence order; anything else is refused with the reason.
- :func:`follow_statements`: the statements a peer presents with its epoch
  descriptor. Only those leading on from what is pinned are followed, and only
  ones that keep the certificate: the connection they came over was
  authenticated with the pinned certificate, so a TLS rotation cannot arrive
  this way (the peer could not have been reached after it).

Either way the new certificate must be a pinnable one for the peer's name, and
neither it nor the new signing key may be pinned for another peer. The peer
file then holds the new identity and every statement applied
(``PeerBook.repin``), so the ledger, which knows peers by name, carries on.
"""

from __future__ import annotations

from collections.abc import Sequence

from hexpsi.protocol.errors import HexpsiError, VerificationError
from hexpsi.protocol.rotation import MAX_ROTATIONS, Pinned, SignedRotation, follow, hand_over
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


def follow_statements(
    book: PeerBook, name: str, presented: Sequence[bytes]
) -> tuple[Peer, list[SignedRotation]]:
    """Re-pin ``name`` as far as the statements it presented lead from what is pinned.

    Returns the peer (unchanged when none lead on) and the statements applied.
    """
    peer = book.peer(name)
    if len(presented) > MAX_ROTATIONS:
        raise VerificationError(
            f"peer {name} presents {len(presented)} rotation statements (at most "
            f"{MAX_ROTATIONS} are read)"
        )
    statements = []
    for data in presented:
        try:
            statements.append(SignedRotation.from_signed_message(data))
        except HexpsiError as error:
            raise VerificationError(
                f"peer {name} presents a rotation statement that does not verify: {error.message}"
            ) from None
    return _repin(book, peer, follow(pinned(peer), statements, certificate_may_change=False))


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
