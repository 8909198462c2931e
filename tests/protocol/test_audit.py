"""The audit chain catches every edit, gap, reordering, truncation and foreign signature."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from hexpsi.protocol.audit import (
    GENESIS_HASH,
    ROTATION_KIND,
    ChainBroken,
    Entry,
    canonical_json,
    encode_entry,
    entry_hash,
    rotation_details,
    sign_entry,
    sign_head,
    verify_chain,
)
from hexpsi.protocol.errors import InputError, VerificationError
from hexpsi.protocol.rotation import Rotation, SignedRotation

KEY = SigningKey(bytes(range(32)))
OTHER_KEY = SigningKey(bytes(range(1, 33)))


def make_chain(count: int, key: SigningKey = KEY) -> list[Entry]:
    entries: list[Entry] = []
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        entry = sign_entry(
            seq=seq,
            time=1_700_000_000.0 + seq,
            kind="evaluate",
            peer=f"peer-{seq % 3}",
            details=canonical_json({"area_km2": seq * 1.5, "groups": {"9": seq}}),
            prev_hash=prev,
            signing_key=key,
        )
        entries.append(entry)
        prev = entry.hash
    return entries


def test_a_fresh_chain_verifies_with_and_without_its_head() -> None:
    entries = make_chain(5)
    verify_chain(entries, KEY.verify_key)
    verify_chain(entries, KEY.verify_key, head=sign_head(5, entries[-1].hash, KEY))


def test_an_empty_log_verifies_against_the_genesis_head() -> None:
    verify_chain([], KEY.verify_key, head=sign_head(0, GENESIS_HASH, KEY))


def test_entries_link_to_their_predecessor() -> None:
    entries = make_chain(3)
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash


TAMPERS = {
    "time": lambda e: dataclasses.replace(e, time=e.time + 1),
    "kind": lambda e: dataclasses.replace(e, kind="mutual"),
    "peer": lambda e: dataclasses.replace(e, peer="someone-else"),
    "details": lambda e: dataclasses.replace(e, details=canonical_json({"area_km2": 0})),
    "prev_hash": lambda e: dataclasses.replace(e, prev_hash=bytes(32)),
    "hash": lambda e: dataclasses.replace(e, hash=bytes(32)),
    "signature": lambda e: dataclasses.replace(e, signature=bytes(64)),
    "seq": lambda e: dataclasses.replace(e, seq=e.seq + 10),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_editing_any_field_is_caught_at_that_entry(field: str) -> None:
    entries = make_chain(5)
    entries[2] = TAMPERS[field](entries[2])
    with pytest.raises(ChainBroken) as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 3
    assert isinstance(caught.value, VerificationError)


def test_a_rehashed_edit_still_breaks_the_next_link() -> None:
    """An editor who also fixes the hash (but cannot re-sign) is caught at the signature."""
    entries = make_chain(4)
    edited = dataclasses.replace(entries[1], details=canonical_json({"area_km2": 0}))
    new_hash = entry_hash(
        edited.prev_hash,
        encode_entry(edited.seq, edited.time, edited.kind, edited.peer, edited.details),
    )
    entries[1] = dataclasses.replace(edited, hash=new_hash)
    with pytest.raises(ChainBroken, match="signature") as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 2


def test_a_missing_entry_is_named() -> None:
    entries = make_chain(5)
    del entries[2]
    with pytest.raises(ChainBroken, match="missing") as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 3


def test_reordered_entries_are_caught() -> None:
    entries = make_chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    with pytest.raises(ChainBroken) as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 2


def test_a_duplicated_entry_is_caught() -> None:
    entries = make_chain(3)
    entries.insert(2, entries[1])
    with pytest.raises(ChainBroken, match="out of order") as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 3


def test_a_chain_signed_by_another_key_is_rejected_at_the_first_entry() -> None:
    with pytest.raises(ChainBroken, match="signature") as caught:
        verify_chain(make_chain(3, OTHER_KEY), KEY.verify_key)
    assert caught.value.seq == 1


def test_cutting_off_the_newest_entries_is_caught_by_the_head() -> None:
    entries = make_chain(5)
    head = sign_head(5, entries[-1].hash, KEY)
    verify_chain(entries[:3], KEY.verify_key)  # the chain alone cannot tell
    with pytest.raises(ChainBroken, match="signed head records 5") as caught:
        verify_chain(entries[:3], KEY.verify_key, head=head)
    assert caught.value.seq == 4


def test_a_forged_or_foreign_head_is_rejected() -> None:
    entries = make_chain(3)
    with pytest.raises(ChainBroken, match="head"):
        verify_chain(entries, KEY.verify_key, head=sign_head(3, entries[-1].hash, OTHER_KEY))
    with pytest.raises(ChainBroken, match="head"):
        verify_chain(entries, KEY.verify_key, head=sign_head(3, bytes(32), KEY))
    with pytest.raises(ChainBroken, match="after the signed head"):
        verify_chain(entries, KEY.verify_key, head=sign_head(2, entries[1].hash, KEY))


def test_a_signature_over_the_bare_hash_is_not_an_audit_signature() -> None:
    """The signed message carries a label, so other 32-byte signatures cannot be replayed."""
    entry = make_chain(1)[0]
    bare = KEY.sign(entry.hash).signature
    with pytest.raises(ChainBroken, match="signature"):
        verify_chain([dataclasses.replace(entry, signature=bare)], KEY.verify_key)


def test_malformed_fields_fail_verification_rather_than_crash() -> None:
    entry = make_chain(1)[0]
    for bad in (
        dataclasses.replace(entry, details=b"not json"),
        dataclasses.replace(entry, details="{}"),  # type: ignore[arg-type]
        dataclasses.replace(entry, time=math.nan),
        dataclasses.replace(entry, kind="Bad Kind"),
    ):
        with pytest.raises(ChainBroken, match="malformed"):
            verify_chain([bad], KEY.verify_key)


def test_canonical_json_is_independent_of_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'


def test_canonical_json_refuses_what_json_cannot_say_exactly() -> None:
    with pytest.raises(InputError):
        canonical_json({"x": math.nan})
    with pytest.raises(InputError):
        canonical_json({"x": b"bytes"})
    with pytest.raises(InputError):
        canonical_json([1, 2])  # type: ignore[arg-type]


def test_sign_entry_refuses_non_canonical_details() -> None:
    with pytest.raises(InputError, match="canonical"):
        sign_entry(
            seq=1,
            time=1.0,
            kind="evaluate",
            peer="p",
            details=b'{"b":1, "a":2}',
            prev_hash=GENESIS_HASH,
            signing_key=KEY,
        )


def test_sequence_numbers_start_at_one() -> None:
    with pytest.raises(InputError, match="sequence"):
        encode_entry(0, 1.0, "evaluate", "p", b"{}")


text = st.text(alphabet="ab-", max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.tuples(st.from_regex(r"[a-z][a-z-]{0,3}", fullmatch=True), text),
    others=st.tuples(st.from_regex(r"[a-z][a-z-]{0,3}", fullmatch=True), text),
)
def test_the_encoding_is_unambiguous(kinds: tuple[str, str], others: tuple[str, str]) -> None:
    """Moving characters between fields must change the bytes (length prefixes)."""
    one = encode_entry(1, 2.0, kinds[0], kinds[1], b"{}")
    two = encode_entry(1, 2.0, others[0], others[1], b"{}")
    assert (one == two) == (kinds == others)


def continue_chain(entries: list[Entry], count: int, *, note: str) -> list[Entry]:
    """``entries`` followed by ``count`` more signed with the same key, marked ``note``."""
    out = list(entries)
    for _ in range(count):
        prev = out[-1] if out else None
        seq = prev.seq + 1 if prev else 1
        out.append(
            sign_entry(
                seq=seq,
                time=1_700_000_000.0 + seq,
                kind="evaluate",
                peer="peer-1",
                details=canonical_json({"note": note, "seq": seq}),
                prev_hash=prev.hash if prev else GENESIS_HASH,
                signing_key=KEY,
            )
        )
    return out


def test_an_entry_spliced_in_from_a_fork_of_the_log_breaks_its_link() -> None:
    """A backup restored after entry 2 went on differently (3', 4'), signed by the same
    key. Splicing the fork's 4' after the original 3 gives entries that each carry a
    correct hash and a valid signature, in order, with the fork's own valid head:
    only the link from 4' to 3 is wrong.

    Checked to fail without the protection: with the ``prev_hash`` comparison removed
    from ``_verify_entry`` in ``hexpsi.protocol.audit``, the spliced chain verified,
    with and without the head (``pytest.raises`` failed).
    """
    common = make_chain(2)
    original = continue_chain(common, 2, note="original")
    fork = continue_chain(common, 2, note="restored backup")
    assert original[2].hash != fork[2].hash
    verify_chain(original, KEY.verify_key, head=sign_head(4, original[3].hash, KEY))
    verify_chain(fork, KEY.verify_key, head=sign_head(4, fork[3].hash, KEY))
    spliced = [*original[:3], fork[3]]
    for head in (None, sign_head(4, fork[3].hash, KEY)):
        with pytest.raises(ChainBroken) as caught:
            verify_chain(spliced, KEY.verify_key, head=head)
        assert caught.value.seq == 4
        assert caught.value.reason == "does not link to the previous entry's hash"


# ---------------------------------------------------------------- key rotation


NEW_KEY = SigningKey(bytes(range(2, 34)))
CERTIFICATE = b"the node's certificate"


def rotation_statement(
    old: SigningKey, new: SigningKey, sequence: int = 1, *, signer: SigningKey | None = None
) -> SignedRotation:
    rotation = Rotation(
        node="alpha",
        sequence=sequence,
        rotated_at=1_700_000_100.0,
        old_signing_key=bytes(old.verify_key),
        new_signing_key=bytes(new.verify_key),
        old_certificate_sha256=hashlib.sha256(CERTIFICATE).digest(),
        new_certificate_sha256=hashlib.sha256(CERTIFICATE).digest(),
        new_certificate=CERTIFICATE,
    )
    signed = SignedRotation.sign(rotation, old, new)
    if signer is not None:
        signed = dataclasses.replace(signed, signature=signer.sign(signed.encoded).signature)
    return signed


def extend(
    entries: list[Entry], key: SigningKey, kind: str = "evaluate", details: object = None
) -> list[Entry]:
    prev = entries[-1].hash if entries else GENESIS_HASH
    seq = len(entries) + 1
    entry = sign_entry(
        seq=seq,
        time=1_700_000_000.0 + seq,
        kind=kind,
        peer="",
        details=canonical_json(details if isinstance(details, dict) else {"n": seq}),
        prev_hash=prev,
        signing_key=key,
    )
    return [*entries, entry]


def rotated_chain(
    statement: SignedRotation | None = None, *, after: SigningKey = NEW_KEY
) -> list[Entry]:
    """Two entries under KEY, the rotation (signed by KEY), two entries under ``after``."""
    statement = statement or rotation_statement(KEY, NEW_KEY)
    entries = make_chain(2)
    entries = extend(entries, KEY, ROTATION_KIND, rotation_details(statement))
    return extend(extend(entries, after), after)


def test_a_rotated_chain_verifies_from_the_first_key_and_ends_under_the_new() -> None:
    entries = rotated_chain()
    head = sign_head(5, entries[-1].hash, NEW_KEY)
    assert bytes(verify_chain(entries, KEY.verify_key, head=head)) == bytes(NEW_KEY.verify_key)
    verify_chain(entries, [KEY.verify_key, NEW_KEY.verify_key], head=head)
    assert bytes(verify_chain(entries[:3], KEY.verify_key)) == bytes(NEW_KEY.verify_key)


def test_entries_after_a_rotation_signed_by_the_old_key_are_caught() -> None:
    with pytest.raises(ChainBroken, match="signature does not verify") as caught:
        verify_chain(rotated_chain(after=KEY), KEY.verify_key)
    assert caught.value.seq == 4


def test_a_head_signed_by_the_old_key_after_a_rotation_is_caught() -> None:
    entries = rotated_chain()
    with pytest.raises(ChainBroken, match="head"):
        verify_chain(entries, KEY.verify_key, head=sign_head(5, entries[-1].hash, KEY))


def test_a_rotation_entry_carrying_a_forged_statement_is_caught() -> None:
    """Someone who holds the log's key (not a peer's) cannot make a statement another key
    signed look like the node's: the statement inside must verify with the key in force."""
    forged = rotation_statement(KEY, OTHER_KEY, signer=OTHER_KEY)
    with pytest.raises(ChainBroken, match="malformed key rotation") as caught:
        verify_chain(rotated_chain(forged, after=OTHER_KEY), KEY.verify_key)
    assert caught.value.seq == 3


