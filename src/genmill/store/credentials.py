"""Issue, revoke and look up hashed, revocable credentials (genmill.domain.credentials) in their tables.

API keys (`api_keys`) and worker tokens (`worker_tokens`) are stored alike: an id, the digest, the clear prefix,
when it was created and when revoked. The tables differ only in what the id and digest columns are called and in
who owns the credential (an account; a name and an optional private pool), which callers pass through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.credentials import (
    API_KEY_PREFIX,
    OPERATOR_TOKEN_PREFIX,
    WORKER_TOKEN_PREFIX,
    NewCredential,
    digests_match,
    new_credential,
)
from genmill.errors import NotFound
from genmill.store.tables import api_keys, operator_tokens, worker_tokens


class CredentialTable:
    def __init__(self, table: sa.Table, *, id_column: str, digest_column: str, prefix: str, noun: str) -> None:
        self.table = table
        self.id = table.c[id_column]
        self.digest = table.c[digest_column]
        self.prefix = prefix
        self.noun = noun

    def issue(self, conn: sa.Connection, credential_id: str, created_at: datetime, **owner: Any) -> NewCredential:
        """Insert a new credential for `owner` (the table's other columns); its plaintext is in the result only."""
        issued = new_credential(self.prefix)
        conn.execute(
            sa.insert(self.table).values(
                {
                    self.id.name: credential_id,
                    self.digest.name: issued.digest,
                    "prefix": issued.shown,
                    "created_at": created_at,
                    **owner,
                }
            )
        )
        return issued

    def revoke(self, conn: sa.Connection, credential_id: str, now: datetime) -> None:
        """Revoke an active credential; `NotFound` when there is none by that id (or it is already revoked)."""
        result = conn.execute(
            sa.update(self.table)
            .where(self.id == credential_id, self.table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if result.rowcount == 0:
            raise NotFound(f"no active {self.noun} {credential_id}")

    def active(self, digest: str) -> sa.ColumnElement[bool]:
        """The condition selecting the unrevoked credential with this digest."""
        return sa.and_(self.digest == digest, self.table.c.revoked_at.is_(None))

    def matches(self, row: sa.Row[Any], digest: str) -> bool:
        """The final, constant-time check of a row found by `active(digest)`."""
        return digests_match(row._mapping[self.digest], digest)


API_KEYS = CredentialTable(api_keys, id_column="key_id", digest_column="key_hash", prefix=API_KEY_PREFIX, noun="key")
WORKER_TOKENS = CredentialTable(
    worker_tokens, id_column="token_id", digest_column="token_hash", prefix=WORKER_TOKEN_PREFIX, noun="worker token"
)
OPERATOR_TOKENS = CredentialTable(
    operator_tokens,
    id_column="token_id",
    digest_column="token_hash",
    prefix=OPERATOR_TOKEN_PREFIX,
    noun="operator token",
)
