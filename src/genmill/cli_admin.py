"""`genmill admin token create|list|revoke`: the operator tokens the admin API (`/admin/...`) takes.

Like `genmill keys create`, `create` prints the secret alone on the last line of stdout (shown once) and
everything else on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

StoreOf = Callable[[argparse.Namespace], Any]
WithData = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_admin_commands(sub: Any, with_data: WithData, store_of: StoreOf) -> None:
    """Register `genmill admin token ...` on the top-level subparsers `sub`."""

    def create(args: argparse.Namespace) -> int:
        plaintext, token = store_of(args).operators.create_token(args.name or "")
        print(f"operator token {token.token_id} created; it is shown once, store it now:", file=sys.stderr)
        print(plaintext)
        return 0

    def list_tokens(args: argparse.Namespace) -> int:
        for t in store_of(args).operators.list_tokens():
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            print(f"{t.token_id}  {t.prefix}…  name={t.name!r}  {state}")
        return 0

    def revoke(args: argparse.Namespace) -> int:
        store_of(args).operators.revoke_token(args.token_id)
        print(f"operator token {args.token_id} revoked", file=sys.stderr)
        return 0

    admin = sub.add_parser("admin", help="operator tokens for the admin API (docs/admin.md)")
    token = admin.add_subparsers(dest="admin_command", required=True).add_parser("token", help="operator tokens")
    tokens = token.add_subparsers(dest="token_command", required=True)
    create_parser = with_data(tokens.add_parser("create", help="create an operator token (last line of stdout)"))
    create_parser.add_argument("--name", default="")
    create_parser.set_defaults(func=create)
    with_data(tokens.add_parser("list", help="list operator tokens (never their secrets)")).set_defaults(
        func=list_tokens
    )
    revoke_parser = with_data(tokens.add_parser("revoke", help="revoke an operator token by id"))
    revoke_parser.add_argument("token_id")
    revoke_parser.set_defaults(func=revoke)
