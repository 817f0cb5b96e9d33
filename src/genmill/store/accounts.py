"""Accounts, API keys and top-ups.

API keys are hashed, revocable credentials (genmill.domain.credentials), stored like worker tokens.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from genmill.domain.credentials import digest_of
from genmill.domain.ledger import Balances, LedgerEntry, LedgerKind, balances_from_ledger
from genmill.domain.records import Account, ApiKey
from genmill.errors import InvalidRequest, NotFound
from genmill.store.base import Queries
from genmill.store.credentials import API_KEYS
from genmill.store.mapping import to_account
from genmill.store.rows import lock_account, move_credits
from genmill.store.tables import accounts, api_keys, ledger
from genmill.store.webhooks import new_signing_secret


def _to_key(row: sa.Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(m["key_id"], m["account_id"], m["name"], m["prefix"], m["created_at"], m["revoked_at"])


class AccountStore(Queries):
    def create_account(
        self, name: str, *, credits: int = 0, max_concurrency: int = 5, plan: str = "self-hosted"
    ) -> Account:
        if credits < 0:
            raise InvalidRequest("credits: must be zero or more")
        if max_concurrency < 1:
            raise InvalidRequest("max_concurrency: must be at least 1")
        now = self.clock.now()
        account_id = str(uuid.uuid4())
        with self.tx() as conn:
            conn.execute(
                sa.insert(accounts).values(
                    account_id=account_id,
                    name=name,
                    plan=plan,
                    is_enabled=True,
                    max_concurrency=max_concurrency,
                    available_credits=0,
                    frozen_credits=0,
                    used_credits=0,
                    created_at=now,
                    webhook_signing_secret=new_signing_secret(),
                )
            )
            account = lock_account(conn, account_id)
            if credits:
                account = move_credits(conn, account, LedgerKind.TOPUP, credits, None, now)
        return account

    def get(self, account_id: str) -> Account:
        with self.read() as conn:
            row = conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id)).one_or_none()
        if row is None:
            raise NotFound(f"account {account_id} not found")
        return to_account(row)

    def list_accounts(self) -> list[Account]:
        with self.read() as conn:
            rows = conn.execute(sa.select(accounts).order_by(accounts.c.created_at)).all()
        return [to_account(r) for r in rows]

    def topup(self, account_id: str, credits: int) -> Account:
        if credits <= 0:
            raise InvalidRequest("credits: must be a positive integer")
        with self.tx() as conn:
            account = lock_account(conn, account_id)
            return move_credits(conn, account, LedgerKind.TOPUP, credits, None, self.clock.now())

    def create_key(self, account_id: str, name: str = "") -> tuple[str, ApiKey]:
        """A new key for the account; returns the plaintext (shown once) and its record."""
        key_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.tx() as conn:
            lock_account(conn, account_id)
            issued = API_KEYS.issue(conn, key_id, now, account_id=account_id, name=name)
        return issued.plaintext, ApiKey(key_id, account_id, name, issued.shown, now, None)

    def list_keys(self) -> list[ApiKey]:
        with self.read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_to_key(r) for r in rows]

    def revoke_key(self, key_id: str) -> None:
        with self.tx() as conn:
            API_KEYS.revoke(conn, key_id, self.clock.now())

    def authenticate(self, plaintext: str) -> Account | None:
        """The enabled account owning this key, or None. Never says which part failed."""
        digest = digest_of(plaintext)
        with self.read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.key_hash, accounts)
                .join(accounts, accounts.c.account_id == api_keys.c.account_id)
                .where(API_KEYS.active(digest))
            ).one_or_none()
        if row is None or not API_KEYS.matches(row, digest):
            return None
        account = to_account(row)
        return account if account.is_enabled else None

    def ledger_balances(self, account_id: str) -> Balances:
        """The account's buckets rebuilt from its ledger alone (for reconciliation checks)."""
        with self.read() as conn:
            rows = conn.execute(
                sa.select(ledger.c.kind, ledger.c.amount, ledger.c.task_id)
                .where(ledger.c.account_id == account_id)
                .order_by(ledger.c.entry_id)
            ).all()
        return balances_from_ledger(LedgerEntry(LedgerKind(k), a, t) for k, a, t in rows)
