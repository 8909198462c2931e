"""Fixtures of the leakage tests: one recorded two-node scenario shared by the whole run."""

from __future__ import annotations

import pytest

from tests.security.leak_helpers import Scenario, record_scenario


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Checks of several strikes (one zone twice) and two mutual checks, every byte recorded."""
    return record_scenario(tmp_path_factory.mktemp("recorded"))
