"""Translation between the mutual check's protobuf messages and ``protocol`` values.

Both the servicer and the client use these, so neither repeats a field mapping.
A message of the wrong kind for the step the session is at, or with malformed
fields, raises ``RemoteProtocolError`` naming what was due and what came, which
the servicer turns into INVALID_ARGUMENT and the client into an error line.
"""

from __future__ import annotations

from typing import Literal

from hexpsi.protocol.errors import RemoteProtocolError
from hexpsi.protocol.mutual.messages import (
    ElementChunk,
    MutualAccept,
    MutualCommitment,
    MutualFinish,
    MutualStart,
    MutualStatement,
)
from hexpsi.server.rpc.hexpsi.v1 import mutual_pb2

ChunkStep = Literal["blinded", "double_blinded"]

REQUEST_STEPS = {
    "start": "the start",
    "blinded": "a chunk of the proposer's blinded set",
    "commitment": "the commitment",
    "double_blinded": "a chunk of the double-blinded responder set",
    "finish": "the signed statement",
}
RESPONSE_STEPS = {
    "accept": "the accept",
    "blinded": "a chunk of the responder's blinded set",
    "double_blinded": "a chunk of the double-blinded proposer set",
    "countersignature": "the countersignature",
}


def _step_of(
    message: mutual_pb2.MutualRequest | mutual_pb2.MutualResponse,
    step: str,
    steps: dict[str, str],
    sender: str,
) -> None:
    got = message.WhichOneof("step")
    if got != step:
        shown = steps.get(got, got) if got else "an empty message"
        raise RemoteProtocolError(f"the {sender} sent {shown} where {steps[step]} was due")


# --- proposer -> responder ----------------------------------------------------------


def start_request(start: MutualStart) -> mutual_pb2.MutualRequest:
    return mutual_pb2.MutualRequest(
        start=mutual_pb2.MutualStart(
            session_id=start.session_id,
            descriptor_digest=start.descriptor_digest,
            proposer_epoch_id=start.proposer_epoch_id,
            proposer_set_size=start.proposer_set_size,
        )
    )


def read_start(message: mutual_pb2.MutualRequest) -> MutualStart:
    _step_of(message, "start", REQUEST_STEPS, "proposer")
    start = message.start
    return MutualStart(
        session_id=start.session_id,
        descriptor_digest=start.descriptor_digest,
        proposer_epoch_id=start.proposer_epoch_id,
        proposer_set_size=start.proposer_set_size,
    )


def chunk_request(step: ChunkStep, chunk: ElementChunk) -> mutual_pb2.MutualRequest:
    message = mutual_pb2.ElementChunk(index=chunk.index, elements=chunk.joined())
    if step == "blinded":
        return mutual_pb2.MutualRequest(blinded=message)
    return mutual_pb2.MutualRequest(double_blinded=message)


def read_request_chunk(message: mutual_pb2.MutualRequest, step: ChunkStep) -> ElementChunk:
    _step_of(message, step, REQUEST_STEPS, "proposer")
    chunk = message.blinded if step == "blinded" else message.double_blinded
    return ElementChunk.from_joined(chunk.index, chunk.elements)


def commitment_request(commitment: MutualCommitment) -> mutual_pb2.MutualRequest:
    return mutual_pb2.MutualRequest(
        commitment=mutual_pb2.MutualCommitment(digest=commitment.digest)
    )


def read_commitment(message: mutual_pb2.MutualRequest) -> MutualCommitment:
    _step_of(message, "commitment", REQUEST_STEPS, "proposer")
    return MutualCommitment(message.commitment.digest)


def finish_request(finish: MutualFinish) -> mutual_pb2.MutualRequest:
    return mutual_pb2.MutualRequest(
        finish=mutual_pb2.MutualFinish(
            statement=finish.statement.encode(), signature=finish.signature
        )
    )


def read_finish(message: mutual_pb2.MutualRequest) -> MutualFinish:
    _step_of(message, "finish", REQUEST_STEPS, "proposer")
    return MutualFinish(MutualStatement.decode(message.finish.statement), message.finish.signature)


# --- responder -> proposer ----------------------------------------------------------


def accept_response(accept: MutualAccept) -> mutual_pb2.MutualResponse:
    return mutual_pb2.MutualResponse(
        accept=mutual_pb2.MutualAccept(
            session_id=accept.session_id, responder_set_size=accept.responder_set_size
        )
    )


def read_accept(message: mutual_pb2.MutualResponse) -> MutualAccept:
    _step_of(message, "accept", RESPONSE_STEPS, "responder")
    return MutualAccept(message.accept.session_id, message.accept.responder_set_size)


def chunk_response(step: ChunkStep, chunk: ElementChunk) -> mutual_pb2.MutualResponse:
    message = mutual_pb2.ElementChunk(index=chunk.index, elements=chunk.joined())
    if step == "blinded":
        return mutual_pb2.MutualResponse(blinded=message)
    return mutual_pb2.MutualResponse(double_blinded=message)


def read_response_chunk(message: mutual_pb2.MutualResponse, step: ChunkStep) -> ElementChunk:
    _step_of(message, step, RESPONSE_STEPS, "responder")
    chunk = message.blinded if step == "blinded" else message.double_blinded
    return ElementChunk.from_joined(chunk.index, chunk.elements)


def countersignature_response(signature: bytes) -> mutual_pb2.MutualResponse:
    return mutual_pb2.MutualResponse(
        countersignature=mutual_pb2.MutualCountersignature(signature=signature)
    )


def read_countersignature(message: mutual_pb2.MutualResponse) -> bytes:
    _step_of(message, "countersignature", RESPONSE_STEPS, "responder")
    return message.countersignature.signature
