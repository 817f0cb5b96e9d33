"""The assembled catalog, built once a module, for the catalog tests."""

from __future__ import annotations

import pytest

from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog()
