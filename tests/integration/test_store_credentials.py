"""API keys and worker tokens share one store path: issued, authenticated, revoked once, then refused."""

from __future__ import annotations

import pytest

from genmill.domain.credentials import API_KEY_PREFIX, WORKER_TOKEN_PREFIX, digest_of
from genmill.errors import NotFound, Unauthorized
from genmill.store import Store
from genmill.store.tables import api_keys, worker_tokens


def test_an_api_key_works_until_it_is_revoked(store: Store) -> None:
    account = store.accounts.create_account("a")
    plaintext, key = store.accounts.create_key(account.account_id, "ci")
    assert plaintext.startswith(API_KEY_PREFIX) and key.prefix == plaintext[:10] and key.name == "ci"
    with store.engine.connect() as conn:
        stored = conn.execute(api_keys.select().where(api_keys.c.key_id == key.key_id)).one()
    assert stored.key_hash == digest_of(plaintext) and plaintext not in stored  # only the digest is kept
    found = store.accounts.authenticate(plaintext)
    assert found is not None and found.account_id == account.account_id
    assert store.accounts.authenticate(plaintext + "x") is None
    store.accounts.revoke_key(key.key_id)
    assert store.accounts.authenticate(plaintext) is None
    with pytest.raises(NotFound, match=f"no active key {key.key_id}"):
        store.accounts.revoke_key(key.key_id)


def test_a_worker_token_works_until_it_is_revoked(store: Store) -> None:
    account = store.accounts.create_account("a")
    plaintext, token = store.workers.create_token("gpu-box", account_id=account.account_id)
    assert plaintext.startswith(WORKER_TOKEN_PREFIX) and token.prefix == plaintext[:10]
    assert token.pool == account.account_id
    with store.engine.connect() as conn:
        stored = conn.execute(worker_tokens.select().where(worker_tokens.c.token_id == token.token_id)).one()
    assert stored.token_hash == digest_of(plaintext) and plaintext not in stored
    assert store.workers.authenticate(plaintext) == token
    with pytest.raises(Unauthorized):
        store.workers.authenticate(plaintext + "x")
    store.workers.revoke_token(token.token_id)
    with pytest.raises(Unauthorized, match="invalid or revoked worker token"):
        store.workers.authenticate(plaintext)
    with pytest.raises(NotFound, match=f"no active worker token {token.token_id}"):
        store.workers.revoke_token(token.token_id)
    with pytest.raises(NotFound, match="account nobody not found"):
        store.workers.create_token("x", account_id="nobody")
