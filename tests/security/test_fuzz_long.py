"""The long fuzz runs, opt-in: ``pytest -m slow tests/security/test_fuzz_long.py``.

The same properties as ``test_fuzz_rpc`` (every RPC answers garbage and
hostile messages with a deliberate status, and the server stays healthy and
correct), with thousands of examples per input kind instead of dozens. When
the ``atheris`` package is installed it also runs a coverage-guided harness in
a subprocess over everything that parses peer bytes without a network in
between: protobuf requests into protocol values, the responder's query
validation, descriptors, receipts, mutual statements and messages, evidence
bundles and cell openings of every format.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from hypothesis import settings

from hexpsi.protocol.check.documents import read_document, verify_document
from hexpsi.protocol.check.evidence import Evidence, verify_evidence
from hexpsi.protocol.check.messages import Receipt
from hexpsi.protocol.epoch.descriptor import Descriptor, SignedDescriptor
from hexpsi.protocol.errors import HexpsiError
from hexpsi.protocol.limits import CLOCK_SKEW_SECONDS
from hexpsi.protocol.mutual.messages import MutualStatement
from hexpsi.server.rpc.check_convert import message_to_response, request_to_query
from hexpsi.server.rpc.hexpsi.v1 import check_pb2, mutual_pb2
from hexpsi.server.rpc.mutual_convert import (
    read_commitment,
    read_finish,
    read_request_chunk,
    read_start,
)
from tests.security.hostile_helpers import PROTECTED
from tests.security.test_fuzz_rpc import (
    FUZZ,
    Target,
    fuzz_target,
    hostile_check_messages,
    hostile_mutual_streams,
    random_bytes_to_every_rpc,
)

pytestmark = pytest.mark.slow

LONG = settings(FUZZ, max_examples=int(os.environ.get("HEXPSI_FUZZ_EXAMPLES", "2000")))
"""Examples per input kind; ``HEXPSI_FUZZ_EXAMPLES`` changes it."""
ATHERIS_RUNS = int(os.environ.get("HEXPSI_ATHERIS_RUNS", "500000"))
HARNESS = (
    "import atheris\n"
    "with atheris.instrument_imports(include=['protocol', 'server']):\n"
    "    from tests.security.test_fuzz_long import atheris_main\n"
    "atheris_main()\n"
)
"""The subprocess's program: only hexpsi's own modules are instrumented for coverage."""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from fuzz_target(tmp_path_factory.mktemp("fuzz-long"))


@pytest.mark.timeout(3600)
def test_random_bytes_at_length(target: Target) -> None:
    random_bytes_to_every_rpc(target, LONG)
    target.healthy()


@pytest.mark.timeout(3600)
def test_hostile_check_messages_at_length(target: Target) -> None:
    hostile_check_messages(target, LONG)
    target.healthy()


@pytest.mark.timeout(3600)
def test_hostile_mutual_streams_at_length(target: Target) -> None:
    hostile_mutual_streams(target, LONG)
    target.healthy()


@pytest.mark.timeout(3600)
def test_coverage_guided_decoders(tmp_path: Path) -> None:
    """libFuzzer (through atheris) over ``atheris_main``'s decoders in a subprocess; a
    crash is any exception other than the deliberate ones, and fails the test."""
    pytest.importorskip("atheris")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            HARNESS,
            f"-runs={ATHERIS_RUNS}",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=3500,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]


# ---------------------------------------------------------------- the atheris harness

CENTER_CELL = min(PROTECTED)


def _decoder_targets() -> list[Callable[[bytes], object]]:
    """Every function that turns a peer's bytes into protocol values, with its context."""
    from tests.protocol.helpers import NOW, make_responder

    responder = make_responder([CENTER_CELL], res=9, res_min=5)
    descriptor = responder.descriptor
    verify_key = responder.verify_key

    def evaluate_request(body: bytes) -> object:
        request = check_pb2.EvaluateRequest.FromString(body[1:])
        if body[:1] == b"\x01":  # let the fuzzer past the digest check
            request.descriptor_digest = descriptor.digest
        return responder.responder_check().receive(request_to_query(request), now=NOW)

    def evaluate_response(body: bytes) -> object:
        return message_to_response(check_pb2.EvaluateResponse.FromString(body))

    def signed_descriptor(body: bytes) -> object:
        return SignedDescriptor.verify(
            body[64:], body[:64], verify_key, now=NOW, max_skew=CLOCK_SKEW_SECONDS
        )

    def mutual_request(body: bytes) -> object:
        message = mutual_pb2.MutualRequest.FromString(body)
        step = message.WhichOneof("step")
        if step == "start":
            return read_start(message)
        if step in ("blinded", "double_blinded"):
            return read_request_chunk(message, step)
        if step == "commitment":
            return read_commitment(message)
        return read_finish(message)

    def evidence(body: bytes) -> object:
        return verify_evidence(Evidence.from_json(body), verify_key)

    def document(body: bytes) -> object:
        return verify_document(read_document(body), verify_key)

    return [
        evaluate_request,
        evaluate_response,
        Receipt.decode,
        Descriptor.decode,
        signed_descriptor,
        MutualStatement.decode,
        mutual_request,
        evidence,
        document,
    ]


def atheris_main() -> None:
    """Run as ``python -c HARNESS`` followed by libFuzzer options (``-runs=N``,
    ``-max_total_time=S``...)."""
    atheris = importlib.import_module("atheris")
    targets = _decoder_targets()

    def one_input(data: bytes) -> None:
        if not data:
            return
        with contextlib.suppress(HexpsiError, DecodeError):
            targets[data[0] % len(targets)](data[1:])

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
