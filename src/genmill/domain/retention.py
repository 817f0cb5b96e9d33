"""Retention rules: when stored objects expire and whether a generated input is still usable."""

from __future__ import annotations

from datetime import datetime, timedelta

from genmill.domain.catalog import GENERATED_INPUT_WINDOW


def expires_at(created_at: datetime, retention: timedelta) -> datetime:
    return created_at + retention


def is_expired(expires: datetime, now: datetime) -> bool:
    return now >= expires


def generated_input_refusal(field: str, created_at: datetime, now: datetime) -> str | None:
    """Why a generated output may no longer be used as an input (API.md: within 3 hours), or None."""
    age = now - created_at
    if age <= GENERATED_INPUT_WINDOW:
        return None
    hours = GENERATED_INPUT_WINDOW.total_seconds() / 3600
    return (
        f"input.{field}: the image was generated {age.total_seconds() / 3600:.1f} hours ago; generated "
        f"images are accepted as inputs only within {hours:g} hours of their creation"
    )
