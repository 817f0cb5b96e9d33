"""Operator tokens, idempotent top-ups and account settings in the store, on SQLite and PostgreSQL: concurrent
retries of one top-up credit once, and the ledger rebuilds the balances exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from genmill.errors import Conflict, InvalidRequest, NotFound
from genmill.store import Store


def test_operator_tokens_authenticate_until_revoked(store: Store) -> None:
    plaintext, token = store.operators.create_token("oncall")
    assert plaintext.startswith("gmo_") and token.prefix == plaintext[:10]
    found = store.operators.authenticate(plaintext)
    assert found is not None and found.token_id == token.token_id
    assert store.operators.authenticate(plaintext + "x") is None
    assert [t.token_id for t in store.operators.list_tokens()] == [token.token_id]
    store.operators.revoke_token(token.token_id)
    assert store.operators.authenticate(plaintext) is None
    with pytest.raises(NotFound):
        store.operators.revoke_token(token.token_id)


def test_concurrent_retries_of_a_top_up_credit_once(store: Store) -> None:
    account = store.accounts.create_account("a", credits=100)
    _, operator = store.operators.create_token()

    def topup(_: int) -> bool:
        return store.operators.topup(account.account_id, 50, "evt-1", operator.token_id)[1].replayed

    with ThreadPoolExecutor(8) as pool:
        replayed = list(pool.map(topup, range(16)))
    assert replayed.count(False) == 1
    balances = store.accounts.get(account.account_id).balances
    assert balances.available == 150 and balances.total == 150
    assert store.accounts.ledger_balances(account.account_id) == balances
    with pytest.raises(Conflict):
        store.operators.topup(account.account_id, 51, "evt-1", operator.token_id)
    other = store.accounts.create_account("b")
    with pytest.raises(Conflict):
        store.operators.topup(other.account_id, 50, "evt-1", operator.token_id)
    with pytest.raises(InvalidRequest, match="Idempotency-Key"):
        store.operators.topup(account.account_id, 50, "", operator.token_id)
    with pytest.raises(NotFound):
        store.operators.topup("no-such-account", 50, "evt-2", operator.token_id)
    assert store.accounts.get(account.account_id).balances == balances


def test_accounts_are_disabled_and_limited(store: Store) -> None:
    account = store.accounts.create_account("a", max_concurrency=2)
    key, _ = store.accounts.create_key(account.account_id)
    changed = store.operators.update_account(account.account_id, is_enabled=False, max_concurrency=7)
    assert not changed.is_enabled and changed.max_concurrency == 7
    assert store.accounts.authenticate(key) is None
    assert store.operators.update_account(account.account_id, is_enabled=True).max_concurrency == 7
    assert store.accounts.authenticate(key) is not None
    with pytest.raises(InvalidRequest, match="max_concurrency"):
        store.operators.update_account(account.account_id, max_concurrency=0)
