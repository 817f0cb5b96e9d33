"""API keys and worker tokens are one kind of secret: a bearer credential, shown once, stored only as a digest,
revocable.

A credential is 256 random bits behind a prefix that says what it is (`gm_` an API key, `gmw_` a worker token,
`gmo_` an operator token), so a leaked one is recognisable. Only its SHA-256 is stored. A fast hash is the
right tool here (unlike passwords, the input has full entropy, so brute force is hopeless); the lookup is by the
digest's unique index and the final comparison is constant-time. Its first characters are kept in clear so that
an operator can tell credentials apart in listings.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_PREFIX = "gm_"
WORKER_TOKEN_PREFIX = "gmw_"
OPERATOR_TOKEN_PREFIX = "gmo_"
"""The admin API's operator tokens (`genmill admin token create`); never accepted where an API key is."""
SHOWN_CHARS = 10
"""How much of a credential is stored in clear (its `prefix` column): the kind prefix and a few random chars."""


@dataclass(frozen=True)
class NewCredential:
    plaintext: str
    """Handed to its owner once; never stored."""
    digest: str
    shown: str
    """The first `SHOWN_CHARS` characters, stored to tell credentials apart."""


def new_credential(prefix: str) -> NewCredential:
    plaintext = prefix + secrets.token_urlsafe(32)
    return NewCredential(plaintext, digest_of(plaintext), plaintext[:SHOWN_CHARS])


def digest_of(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def digests_match(stored: str, presented: str) -> bool:
    """Constant-time, so that the time a comparison takes says nothing about how much of a digest matched."""
    return hmac.compare_digest(stored, presented)
