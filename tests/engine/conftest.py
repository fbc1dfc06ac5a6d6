"""Fixture: an engine over the NullBackend that must end every test with nothing leaked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import make_engine

from prfaas.engine.core import EngineCore


@pytest.fixture
def engine() -> Iterator[EngineCore]:
    eng = make_engine()
    yield eng
    eng.assert_no_leaks()
