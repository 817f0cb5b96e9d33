"""The dashboard's operator pages in a headless Chromium: an operator signs in with an operator token and tops up
an account; the balance shown changes and the admin API and the ledger agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser.dashboard import LiveServer, shot

pytestmark = pytest.mark.browser


def test_an_operator_tops_up_an_account(page: Any, server: LiveServer, artifacts: Path) -> None:
    store = server.runtime.store
    customer = store.accounts.create_account("customer-topped-up", credits=1_000)
    token, _ = store.operators.create_token("dashboard test")
    page.goto(f"{server.url}/dashboard/#/operator")
    page.fill("#operator-token", token)
    page.click("#operator-sign-in button[type=submit]")
    row = f"#accounts tr[data-account-id='{customer.account_id}']"
    page.wait_for_selector(row)
    assert page.inner_text(f"{row} td.available") == "1,000 credits"
    assert "Qubico/image-toolkit/upscale" in page.inner_text("#operator")  # what this process's workers serve
    page.fill(f"{row} input.topup-credits", "5000")
    page.click(f"{row} form.topup button")
    page.wait_for_function(
        "sel => document.querySelector(sel)?.textContent === '6,000 credits'", arg=f"{row} td.available"
    )
    assert page.inner_text(f"{row} td.total") == "6,000 credits"
    shot(page, artifacts, "10-operator-topped-up")

    answer = httpx.get(
        f"{server.url}/admin/accounts/{customer.account_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.json()["credits"] == {"available": 6_000, "frozen": 0, "used": 0, "total": 6_000}
    ledger = store.accounts.ledger_balances(customer.account_id)  # the ledger alone says the same
    assert (ledger.available, ledger.total) == (6_000, 6_000)


def test_a_wrong_operator_token_is_refused_on_the_page(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/dashboard/#/operator")
    page.fill("#operator-token", server.key)  # an account's API key does not administer
    page.click("#operator-sign-in button[type=submit]")
    page.wait_for_selector("#operator-error:not(:empty)")
    assert "operator token" in page.inner_text("#operator-error")
    assert page.query_selector("#accounts") is None
