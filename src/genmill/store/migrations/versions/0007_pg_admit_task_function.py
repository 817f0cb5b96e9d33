"""PostgreSQL: the create's admission and credit freeze as one server-side function

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 04:30:00.000000

On PostgreSQL a create is one statement (`genmill.store.pg_create`): this function locks the account, checks it
is enabled, looks up a live idempotency key, counts the account's active (and, at the limit, staged) tasks, and
freezes the price; the statement around it inserts the task, its outbox event and webhook delivery, and notifies.

Each statement inside a PL/pgSQL function takes a snapshot of its own, so the counts after the row lock see every
create that committed while this one waited for it (a count folded into the locking statement would not).

The function returns the facts it decided on. `genmill.store.pg_create` decides again, with `genmill.domain`'s
rules on those facts, and rolls the create back if the two disagree: the rules stay `genmill.domain`'s, and a
function out of step with them (a database migrated by another version) is caught at the first create, not
trusted. SQLite has no functions; its creates keep the portable statements.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ADMIT_TASK = """
CREATE OR REPLACE FUNCTION genmill_admit_task(
    p_account_id text, p_task_id text, p_price bigint, p_now timestamptz,
    p_active text[], p_pending text, p_staged text, p_max_staged integer, p_freeze text,
    p_key text, p_request_hash text, p_key_expires_at timestamptz
) RETURNS TABLE (
    r_outcome text, r_status text, r_is_enabled boolean, r_max_concurrency integer,
    r_active integer, r_staged integer, r_available bigint, r_frozen bigint, r_used bigint
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    acct accounts%ROWTYPE;
    key_expires timestamptz;
BEGIN
    SELECT * INTO acct FROM accounts AS a WHERE a.account_id = p_account_id FOR UPDATE;
    IF NOT FOUND THEN
        r_outcome := 'no_account';
        RETURN NEXT;
        RETURN;
    END IF;
    r_is_enabled := acct.is_enabled;
    r_max_concurrency := acct.max_concurrency;
    r_available := acct.available_credits;
    r_frozen := acct.frozen_credits;
    r_used := acct.used_credits;
    IF NOT acct.is_enabled THEN
        r_outcome := 'disabled';
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT k.expires_at INTO key_expires FROM idempotency_keys AS k
        WHERE k.account_id = p_account_id AND k.key = p_key;
        IF FOUND THEN
            IF key_expires > p_now THEN
                r_outcome := 'replay';
                RETURN NEXT;
                RETURN;
            END IF;
            DELETE FROM idempotency_keys AS k WHERE k.account_id = p_account_id AND k.key = p_key;
        END IF;
    END IF;
    SELECT count(*) INTO r_active FROM tasks AS t WHERE t.account_id = p_account_id AND t.status = ANY (p_active);
    IF r_active < acct.max_concurrency THEN
        r_status := p_pending;
    ELSE
        SELECT count(*) INTO r_staged FROM tasks AS t WHERE t.account_id = p_account_id AND t.status = p_staged;
        IF r_staged >= p_max_staged THEN
            r_outcome := 'too_many';
            RETURN NEXT;
            RETURN;
        END IF;
        r_status := p_staged;
    END IF;
    IF p_price > acct.available_credits THEN
        r_outcome := 'insufficient';
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE accounts AS a
    SET available_credits = a.available_credits - p_price, frozen_credits = a.frozen_credits + p_price
    WHERE a.account_id = p_account_id;
    INSERT INTO ledger (account_id, task_id, kind, amount, created_at)
    VALUES (p_account_id, p_task_id, p_freeze, p_price, p_now);
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (account_id, key, request_hash, task_id, created_at, expires_at)
        VALUES (p_account_id, p_key, p_request_hash, p_task_id, p_now, p_key_expires_at);
    END IF;
    r_outcome := 'admitted';
    RETURN NEXT;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT_TASK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS genmill_admit_task")
