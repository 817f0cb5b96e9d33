"""The admin API over HTTP (ASGI, real SQLite): operator tokens only, accounts, keys shown once and revoked at
once, idempotent and ledger-exact top-ups, worker tokens, and the deployment views; the `genmill admin token`
commands."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.integration.conftest import Api
from tests.support import png_bytes

from genmill.cli import main
from genmill.domain.ledger import LedgerKind
from genmill.domain.timefmt import utcnow
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.tables import ledger, webhook_deliveries

UPSCALE = {"model": "Qubico/image-toolkit", "task_type": "upscale"}


def operator(api: Api) -> dict[str, str]:
    token, _ = api.runtime.store.operators.create_token("ops")
    return {"Authorization": f"Bearer {token}"}


def upscale_task(api: Api) -> str:
    body = {**UPSCALE, "input": {"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": 2}}
    created = api.client.post("/api/v1/task", json=body, headers=api.h())
    assert created.status_code == 200, created.text
    return str(created.json()["data"]["task_id"])


def test_only_an_active_operator_token_administers(api: Api) -> None:
    worker_token, _ = api.runtime.store.workers.create_token("w")
    refusals = {
        "no credentials": ({}, 401),
        "an API key in X-API-Key": ({"X-API-Key": api.key}, 401),
        "an API key as the bearer": ({"Authorization": f"Bearer {api.key}"}, 403),
        "a worker token": ({"Authorization": f"Bearer {worker_token}"}, 403),
        "an unknown operator token": ({"Authorization": "Bearer gmo_not-a-token"}, 401),
    }
    for why, (headers, status) in refusals.items():
        answer = api.client.get("/admin/accounts", headers=headers)
        assert answer.status_code == status, why
        assert answer.json()["code"] == status and answer.json()["data"] is None, why
    plaintext, token = api.runtime.store.operators.create_token("ops")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert api.client.get("/admin/accounts", headers=headers).status_code == 200
    api.runtime.store.operators.revoke_token(token.token_id)
    assert api.client.get("/admin/accounts", headers=headers).status_code == 401


def test_accounts_are_created_listed_read_and_disabled(api: Api) -> None:
    ops = operator(api)
    created = api.client.post(
        "/admin/accounts", json={"name": "acme", "credits": 700, "max_concurrency": 3}, headers=ops
    )
    assert created.status_code == 200, created.text
    account = created.json()
    assert account["credits"] == {"available": 700, "frozen": 0, "used": 0, "total": 700}
    assert account["max_concurrency"] == 3 and account["is_enabled"] is True
    listed = api.client.get("/admin/accounts", headers=ops).json()
    assert account["account_id"] in [a["account_id"] for a in listed]
    assert api.client.get(f"/admin/accounts/{account['account_id']}", headers=ops).json() == account

    assert api.client.get("/account/info", headers=api.h()).status_code == 200
    disabled = api.client.patch(f"/admin/accounts/{api.account_id}", json={"is_enabled": False}, headers=ops)
    assert disabled.json()["is_enabled"] is False
    assert api.client.get("/account/info", headers=api.h()).status_code == 401  # at once, despite the key cache
    changed = api.client.patch(
        f"/admin/accounts/{api.account_id}", json={"is_enabled": True, "max_concurrency": 9}, headers=ops
    ).json()
    assert changed["is_enabled"] is True and changed["max_concurrency"] == 9
    assert api.runtime.store.accounts.get(api.account_id).max_concurrency == 9
    assert api.client.get("/account/info", headers=api.h()).status_code == 200


def test_a_key_is_shown_once_works_and_stops_working_when_revoked(api: Api) -> None:
    ops = operator(api)
    created = api.client.post(f"/admin/accounts/{api.account_id}/keys", json={"name": "ci"}, headers=ops).json()
    secret, key_id = created["secret"], created["key"]["key_id"]
    assert secret.startswith("gm_") and created["key"]["prefix"] == secret[:10]
    assert api.client.get("/account/info", headers=api.h(secret)).json()["data"]["account_id"] == api.account_id
    for listing in ("/admin/keys", f"/admin/accounts/{api.account_id}/keys"):
        answer = api.client.get(listing, headers=ops)
        assert key_id in [k["key_id"] for k in answer.json()]
        assert secret not in answer.text
    revoked = api.client.delete(f"/admin/keys/{key_id}", headers=ops).json()
    assert revoked["revoked_at"] is not None
    assert api.client.get("/account/info", headers=api.h(secret)).status_code == 401
    assert api.client.delete(f"/admin/keys/{key_id}", headers=ops).status_code == 404
    assert api.client.get("/account/info", headers=api.h()).status_code == 200  # the other keys still work


def test_a_retried_top_up_credits_once_and_the_ledger_says_exactly_that(api: Api) -> None:
    ops = operator(api)
    store = api.runtime.store
    before = store.accounts.get(api.account_id).balances
    path = f"/admin/accounts/{api.account_id}/topups"
    headers = {**ops, "Idempotency-Key": "payment-42"}
    first = api.client.post(path, json={"credits": 12_345}, headers=headers).json()
    again = api.client.post(path, json={"credits": 12_345}, headers=headers).json()
    assert first["replayed"] is False and again["replayed"] is True
    assert first["created_at"] == again["created_at"]
    assert again["account"]["credits"]["available"] == before.available + 12_345
    after = store.accounts.get(api.account_id).balances
    assert after.available == before.available + 12_345 and after.total == before.total + 12_345
    assert store.accounts.ledger_balances(api.account_id) == after
    with store.engine.connect() as conn:
        amounts = conn.execute(
            sa.select(ledger.c.amount).where(
                ledger.c.account_id == api.account_id, ledger.c.kind == LedgerKind.TOPUP.value
            )
        ).scalars()
        assert list(amounts).count(12_345) == 1

    other = api.client.post(path, json={"credits": 1}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["message"]
    missing = api.client.post(path, json={"credits": 1}, headers=ops)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["message"]
    negative = api.client.post(path, json={"credits": -5}, headers={**ops, "Idempotency-Key": "n"})
    assert negative.status_code == 400 and "credits" in negative.json()["message"]
    assert store.accounts.get(api.account_id).balances == after


def test_worker_tokens_are_created_listed_and_revoked(api: Api) -> None:
    ops = operator(api)
    created = api.client.post("/admin/worker-tokens", json={"name": "gpu-1"}, headers=ops).json()
    secret, token_id = created["secret"], created["token"]["token_id"]
    assert secret.startswith("gmw_") and created["token"]["pool"] == "public"
    register = {"name": "gpu-1", "capabilities": [UPSCALE]}
    worker = {"Authorization": f"Bearer {secret}"}
    assert api.client.post("/api/v1/workers/register", json=register, headers=worker).status_code == 200
    listed = api.client.get("/admin/worker-tokens", headers=ops)
    assert token_id in [t["token_id"] for t in listed.json()] and secret not in listed.text
    private = api.client.post("/admin/worker-tokens", json={"account_id": api.account_id}, headers=ops).json()
    assert private["token"]["pool"] == api.account_id
    assert api.client.delete(f"/admin/worker-tokens/{token_id}", headers=ops).json()["revoked_at"] is not None
    assert api.client.post("/api/v1/workers/register", json=register, headers=worker).status_code == 401


def test_the_views_show_workers_queue_and_webhook_failures(api: Api) -> None:
    ops = operator(api)
    secret, _ = api.runtime.store.workers.create_token("remote")
    worker = {"Authorization": f"Bearer {secret}"}
    api.client.post("/api/v1/workers/register", json={"name": "remote-1", "capabilities": [UPSCALE]}, headers=worker)
    workers = api.client.get("/admin/workers", headers=ops).json()
    assert workers["in_process"]["slots"] == 1
    assert UPSCALE in workers["in_process"]["capabilities"]
    assert [(w["name"], w["pool"], w["capabilities"]) for w in workers["remote"]] == [("remote-1", "public", [UPSCALE])]

    assert api.client.get("/admin/queue", headers=ops).json() == []
    upscale_task(api)
    upscale_task(api)
    queue = api.client.get("/admin/queue", headers=ops).json()
    assert queue == [{**UPSCALE, "pool": "public", "status": "pending", "count": 2}]

    now = utcnow()
    with api.runtime.store.engine.begin() as conn:
        for n, state in enumerate(("delivered", "failed", "exhausted")):
            conn.execute(
                sa.insert(webhook_deliveries).values(
                    delivery_id=f"d{n}",
                    event_id=n,
                    task_id="t",
                    account_id=api.account_id,
                    endpoint="https://receiver.example/hook",
                    state=state,
                    attempts=n + 1,
                    next_attempt_at=now,
                    last_status_code=400 if state == "failed" else None,
                    last_error="timed out" if state == "exhausted" else None,
                    created_at=now + timedelta(seconds=n),
                )
            )
    failures = api.client.get("/admin/webhooks/failures", headers=ops).json()
    assert [(f["delivery_id"], f["state"]) for f in failures] == [("d2", "exhausted"), ("d1", "failed")]
    assert failures[1]["last_status_code"] == 400 and failures[0]["last_error"] == "timed out"
    assert len(api.client.get("/admin/webhooks/failures", params={"limit": 1}, headers=ops).json()) == 1


def test_the_cli_creates_lists_and_revokes_operator_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENMILL_DATA_DIR", str(tmp_path))
    assert main(["admin", "token", "create", "--name", "oncall"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("gmo_")
    store = Store.from_url(Settings().resolved_database_url())
    try:
        token = store.operators.authenticate(secret)
        assert token is not None and token.name == "oncall"
        assert main(["admin", "token", "list"]) == 0
        listing = capsys.readouterr().out
        assert token.token_id in listing and "active" in listing and secret not in listing
        assert main(["admin", "token", "revoke", token.token_id]) == 0
        assert store.operators.authenticate(secret) is None
        assert main(["admin", "token", "revoke", token.token_id]) == 2  # no active token by that id
    finally:
        store.close()
