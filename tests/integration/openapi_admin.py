"""The admin routes' part of tests/integration/test_openapi.py: the codes each documents and the probes that
provoke them with an operator token (the generic probes there give the 401s and 403s)."""

from __future__ import annotations

from typing import Any, Protocol


class Call(Protocol):
    def __call__(self, route: str, path: str | None = None, **kwargs: Any) -> int: ...


BOUNDARY_ONLY = 400

ADMIN_EXPECTED: dict[str, set[int]] = {
    "GET /readyz": set(),
    "GET /admin/accounts": {400, 401, 403},
    "POST /admin/accounts": {400, 401, 403, 413},
    "GET /admin/accounts/{account_id}": {400, 401, 403, 404},
    "PATCH /admin/accounts/{account_id}": {400, 401, 403, 404, 413},
    "POST /admin/accounts/{account_id}/topups": {400, 401, 403, 404, 409, 413},
    "GET /admin/accounts/{account_id}/keys": {400, 401, 403, 404},
    "POST /admin/accounts/{account_id}/keys": {400, 401, 403, 404, 413},
    "GET /admin/keys": {400, 401, 403},
    "DELETE /admin/keys/{key_id}": {400, 401, 403, 404},
    "GET /admin/worker-tokens": {400, 401, 403},
    "POST /admin/worker-tokens": {400, 401, 403, 404, 413},
    "DELETE /admin/worker-tokens/{token_id}": {400, 401, 403, 404},
    "GET /admin/workers": {400, 401, 403},
    "GET /admin/queue": {400, 401, 403},
    "GET /admin/webhooks/failures": {400, 401, 403},
}
"""The admin and readiness routes and the error codes each answers."""

ADMIN_NOT_PROVOKED: dict[str, set[int]] = {
    # Routes without a body or parameters of their own answer 400 only when the boundary refuses a header or path.
    route: {BOUNDARY_ONLY}
    for route in (
        "GET /admin/accounts",
        "GET /admin/accounts/{account_id}",
        "GET /admin/accounts/{account_id}/keys",
        "GET /admin/keys",
        "DELETE /admin/keys/{key_id}",
        "GET /admin/worker-tokens",
        "DELETE /admin/worker-tokens/{token_id}",
        "GET /admin/workers",
        "GET /admin/queue",
    )
}


def probe_the_admin_routes(call: Call, operator: dict[str, str], api_key: str, account_id: str, max_body: int) -> None:
    """An operator token's unknown ids (404), bad bodies and parameters (400), a reused Idempotency-Key (409),
    an oversized PATCH (413), and an account key or worker token in place of an operator token (403)."""
    account = f"/admin/accounts/{account_id}"
    for route in ("GET /admin/accounts/{account_id}", "GET /admin/accounts/{account_id}/keys"):
        call(route, route.split(" ")[1].replace("{account_id}", "no-such-id"), headers=operator)
    call("PATCH /admin/accounts/{account_id}", "/admin/accounts/no-such-id", json={}, headers=operator)
    call("PATCH /admin/accounts/{account_id}", account, json={"max_concurrency": 0}, headers=operator)
    call("PATCH /admin/accounts/{account_id}", account, content=b"x" * (max_body + 1), headers=operator)
    topups = "POST /admin/accounts/{account_id}/topups"
    call(topups, f"{account}/topups", json={"credits": 5}, headers={**operator, "Idempotency-Key": "t"})
    call(topups, f"{account}/topups", json={"credits": 6}, headers={**operator, "Idempotency-Key": "t"})
    call(topups, "/admin/accounts/no-such-id/topups", json={"credits": 5}, headers={**operator, "Idempotency-Key": "u"})
    call(topups, f"{account}/topups", json={"credits": 5}, headers=operator)  # no Idempotency-Key: 400
    keys = "POST /admin/accounts/{account_id}/keys"
    call(keys, "/admin/accounts/no-such-id/keys", json={}, headers=operator)
    call(keys, f"{account}/keys", json={"name": "x" * 201}, headers=operator)
    call("POST /admin/accounts", json={"name": ""}, headers=operator)
    call("POST /admin/worker-tokens", json={"account_id": "no-such-id"}, headers=operator)
    call("POST /admin/worker-tokens", json={"name": "x" * 201}, headers=operator)
    call("GET /admin/webhooks/failures", params={"limit": 0}, headers=operator)
    for route in ("DELETE /admin/keys/{key_id}", "DELETE /admin/worker-tokens/{token_id}"):
        call(route, route.split(" ")[1].split("{")[0] + "no-such-id", headers=operator)
    call("GET /admin/accounts", headers={"Authorization": f"Bearer {api_key}"})  # an API key: 403
    call("GET /readyz")
