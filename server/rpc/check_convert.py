"""Translation between the check's protobuf messages and ``protocol`` values.

The only place that knows both sides: the servicer and the client call these
functions so neither repeats a field mapping. Conversions from the wire raise
``RemoteProtocolError`` for anything malformed, which the servicer turns into
INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hexpsi.protocol.budget import query_area_km2, query_volume_km2h
from hexpsi.protocol.check.messages import ElementGroup, EvaluatedGroup, Query, Receipt, Response
from hexpsi.protocol.crypto.group import ELEMENT_SIZE
from hexpsi.protocol.epoch.descriptor import Descriptor
from hexpsi.server.rpc.hexpsi.v1 import check_pb2


def _element_groups(groups: Sequence[ElementGroup]) -> list[check_pb2.ElementGroup]:
    return [
        check_pb2.ElementGroup(
            resolution=group.resolution, elements=group.joined(), time_level=group.level or 0
        )
        for group in groups
    ]


def query_to_request(query: Query) -> check_pb2.EvaluateRequest:
    return check_pb2.EvaluateRequest(
        session_id=query.session_id,
        descriptor_digest=query.descriptor_digest,
        groups=_element_groups(query.groups),
        timed_groups=_element_groups(query.timed_groups),
    )


def request_to_query(request: check_pb2.EvaluateRequest) -> Query:
    return Query(
        session_id=request.session_id,
        descriptor_digest=request.descriptor_digest,
        groups=tuple(
            ElementGroup.from_joined(group.resolution, group.elements) for group in request.groups
        ),
        timed_groups=tuple(
            ElementGroup.from_joined(group.resolution, group.elements, group.time_level)
            for group in request.timed_groups
        ),
    )


def _evaluated_groups(groups: Sequence[EvaluatedGroup]) -> list[check_pb2.EvaluatedGroup]:
    return [
        check_pb2.EvaluatedGroup(
            resolution=group.resolution,
            elements=b"".join(group.elements),
            proof=group.proof,
            time_level=group.level or 0,
        )
        for group in groups
    ]


def response_to_message(response: Response) -> check_pb2.EvaluateResponse:
    return check_pb2.EvaluateResponse(
        session_id=response.session_id,
        groups=_evaluated_groups(response.groups),
        receipt=response.receipt.encode(),
        timed_groups=_evaluated_groups(response.timed_groups),
    )


def _from_evaluated(
    groups: Iterable[check_pb2.EvaluatedGroup], *, timed: bool
) -> tuple[EvaluatedGroup, ...]:
    converted = []
    for group in groups:
        level = group.time_level if timed else None
        elements = ElementGroup.from_joined(group.resolution, group.elements, level).elements
        converted.append(EvaluatedGroup(group.resolution, elements, group.proof, level))
    return tuple(converted)


def message_to_response(message: check_pb2.EvaluateResponse) -> Response:
    return Response(
        session_id=message.session_id,
        groups=_from_evaluated(message.groups, timed=False),
        receipt=Receipt.decode(message.receipt),
        timed_groups=_from_evaluated(message.timed_groups, timed=True),
    )


def declared_area_km2(request: check_pb2.EvaluateRequest, descriptor: Descriptor) -> float | None:
    """The area a query would be charged, from its declared group sizes alone.

    Nothing is decoded: the element bytes are only measured, so a peer whose
    budget cannot pay is refused before its request costs any work. None when a
    group declares a resolution outside the epoch's (the protocol refuses that
    query with its own message once it is decoded).
    """
    sizes: dict[int, int] = {}
    for group in request.groups:
        if not descriptor.res_min <= group.resolution <= descriptor.res:
            return None
        sizes[group.resolution] = sizes.get(group.resolution, 0) + len(group.elements) // (
            ELEMENT_SIZE
        )
    return query_area_km2(sizes, descriptor.res)


def declared_volume_km2h(
    request: check_pb2.EvaluateRequest, descriptor: Descriptor
) -> float | None:
    """The space-time volume a query would be charged, from its declared timed group
    sizes alone (as :func:`declared_area_km2`); None for a group the epoch lacks."""
    if not request.timed_groups:
        return 0.0
    tree = descriptor.time_tree
    if tree is None:
        return None
    sizes: dict[tuple[int, int], int] = {}
    for group in request.timed_groups:
        key = (group.resolution, group.time_level)
        if key not in descriptor.timed_public_keys:
            return None
        sizes[key] = sizes.get(key, 0) + len(group.elements) // ELEMENT_SIZE
    return query_volume_km2h(sizes, descriptor.res, tree.level_hours)
