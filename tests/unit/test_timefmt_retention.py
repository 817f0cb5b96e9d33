from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from genmill.domain.retention import expires_at, generated_input_refusal, is_expired
from genmill.domain.timefmt import ZERO_TIME, rfc3339


def test_rfc3339_is_utc_with_z() -> None:
    moment = datetime(2025, 6, 30, 9, 11, 30, 719851, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2025-06-30T07:11:30.719851Z"
    assert rfc3339(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
    assert rfc3339(None) == ZERO_TIME == "0001-01-01T00:00:00Z"


def test_expiry() -> None:
    created = datetime(2025, 1, 1, tzinfo=UTC)
    end = expires_at(created, timedelta(days=3))
    assert not is_expired(end, end - timedelta(seconds=1))
    assert is_expired(end, end)


def test_generated_inputs_are_accepted_for_three_hours() -> None:
    created = datetime(2025, 1, 1, tzinfo=UTC)
    assert generated_input_refusal("image", created, created + timedelta(hours=3)) is None
    message = generated_input_refusal("image", created, created + timedelta(hours=3, minutes=6))
    assert message is not None and "input.image" in message and "3 hours" in message
