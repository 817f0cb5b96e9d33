from __future__ import annotations

import pytest
from pydantic import ValidationError

from genmill.settings import Settings


def test_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValidationError, match="GENMILL_HEARTBEAT_SECONDS"):
        Settings(lease_seconds=5, heartbeat_seconds=5)
    assert Settings(lease_seconds=5, heartbeat_seconds=1).lease_seconds == 5


def test_environment_configures_and_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENMILL_WORKERS", "3")
    monkeypatch.setenv("GENMILL_PUBLIC_URL", "https://genmill.example.com/")
    settings = Settings()
    assert settings.workers == 3 and settings.base_url() == "https://genmill.example.com"
    assert settings.resolved_database_url().startswith("sqlite:///") and settings.blob_store == "local"
