"""Webhook secrets: Standard Webhooks' form, sealed under a key of their own."""

import base64

import pytest
from pydantic import SecretStr

from kamiyo.alerts.secrets import SealError, new_secret, seal, unseal

KEY = SecretStr("k" * 48)


def test_a_new_secret_is_in_standard_webhooks_form() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert new_secret() != secret
    # What standardwebhooks' Webhook(secret) does with it: strip the prefix, decode base64.
    base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def test_seal_and_unseal() -> None:
    secret = new_secret()
    sealed = seal(KEY, secret)
    assert secret not in sealed
    assert secret.removeprefix("whsec_") not in sealed
    assert unseal(KEY, sealed) == secret
    assert seal(KEY, secret) != sealed  # a fresh nonce each time


@pytest.mark.parametrize(
    "opened_with", [SecretStr("another key, long enough to be one"), KEY], ids=["key", "damaged"]
)
def test_a_wrong_key_or_a_damaged_value_does_not_open(opened_with: SecretStr) -> None:
    sealed = seal(KEY, new_secret())
    if opened_with is KEY:
        sealed = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError, match="cannot be opened"):
        unseal(opened_with, sealed)
    with pytest.raises(SealError, match="not a sealed"):
        unseal(KEY, "whsec_plain")