def test_a_rotation_from_a_key_not_in_force_is_caught() -> None:
    elsewhere = rotation_statement(OTHER_KEY, NEW_KEY)
    with pytest.raises(ChainBroken, match="other than the one in force") as caught:
        verify_chain(rotated_chain(elsewhere), KEY.verify_key)
    assert caught.value.seq == 3


def test_rotation_details_that_differ_from_their_statement_are_caught() -> None:
    details = {**rotation_details(rotation_statement(KEY, NEW_KEY)), "new_signing_key": "00" * 32}
    entries = extend(make_chain(2), KEY, ROTATION_KIND, details)
    with pytest.raises(ChainBroken, match="do not match the statement") as caught:
        verify_chain(entries, KEY.verify_key)
    assert caught.value.seq == 3


def test_rotation_sequences_must_grow() -> None:
    first = rotation_statement(KEY, NEW_KEY, 2)
    again = rotation_statement(NEW_KEY, OTHER_KEY, 1)
    entries = extend(make_chain(1), KEY, ROTATION_KIND, rotation_details(first))
    entries = extend(entries, NEW_KEY, ROTATION_KIND, rotation_details(again))
    with pytest.raises(ChainBroken, match="does not follow rotation 2"):
        verify_chain(entries, KEY.verify_key)


def test_known_keys_must_be_the_ones_the_log_hands_over_to() -> None:
    entries = rotated_chain()
    with pytest.raises(ChainBroken, match="not to the known signing key 2") as caught:
        verify_chain(entries, [KEY.verify_key, OTHER_KEY.verify_key])
    assert caught.value.seq == 3
    with pytest.raises(ChainBroken, match="ends before it hands over"):
        verify_chain(make_chain(3), [KEY.verify_key, NEW_KEY.verify_key])
    with pytest.raises(InputError, match="first signing key"):
        verify_chain(make_chain(1), [])
