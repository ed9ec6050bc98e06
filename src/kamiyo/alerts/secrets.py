"""Webhook signing secrets: made once per rule, shown to its owner once, kept sealed.

A rule's secret must be read back to sign every delivery, so it cannot be stored as a hash the
way API keys are; it is stored encrypted (AES-256-GCM) under a key derived from
``KAMIYO_SECRET_KEY`` by HKDF-SHA256 with a label of its own, so that key serves nothing else
(tokens are signed with the secret key itself, payment quotes with another derivation) and a
leak of the ``alert_rules`` table alone reveals no secret. The form is Standard Webhooks':
``whsec_`` and the base64 of random bytes, which its libraries take as they are.
"""

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

SECRET_PREFIX = "whsec_"  # noqa: S105 (the form's prefix, not a secret)
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64
# What the derived key is for: changing it makes every sealed secret unreadable.
KEY_LABEL = b"kamiyo/alerts/webhook-secret/v1"
SEALED_PREFIX = "v1."
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed secret that cannot be opened (another KAMIYO_SECRET_KEY, or damaged)."""


def new_secret() -> str:
    """A new signing secret in Standard Webhooks form (``whsec_`` + base64 of 32 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _cipher(secret_key: SecretStr) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_LABEL).derive(
        secret_key.get_secret_value().encode()
    )
    return AESGCM(derived)


def seal(secret_key: SecretStr, secret: str) -> str:
    """``secret`` encrypted for storage: ``v1.`` + base64url(nonce + ciphertext + tag)."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = _cipher(secret_key).encrypt(nonce, secret.encode(), None)
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: SecretStr, sealed: str) -> str:
    """The secret :func:`seal` stored; :class:`SealError` if it cannot be opened."""
    if not sealed.startswith(SEALED_PREFIX):
        raise SealError("not a sealed webhook secret")
    try:
        raw = base64.urlsafe_b64decode(sealed.removeprefix(SEALED_PREFIX).encode())
        opened = _cipher(secret_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
    except (InvalidTag, ValueError):
        raise SealError(
            "the webhook secret cannot be opened (KAMIYO_SECRET_KEY changed, or it is damaged)"
        ) from None
    return opened.decode()
