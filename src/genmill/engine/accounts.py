"""The accounts that own and pay for tasks, as the API needs them: who a key belongs to, balances, signing secret.

Balances are always read fresh from the store here (never from the API's key cache), so an answer about credits
is as current as the last committed task.
"""

from __future__ import annotations

from genmill.domain.records import Account
from genmill.store import Store


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def authenticate(self, api_key: str) -> Account | None:
        """The account of an active API key, or None."""
        return self.store.accounts.authenticate(api_key)

    def get(self, account_id: str) -> Account:
        """The account with its current balances."""
        return self.store.accounts.get(account_id)

    def signing_secret(self, account_id: str) -> str:
        """The account's Standard Webhooks signing secret (created on first use)."""
        return self.store.webhooks.account_signing_secret(account_id)
