"""Group commit for creates: creates that arrive while another group is committing share one transaction.

A create's cost on a durable database is mostly its commit (the disk flush of the write-ahead log, about 3 ms on
the reference machine), and creates of one account queue behind each other on its row lock, flush included. A
caller that finds no group committing leads: it takes the creates queued so far (at most `max_batch`), runs them
one after another in one transaction, commits once, and only then wakes each caller with its own task or its own
error. Callers that arrive meanwhile queue for the next group, which one of them leads. Nobody waits for a timer:
a lone create commits at once, as without grouping.

What a caller is told is unchanged: a task is returned only after the transaction that wrote it committed. The
checks that refuse a create (a disabled account, an idempotency conflict, the staged limit, not enough credits)
all decide before that create writes anything (but the removal of an expired idempotency key, which any later
create would remove too), so a refused create leaves the group's transaction as it was and the others go on.
Anything else that goes wrong (a database error) rolls the group back; its creates are then retried one
transaction each, so one bad create fails only its own caller. Idempotency and the account row lock work as
without grouping: a repeat in the same group finds the key its first request wrote.

Creates of a group run in account order, so that two groups (from two processes) lock accounts in the same order
and cannot wait for each other in a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlalchemy as sa

from genmill.domain.records import Idempotency, NewTask, Task
from genmill.errors import GenmillError

Created = tuple[Task, bool]
CreateIn = Callable[[sa.Connection, NewTask, Idempotency | None], Created]
"""One create inside the caller's transaction (`TaskStore._create_in`)."""


@dataclass
class _Request:
    new: NewTask
    idempotency: Idempotency | None
    result: Created | None = None
    error: BaseException | None = None
    finished: bool = False

    def outcome(self) -> Created:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommit:
    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sa.Connection]],
        create_in: CreateIn,
        *,
        max_batch: int = 64,
    ) -> None:
        self.transaction = transaction
        self.create_in = create_in
        self.max_batch = max_batch
        self._turn = threading.Condition()
        self._queue: list[_Request] = []
        self._leading = False
        self.groups = 0
        """Transactions committed so far (for measurements: creates per group = creates / groups)."""

    def queued(self) -> int:
        """Creates waiting for a group to take them."""
        with self._turn:
            return len(self._queue)

    def create(self, new: NewTask, idempotency: Idempotency | None) -> Created:
        """Create the task in the next group to commit; returns once that group committed (or raises its error)."""
        request = _Request(new, idempotency)
        with self._turn:
            self._queue.append(request)
            while not request.finished:
                if self._leading:
                    self._turn.wait()
                    continue
                self._leading = True
                group, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self._turn.release()
                try:
                    self._commit(group)
                finally:
                    self._turn.acquire()
                    for done in group:
                        done.finished = True
                    self._leading = False
                    self._turn.notify_all()  # the callers of this group return; one of the rest leads next
        return request.outcome()

    def _commit(self, group: list[_Request]) -> None:
        ordered = sorted(group, key=lambda r: r.new.account_id)
        try:
            with self.transaction() as conn:
                for request in ordered:
                    request.result, request.error = None, None
                    try:
                        request.result = self.create_in(conn, request.new, request.idempotency)
                    except GenmillError as refused:  # decided before this create wrote anything
                        request.error = refused
            self.groups += 1
        except Exception as failed:
            if len(group) == 1:
                group[0].result, group[0].error = None, failed
                return
            for request in ordered:  # one transaction each: a bad create fails only its own caller
                request.result, request.error = None, None
                try:
                    with self.transaction() as conn:
                        request.result = self.create_in(conn, request.new, request.idempotency)
                    self.groups += 1
                except Exception as alone:
                    request.error = alone
