"""One error tree for the whole project.

Every error knows how to explain itself to a person and carries a status hint the
server maps to a gRPC code. The split follows h11: ``LocalProtocolError`` means
we misbehaved (called something in the wrong state, bad local configuration),
``RemoteProtocolError`` means the peer did. ``InputError`` covers files and
arguments a user hands us. Verification failures always raise; nothing returns
False for a bad proof or signature.
"""

from __future__ import annotations

import enum


class Status(enum.Enum):
    """The deliberate outcomes a peer can see; mirrors the gRPC codes we use."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class HexpsiError(Exception):
    """Root of every error hexpsi raises on purpose."""

    default_status: Status = Status.INVALID_ARGUMENT

    def __init__(self, message: str, *, status: Status | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.default_status
        self.hint = hint

    def explain(self) -> str:
        """One line a person can act on."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(HexpsiError):
    """A file or argument handed to us is wrong; ``where`` says which part."""

    def __init__(self, message: str, *, where: str = "", hint: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.where = where


class LocalProtocolError(HexpsiError):
    """We misbehaved: a call in the wrong state or an inconsistent local setup."""

    default_status = Status.FAILED_PRECONDITION


class RemoteProtocolError(HexpsiError):
    """The peer sent something the protocol does not allow."""

    default_status = Status.INVALID_ARGUMENT


class VerificationError(RemoteProtocolError):
    """A proof, signature, digest or transcript did not verify.

    Deliberately terse: one opaque error per check so there is no oracle telling a
    cheating peer which part of its forgery was caught.
    """

    default_status = Status.PERMISSION_DENIED


class StaleError(RemoteProtocolError):
    """An epoch, descriptor or session that is no longer (or not yet) valid."""

    default_status = Status.FAILED_PRECONDITION


class BudgetExhausted(HexpsiError):
    """A request needs more of a budget than its window has left.

    ``remaining`` is what is left now; ``frees_at`` is when enough will have
    freed up (Unix seconds), or None if the request is larger than the whole
    budget.
    """

    default_status = Status.RESOURCE_EXHAUSTED

    def __init__(
        self, message: str, *, remaining: float, frees_at: float | None, hint: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.remaining = remaining
        self.frees_at = frees_at


class NotFound(HexpsiError):
    """What the caller asked for does not exist (for it)."""

    default_status = Status.NOT_FOUND


class Unauthenticated(HexpsiError):
    """The caller did not say who it is (no client certificate, no plaintext name)."""

    default_status = Status.UNAUTHENTICATED


class PermissionDenied(HexpsiError):
    """The caller is known to be someone this node does not answer."""

    default_status = Status.PERMISSION_DENIED


class Unavailable(HexpsiError):
    """A peer or a service cannot be reached or cannot serve right now."""

    default_status = Status.UNAVAILABLE


class ResourceExhausted(HexpsiError):
    """A limit on concurrent calls, sizes or rates was reached."""

    default_status = Status.RESOURCE_EXHAUSTED


class DeadlineExceeded(HexpsiError):
    """Someone took too long: a peer that stopped reading or sending, a call past its time."""

    default_status = Status.DEADLINE_EXCEEDED


class FailedPrecondition(HexpsiError):
    """The call is fine but this node's state does not allow it now (no epoch yet, expired)."""

    default_status = Status.FAILED_PRECONDITION
