"""The webhook dispatcher: a few threads that claim due deliveries, POST them, and record what happened.

Bounded concurrency (one delivery per thread at a time), per-task order (the claim query holds back a task's
later events while an earlier one is pending), and no sleep-polling: threads wait on the bus's webhook wake-up,
or until the next scheduled retry is due.

Isolation between accounts: every POST ends by its total deadline (`GuardedFetcher`, `GENMILL_WEBHOOK_TIMEOUT`),
and `AccountSlots` keeps any one account from holding more than `per_account` of the threads, with accounts that
have nothing in flight served first; so a slow receiver delays its own account's deliveries, not the others'.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from genmill.domain.timefmt import utcnow
from genmill.domain.webhooks import Decision, DeliveryState, decide, parse_retry_after, sign, signing_key
from genmill.errors import FetchRefused, GenmillError
from genmill.net.fetch import GuardedFetcher
from genmill.store.webhooks import DueDelivery, WebhookStore
from genmill.webhooks.slots import AccountSlots, default_per_account
from genmill.worker.wakeup import Wakeup

log = logging.getLogger("genmill.webhooks")
USER_AGENT = "genmill-webhooks/1"


def build_request(delivery: DueDelivery, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body PiAPI clients expect, with PiAPI's secret header and Standard Webhooks signing headers."""
    timestamp = int(now.timestamp())
    body = json.dumps({"timestamp": timestamp, "data": delivery.snapshot}, separators=(",", ":")).encode()
    key = signing_key(delivery.task_secret or delivery.signing_secret)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, delivery.delivery_id, timestamp, body),
    }
    if delivery.task_secret:
        headers["x-webhook-secret"] = delivery.task_secret
    return body, headers


class WebhookDispatcher:
    def __init__(
        self,
        store: WebhookStore,
        sender: GuardedFetcher,
        wakeup: Wakeup,
        *,
        concurrency: int = 4,
        per_account: int | None = None,
        retry_scale: float = 1.0,
        idle_wait_seconds: float = 30.0,
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_attempt = on_attempt
        """Told each recorded attempt's outcome (the delivery's new state), for /metrics."""
        self.sender = sender
        self.wakeup = wakeup
        self.concurrency = concurrency
        self.slots = AccountSlots(per_account or default_per_account(concurrency))
        self._claiming = threading.Lock()
        self.retry_scale = retry_scale
        self.idle_wait_seconds = idle_wait_seconds
        self.held_wait_seconds = 5.0
        self.dispatcher_id = f"webhooks-{os.getpid()}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"{self.dispatcher_id}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self.wakeup.notify()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = self.wakeup.generation
            try:
                sent = self.run_once()
            except Exception:
                log.exception("webhook dispatch failed")
                self._stop.wait(1.0)
                continue
            if not sent:
                self.wakeup.wait(seen, self._idle_seconds())

    def _idle_seconds(self) -> float:
        """Until the next retry is due. A due time in the past means that delivery is held (locked by another
        thread, or behind an earlier event of its task); the thread that settles it wakes us, so wait long."""
        due = self.store.next_due_at()
        if due is None:
            return self.idle_wait_seconds
        until = (due - utcnow()).total_seconds()
        return min(self.idle_wait_seconds, until) if until > 0 else self.held_wait_seconds

    def run_once(self) -> bool:
        """Claim and send one due delivery; False when none was due (or only ones of accounts at their limit)."""
        with self._claiming:  # one claim at a time here, so no account passes its limit between check and take
            delivery = self._claim()
            if delivery is None:
                return False
            self.slots.take(delivery.account_id)
        try:
            self.deliver(delivery)
        finally:
            self.slots.release(delivery.account_id)
            # Settling a delivery may release the next event of the same task, and its account's slot: let the
            # other threads look.
            self.wakeup.notify()
        return True

    def _claim(self) -> DueDelivery | None:
        """The next due delivery of an account with nothing in flight here; else of one below its limit."""
        claimed = self.store.claim_due(
            self.dispatcher_id,
            lock_seconds=self.sender.timeout * 2 + 30,
            exclude_accounts=self.slots.full(),
            defer_accounts=self.slots.busy(),
        )
        return claimed[0] if claimed else None

    def deliver(self, delivery: DueDelivery) -> None:
        now = datetime.now(UTC)
        body, headers = build_request(delivery, now)
        started = time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        refused = False
        try:
            result = self.sender.post(delivery.endpoint, body=body, headers=headers, field="webhook_config.endpoint")
            status = result.status_code
            retry_after = parse_retry_after(result.headers.get("retry-after"))
            if not 200 <= status < 300:
                error = f"the endpoint answered HTTP {status}"
        except FetchRefused as exc:  # against policy: retrying cannot help
            error, refused = exc.message, True
        except GenmillError as exc:
            error = exc.message
        latency_ms = int((time.perf_counter() - started) * 1000)
        if refused:
            decision = Decision(DeliveryState.FAILED)
        else:
            decision = decide(status, delivery.attempts + 1, retry_after=retry_after, scale=self.retry_scale)
        self.store.record_attempt(
            delivery.delivery_id,
            status_code=status,
            latency_ms=latency_ms,
            error=error,
            decision=decision,
            at=now,
            settled_at=utcnow(),
        )
        if self.on_attempt is not None:
            self.on_attempt(decision.state.value)
        log.info(
            "webhook %s for task %s: %s -> %s",
            delivery.delivery_id,
            delivery.task_id,
            status or error,
            decision.state.value,
        )
