"""API token format: `mcpp_<public id>_<secret>`. The public id finds the row; only sha256(secret) is stored.

The secret has 256 bits of entropy, so a plain sha256 is enough (no slow KDF needed: nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

PREFIX = "mcpp_"
PUBLIC_ID_LENGTH = 12
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ParsedToken:
    public_id: str
    secret: str


def generate() -> tuple[str, str, str]:
    """A new token: (full token to show once, public id, secret hash to store)."""
    public_id = "".join(secrets.choice(_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{public_id}_{secret}", public_id, hash_secret(secret)


def parse(token: str) -> ParsedToken | None:
    """The parts of a well-formed token, or None."""
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + PUBLIC_ID_LENGTH + 2:
        return None
    public_id = token[len(PREFIX) : len(PREFIX) + PUBLIC_ID_LENGTH]
    if token[len(PREFIX) + PUBLIC_ID_LENGTH] != "_" or any(c not in _ALPHABET for c in public_id):
        return None
    return ParsedToken(public_id=public_id, secret=token[len(PREFIX) + PUBLIC_ID_LENGTH + 1 :])


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
