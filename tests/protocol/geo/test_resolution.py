"""The one resolution range check, with the error each caller chooses."""

from __future__ import annotations

import pytest

from hexpsi.protocol.errors import InputError, RemoteProtocolError
from hexpsi.protocol.geo.resolution import check_resolution, check_resolutions, is_resolution

NOT_RESOLUTIONS = [-1, 16, True, False, 9.0, "9", None]


@pytest.mark.parametrize("res", [0, 9, 15])
def test_0_to_15_are_resolutions(res: int) -> None:
    assert is_resolution(res)
    assert check_resolution(res) == res


@pytest.mark.parametrize("res", NOT_RESOLUTIONS)
def test_the_rest_are_refused_naming_what(res: object) -> None:
    assert not is_resolution(res)
    with pytest.raises(InputError, match=r"--res must be an integer 0\.\.15"):
        check_resolution(res, "--res")


def test_a_peer_declared_resolution_is_the_peers_fault() -> None:
    with pytest.raises(RemoteProtocolError, match=r"resolution must be an integer 0\.\.15, got 16"):
        check_resolution(16, error=RemoteProtocolError)


def test_res_min_may_not_be_finer_than_res() -> None:
    check_resolutions(9, 5)
    check_resolutions(9, 9)
    with pytest.raises(InputError, match="res_min"):
        check_resolutions(5, 9)
