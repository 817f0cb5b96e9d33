"""The boundary's pure rules, the store's JSON codec, which driver errors mean "the database is unavailable", and
a remote worker that never sends what the boundary refuses."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from genmill.api.boundary import body_violation
from genmill.domain.boundary import (
    DEPTH_RULE,
    FINITE_RULE,
    INT64_MAX,
    INT64_MIN,
    INT64_RULE,
    NUL_RULE,
    Violation,
    json_violation,
    loads_request_json,
    may_hold_unsafe_text,
    scrub_json,
    text_rule,
)
from genmill.errors import DatabaseUnavailable
from genmill.store.engine import dump_json, is_unavailable, load_json, unavailable_as_503
from genmill.worker.http_transport import HttpTransport
from genmill.worker.protocol import ClaimedTask


def violation(text: str) -> Violation | None:
    return json_violation(loads_request_json(text))


def test_text_rules() -> None:
    assert text_rule("plain, ünïcödé and 😀") is None
    assert text_rule("a\x00b") == NUL_RULE
    assert text_rule("\udc00") == "contains a lone UTF-16 surrogate (U+DC00), which is not valid Unicode"
    assert text_rule("x\ud83d") is not None  # half of a pair


def test_a_violation_names_the_field_by_its_path() -> None:
    assert violation('{"input": {"images": ["a", "b\\u0000"]}}') == Violation("input.images[1]", NUL_RULE)
    assert violation('"\\udc00"') == Violation("body", text_rule("\udc00") or "")
    assert violation('{"a": {"\\u0000": 1}}') == Violation("a", f"a key {NUL_RULE}")
    assert str(Violation("input.seed", INT64_RULE)).startswith("input.seed: integer out of range")


def test_a_valid_pair_in_escapes_is_one_character() -> None:
    assert violation('{"a": "\\ud83d\\ude00"}') is None


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (str(INT64_MAX), None),
        (str(INT64_MIN), None),
        (str(INT64_MAX + 1), INT64_RULE),
        (str(INT64_MIN - 1), INT64_RULE),
        ("1" * 10_000, INT64_RULE),  # past Python's 4,300-digit limit: refused, not a ValueError
        ("NaN", FINITE_RULE),
        ("Infinity", FINITE_RULE),
        ("-1e999", FINITE_RULE),
        ("1.7976931348623157e308", None),
        ("true", None),
    ],
)
def test_numbers(text: str, rule: str | None) -> None:
    found = violation(f'{{"n": [{text}]}}')
    assert (found.rule if found else None) == rule
    if found:
        assert found.field == "n[0]"


def test_depth_counts_containers_with_the_body_as_the_first() -> None:
    assert violation("[" * 64 + "]" * 64) is None
    assert violation("[" * 65 + "]" * 65) == Violation("[0][0][0][0][0][0][0][0]…", DEPTH_RULE)
    assert violation('{"a":' * 64 + "1" + "}" * 64) is None
    assert json_violation({"a": [[1]]}, max_depth=2) == Violation("a[0]", DEPTH_RULE)


def test_too_deep_to_decode_is_a_recursion_error() -> None:
    with pytest.raises(RecursionError):
        loads_request_json("[" * 100_000 + "]" * 100_000)


def test_string_checks_are_skipped_only_when_the_raw_text_cannot_need_them() -> None:
    assert not may_hold_unsafe_text(b'{"a": "plain \\u00e9 \\\\ text"}')
    assert may_hold_unsafe_text(b'{"a": "\\u0000"}')
    assert may_hold_unsafe_text(b'{"a": "\\uDC00"}')
    assert may_hold_unsafe_text(b'{"a": "\xed\xb0\x80"}')
    assert may_hold_unsafe_text('{"a": "x"}'.encode("utf-16"))  # not UTF-8: always checked
    assert json_violation(["\x00"], check_text=False) is None


def test_scrub_replaces_what_cannot_be_stored_or_shown() -> None:
    value = {"k\x00": ["a\udc00", 1.5, float("nan"), True, None, 3], 1: "\ud800\udc00"}
    assert scrub_json(value) == {"k\ufffd": ["a\ufffd", 1.5, None, True, None, 3], 1: "\ufffd\ufffd"}
    clean = {"a": ["b", 1]}
    assert scrub_json(clean) == clean


def test_the_store_codec_writes_only_what_any_answer_can_encode() -> None:
    assert dump_json({"a": "plain", "n": 1}) == json.dumps({"a": "plain", "n": 1})
    assert dump_json({"e": "😀"}) == json.dumps({"e": "😀"})
    stored = dump_json({"a": "\x00\udc00", "f": float("inf")})
    assert json.loads(stored) == {"a": "\ufffd\ufffd", "f": None}
    stored.encode("utf-8")


@pytest.mark.parametrize("raw", ['{"a": "\\udc00 \\u0000"}', b'{"a": "\\udc00 \\u0000"}'])
def test_the_store_codec_reads_an_old_row_back_as_valid_unicode(raw: str | bytes) -> None:
    value: Any = load_json(raw)
    assert value == {"a": "\ufffd \ufffd"}
    assert load_json('{"a": "\\ud83d\\ude00"}') == {"a": "😀"}


def _wrapped(error: Exception, kind: type[sa.exc.DBAPIError] = sa.exc.OperationalError) -> sa.exc.DBAPIError:
    return kind("SELECT 1", {}, error)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (_wrapped(sqlite3.OperationalError("database is locked")), True),
        (_wrapped(sqlite3.OperationalError("unable to open database file")), True),
        (_wrapped(sqlite3.OperationalError("disk I/O error")), True),
        (_wrapped(sqlite3.OperationalError("no such table: tasks")), False),  # a bug, not an outage
        (_wrapped(sqlite3.OperationalError('near "SELEC": syntax error')), False),
        (_wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), sa.exc.IntegrityError), False),
        (_wrapped(ConnectionRefusedError("connection refused")), True),  # any other driver's operational error
        (_wrapped(ValueError("bad value"), sa.exc.DataError), False),
        (sa.exc.TimeoutError("QueuePool limit reached"), True),
        (ValueError("not the database's"), False),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(error: Exception, unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable


def test_unavailable_becomes_a_503_error_and_anything_else_passes_through() -> None:
    with pytest.raises(DatabaseUnavailable) as caught, unavailable_as_503():
        raise _wrapped(sqlite3.OperationalError("database is locked\nmore"))
    assert caught.value.status_code == 503 and caught.value.reason == "database is locked"
    with pytest.raises(sa.exc.OperationalError), unavailable_as_503():
        raise _wrapped(sqlite3.OperationalError("no such table: tasks"))


def test_a_remote_worker_sends_only_what_the_server_accepts() -> None:
    """A backend's odd log line or output must not turn a remote worker's heartbeat or result into a 400."""
    sent: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json={"lease_expires_at": "2030-01-01T00:00:00Z", "cancel_requested": False})

    worker = HttpTransport("http://genmill.invalid", "gmw_token", transport=httpx.MockTransport(server))
    now = datetime.now(UTC)
    claim = ClaimedTask(
        task_id="t",
        account_id="a",
        model="genmill/echo",
        task_type="echo",
        input={},
        attempts=1,
        max_attempts=3,
        created_at=now,
        lease_id="l",
        lease_expires_at=now,
    ).to_claim()
    odd = "nul \x00 surrogate \udc00"
    worker.heartbeat(claim, 30.0, [odd], {"progress": float("nan")})
    worker.complete(claim, {"text": odd}, [odd], None)
    worker.fail(claim, {"code": 10000, "message": odd}, [], None)
    worker.close()
    assert len(sent) == 3
    for body in sent:
        assert body_violation(body) is None
    assert json.loads(sent[0]) == {
        "lease_id": "l",
        "logs": ["nul \ufffd surrogate \ufffd"],
        "detail": {"progress": None},
    }
    assert json.loads(sent[1])["output"] == {"text": "nul \ufffd surrogate \ufffd"}
