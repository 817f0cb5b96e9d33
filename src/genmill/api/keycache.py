"""A short-lived, per-process cache of API key → account, so each request does not query the key table.

Every authenticated request used to start with a database read in the thread pool before the handler's own
work. Successful lookups are kept for `GENMILL_AUTH_CACHE_SECONDS` (0 turns the cache off); failed ones never
are, so a stream of bad keys cannot fill memory or lock a key out. What the cache can make stale is bounded:
a key revoked with `genmill keys revoke` is refused by every server at the latest that many seconds later.
Balances and limits are never read from it: handlers that show them read the account again, and the create
transaction re-reads and locks the account row (a disabled account cannot create a task even while cached).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from genmill.domain.records import Account

MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, Account]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Account | None:
        """The cached account for this key, or None when it must be looked up."""
        if self.ttl <= 0:
            return None
        hit = self._entries.get(key)
        if hit is None:
            return None
        if self._clock() - hit[0] >= self.ttl:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: str, account: Account) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (self._clock(), account)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
