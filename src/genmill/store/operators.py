"""What only an operator may do to the store: operator tokens, idempotent top-ups and account settings.

Operator tokens are hashed, revocable credentials (genmill.domain.credentials) like API keys, in their own
table, so no account key can ever pass for one. A top-up through the admin API carries an Idempotency-Key: its
row and its ledger entry are written in one transaction, so a retried request (a payment webhook delivered twice)
finds the row and credits nothing more, and a key reused for another account or amount is a 409.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from genmill.domain.credentials import digest_of
from genmill.domain.ledger import LedgerKind
from genmill.domain.records import Account, OperatorToken, TopUp
from genmill.errors import Conflict, InvalidRequest
from genmill.store.base import Queries
from genmill.store.credentials import OPERATOR_TOKENS
from genmill.store.rows import lock_account, move_credits
from genmill.store.tables import accounts, operator_tokens, topups

MAX_IDEMPOTENCY_KEY = 255


def _to_token(row: sa.Row[Any]) -> OperatorToken:
    m = row._mapping
    return OperatorToken(m["token_id"], m["name"], m["prefix"], m["created_at"], m["revoked_at"])


class OperatorStore(Queries):
    def create_token(self, name: str = "") -> tuple[str, OperatorToken]:
        """A new operator token; returns the plaintext (shown once) and its record."""
        token_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.tx() as conn:
            issued = OPERATOR_TOKENS.issue(conn, token_id, now, name=name)
        return issued.plaintext, OperatorToken(token_id, name, issued.shown, now, None)

    def list_tokens(self) -> list[OperatorToken]:
        with self.read() as conn:
            rows = conn.execute(sa.select(operator_tokens).order_by(operator_tokens.c.created_at)).all()
        return [_to_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        with self.tx() as conn:
            OPERATOR_TOKENS.revoke(conn, token_id, self.clock.now())

    def authenticate(self, plaintext: str) -> OperatorToken | None:
        """The active operator token with this plaintext, or None."""
        digest = digest_of(plaintext)
        with self.read() as conn:
            row = conn.execute(sa.select(operator_tokens).where(OPERATOR_TOKENS.active(digest))).one_or_none()
        if row is None or not OPERATOR_TOKENS.matches(row, digest):
            return None
        return _to_token(row)

    def topup(
        self, account_id: str, credits: int, idempotency_key: str, operator_token_id: str
    ) -> tuple[Account, TopUp]:
        """Credit the account once per idempotency key: the first request moves the credits (one TOPUP ledger
        entry); a repeat with the same account and amount moves nothing and answers the first top-up."""
        if credits <= 0:
            raise InvalidRequest("credits: must be a positive integer")
        if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(f"Idempotency-Key: required, 1 to {MAX_IDEMPOTENCY_KEY} characters")
        now = self.clock.now()
        with self.tx() as conn:
            account = lock_account(conn, account_id)
            seen = conn.execute(sa.select(topups).where(topups.c.idempotency_key == idempotency_key)).one_or_none()
            if seen is not None:
                if seen.account_id != account_id or seen.credits != credits:
                    raise Conflict(
                        "Idempotency-Key: already used for a top-up of "
                        f"{seen.credits} credits to account {seen.account_id}"
                    )
                return account, TopUp(idempotency_key, account_id, credits, seen.created_at, replayed=True)
            conn.execute(
                sa.insert(topups).values(
                    idempotency_key=idempotency_key,
                    account_id=account_id,
                    credits=credits,
                    operator_token_id=operator_token_id,
                    created_at=now,
                )
            )
            account = move_credits(conn, account, LedgerKind.TOPUP, credits, None, now)
        return account, TopUp(idempotency_key, account_id, credits, now, replayed=False)

    def update_account(
        self, account_id: str, *, is_enabled: bool | None = None, max_concurrency: int | None = None
    ) -> Account:
        """Enable or disable an account, or change its concurrency limit; the fields left None stay."""
        values: dict[str, Any] = {}
        if is_enabled is not None:
            values["is_enabled"] = is_enabled
        if max_concurrency is not None:
            if max_concurrency < 1:
                raise InvalidRequest("max_concurrency: must be at least 1")
            values["max_concurrency"] = max_concurrency
        with self.tx() as conn:
            lock_account(conn, account_id)
            if values:
                conn.execute(sa.update(accounts).where(accounts.c.account_id == account_id).values(**values))
            return lock_account(conn, account_id)
