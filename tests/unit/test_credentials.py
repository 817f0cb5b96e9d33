"""API keys and worker tokens as one kind of credential: what is shown, what is stored, how it is compared."""

from __future__ import annotations

import hashlib

from genmill.domain.credentials import (
    API_KEY_PREFIX,
    SHOWN_CHARS,
    WORKER_TOKEN_PREFIX,
    digest_of,
    digests_match,
    new_credential,
)


def test_a_credential_says_what_it_is_and_only_its_digest_and_first_characters_are_kept() -> None:
    for prefix in (API_KEY_PREFIX, WORKER_TOKEN_PREFIX):
        issued = new_credential(prefix)
        assert issued.plaintext.startswith(prefix) and len(issued.plaintext) >= len(prefix) + 43  # 256 bits
        assert issued.shown == issued.plaintext[:SHOWN_CHARS]
        assert issued.digest == hashlib.sha256(issued.plaintext.encode()).hexdigest() == digest_of(issued.plaintext)
        assert len(issued.digest) == 64  # what the key_hash and token_hash columns hold


def test_two_credentials_never_share_a_digest_and_only_the_same_one_matches() -> None:
    one, two = new_credential(API_KEY_PREFIX), new_credential(API_KEY_PREFIX)
    assert one.plaintext != two.plaintext and one.digest != two.digest
    assert digests_match(one.digest, digest_of(one.plaintext))
    assert not digests_match(one.digest, two.digest)
