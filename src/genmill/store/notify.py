"""PostgreSQL LISTEN/NOTIFY: committed task events from every replica reach this process's event bus.

`emit` sends `pg_notify` inside the changing transaction, so PostgreSQL delivers it exactly when the change
commits. One listener thread per process feeds the notifications to `EventBus.publish`, which wakes workers,
long-polling remote workers, the webhook dispatcher and waiting clients here, whichever replica made the change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import make_url

from genmill.domain.records import EventRef
from genmill.store.events import NOTIFY_CHANNEL, decode_ref

log = logging.getLogger("genmill.store")


def psycopg_dsn(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL."""
    parsed = make_url(url)
    return str(parsed.set(drivername="postgresql").render_as_string(hide_password=False))


class PgListener:
    def __init__(self, url: str, publish: Callable[[list[EventRef]], None]) -> None:
        self.dsn = psycopg_dsn(url)
        self.publish = publish
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="genmill-pg-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        down = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    if down:
                        log.warning("LISTEN connection back")
                        down = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.publish([decode_ref(note.payload)])
            except psycopg.OperationalError as exc:
                # The database is down or restarting: one line when it goes, one when it is back, no traceback
                # every second in between.
                self.listening.clear()
                if not down:
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    log.warning("LISTEN connection lost (%s); reconnecting every second", reason)
                    down = True
                self._stop.wait(1.0)
            except Exception:
                self.listening.clear()
                log.exception("LISTEN connection lost; reconnecting")
                self._stop.wait(1.0)
