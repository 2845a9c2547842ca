"""Shared fixtures: catalogs and small builders."""

from __future__ import annotations

import pytest

from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog


@pytest.fixture(scope="session")
def hardware() -> HardwareCatalog:
    return HardwareCatalog()


@pytest.fixture(scope="session")
def models() -> ModelCatalog:
    return ModelCatalog()
