"""Task failures: one code table, one type, and the error's wire shape written in one place."""

from __future__ import annotations

import json

from genmill.domain.failures import FailureCode, TaskFailure
from genmill.errors import (
    GPU_MEMORY_ERROR_CODE,
    INPUT_ERROR_CODE,
    BackendError,
    DatabaseUnavailable,
    FetchError,
    InputRejected,
    OutOfDeviceMemory,
)
from genmill.worker.runtime import Worker


def test_the_code_table() -> None:
    assert {code.name: int(code) for code in FailureCode} == {
        "BACKEND_FAILED": 10000,
        "INPUT_REJECTED": 10001,
        "WORKER_LOST": 10002,
        "OUT_OF_GPU_MEMORY": 10003,
        "NO_WORKER": 10004,
    }
    assert INPUT_ERROR_CODE == 10001 and GPU_MEMORY_ERROR_CODE == 10003


def test_the_error_has_the_four_wire_fields_with_a_plain_int_code() -> None:
    error = TaskFailure(FailureCode.WORKER_LOST, "gone", "lease expired (worker w)", {"a": 1}).to_error()
    assert error == {"code": 10002, "message": "gone", "raw_message": "lease expired (worker w)", "detail": {"a": 1}}
    assert type(error["code"]) is int
    assert json.dumps(error) == (
        '{"code": 10002, "message": "gone", "raw_message": "lease expired (worker w)", "detail": {"a": 1}}'
    )


def test_raw_message_defaults_to_the_message() -> None:
    assert TaskFailure(10000, "it broke").to_error() == {
        "code": 10000,
        "message": "it broke",
        "raw_message": "it broke",
        "detail": None,
    }


def test_backend_errors_carry_their_failure() -> None:
    assert BackendError("ffmpeg failed", raw_message="exit 1").failure == TaskFailure(10000, "ffmpeg failed", "exit 1")
    assert BackendError("upstream said no", code=42).failure.code == 42
    rejected = InputRejected("image: not decodable", detail={"field": "image"})
    assert rejected.code == 10001 and type(rejected.code) is int
    assert rejected.failure.to_error() == {
        "code": 10001,
        "message": "image: not decodable",
        "raw_message": "image: not decodable",
        "detail": {"field": "image"},
    }
    assert OutOfDeviceMemory("too big", raw_message="CUDA out of memory").failure.code == 10003


def test_a_server_side_error_during_a_run_is_not_blamed_on_the_input() -> None:
    unavailable = Worker._failure("t1", DatabaseUnavailable("connection refused")).to_error()
    assert unavailable["code"] == FailureCode.BACKEND_FAILED
    assert "database is unavailable" in unavailable["message"]
    bad_input = Worker._failure("t1", FetchError("input.image: could not be fetched")).to_error()
    assert bad_input["code"] == FailureCode.INPUT_REJECTED
