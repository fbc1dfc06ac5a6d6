"""The tiny model, built once per session (weights are read-only in every test)."""

from __future__ import annotations

import pytest

from prfaas.model import HybridModel, get_preset


@pytest.fixture(scope="session")
def tiny() -> HybridModel:
    return HybridModel(get_preset("tiny"))
