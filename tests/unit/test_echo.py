"""The `genmill/echo` catalog entry: any JSON payload, a bounded sleep, free unless priced explicitly."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from genmill.catalog import build_catalog
from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.echo.catalog import MAX_SLEEP_MS, Echo, echo_entry


@pytest.fixture(scope="module")
def entry() -> CatalogEntry:
    found = build_catalog().get("genmill/echo", "echo")
    assert found is not None
    return found


def test_the_catalog_holds_the_echo_entry(entry: CatalogEntry) -> None:
    assert entry.family == "echo"
    assert entry.input_model is Echo
    assert entry.retention == IMAGE_RETENTION
    assert entry.description
    assert entry.generated_input_fields == ()


def test_defaults_are_an_empty_payload_and_no_sleep(entry: CatalogEntry) -> None:
    inputs = entry.input_model.model_validate({})
    assert inputs.model_dump(mode="json") == {"payload": {}, "sleep_ms": 0}
    assert entry.price_of(inputs) == 0


@pytest.mark.parametrize("payload", [{"a": [1, 2, {"b": None}]}, [1, "two", 3.5], "text", 42, True, None])
def test_any_json_payload_round_trips(entry: CatalogEntry, payload: Any) -> None:
    inputs = entry.input_model.model_validate({"payload": payload, "sleep_ms": 5})
    dumped = inputs.model_dump(mode="json")
    assert dumped["payload"] == payload
    assert entry.input_model.model_validate(dumped).model_dump(mode="json") == dumped


@pytest.mark.parametrize("bad", [-1, MAX_SLEEP_MS + 1, "soon", 1.5])
def test_sleep_ms_is_bounded(entry: CatalogEntry, bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        entry.input_model.model_validate({"sleep_ms": bad})
    assert caught.value.errors()[0]["loc"] == ("sleep_ms",)


def test_sleep_ms_accepts_its_range(entry: CatalogEntry) -> None:
    for value in (0, 1, MAX_SLEEP_MS):
        assert entry.input_model.model_validate({"sleep_ms": value}).sleep_ms == value  # type: ignore[attr-defined]


def test_unknown_fields_are_kept(entry: CatalogEntry) -> None:
    inputs = entry.input_model.model_validate({"payload": 1, "extra": "kept"})
    assert inputs.model_dump(mode="json")["extra"] == "kept"


def test_the_price_is_zero_unless_configured(entry: CatalogEntry) -> None:
    inputs = entry.input_model.model_validate({"payload": "x" * 1000, "sleep_ms": MAX_SLEEP_MS})
    assert entry.price_of(inputs) == 0
    priced = echo_entry(price_credits=1234)
    assert priced.key == entry.key
    assert priced.price_of(inputs) == 1234
    with pytest.raises(ValueError):
        echo_entry(price_credits=-1)
