"""`genmill run` / `genmill task`: every failure a client command can meet ends in its documented exit code and
one plain line on stderr (run_command's table, the more specific kinds before their bases)."""

from __future__ import annotations

import argparse

import pytest
from rich.console import Console

from genmill.cli_client import (
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    run_command,
)
from genmill.client import BadRequest, ConnectionFailed, ServerError, Task, WaitTimeout

PENDING = Task.from_wire({"task_id": "t-1", "status": "pending"})


@pytest.mark.parametrize(
    ("failure", "code", "line"),
    [
        (UsageError("give a model"), EXIT_USAGE, "error: give a model"),
        (WaitTimeout(PENDING, 2.0), EXIT_TIMEOUT, "`genmill task watch t-1` follows it again"),
        (ServerError(503, 503, "database unavailable"), EXIT_UNREACHABLE, "error: the server failed: HTTP 503"),
        (BadRequest(400, 400, "input.scale: at most 10"), EXIT_REFUSED, "error: HTTP 400: input.scale: at most 10"),
        (ConnectionFailed("GET /api/v1/task: refused"), EXIT_UNREACHABLE, "error: GET /api/v1/task: refused"),
        (FileNotFoundError("photo.png"), EXIT_USAGE, "error: photo.png"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted: the task goes on on the server"),
    ],
)
def test_each_failure_has_its_exit_code_and_one_line(
    failure: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(args: argparse.Namespace, console: Console) -> int:
        raise failure

    assert run_command(fails, argparse.Namespace()) == code
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1, err


def test_other_exceptions_are_not_swallowed() -> None:
    def broken(args: argparse.Namespace, console: Console) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_command(broken, argparse.Namespace())
