"""Signed checkpoints where pruned usage ranges end (the retention job writes them).

A checkpoint says "records 1..seq of chain C were pruned; the last one's hash was H". Its
HMAC-SHA256 signature covers exactly that (and when it was made), under a key only the server
holds (``KAMIYO_USAGE_CHECKPOINT_KEY``, or one derived from ``KAMIYO_SECRET_KEY``): a chain then
verifies from its latest checkpoint, and whoever can delete records but not sign cannot hide the
gap. The key's id (a hash of it) is stored beside, so a checkpoint signed under another key is
reported as such instead of as tampering.
"""

import datetime as dt
import hashlib
import hmac
import json

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.usage import UsageCheckpoint

# Domain separation: the secret key signs other things (tokens, payment references) too.
DERIVATION_LABEL = b"kamiyo usage checkpoint v1"


def checkpoint_key(configured: SecretStr | None, secret_key: SecretStr) -> bytes:
    """The signing key: the configured one, else one derived from the server's secret key."""
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value().encode()
    return hmac.new(secret_key.get_secret_value().encode(), DERIVATION_LABEL, "sha256").digest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:16]


def _message(chain: str, seq: int, last_hash: str, created_at: dt.datetime) -> bytes:
    stamp = created_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return json.dumps(["usage-checkpoint", chain, seq, last_hash, stamp]).encode()


def sign(key: bytes, chain: str, seq: int, last_hash: str, created_at: dt.datetime) -> str:
    return hmac.new(key, _message(chain, seq, last_hash, created_at), "sha256").hexdigest()


def problem_with(checkpoint: UsageCheckpoint, key: bytes | None) -> str | None:
    """Why ``checkpoint`` cannot be trusted (None: it can)."""
    where = f"the checkpoint at record {checkpoint.seq}"
    if key is None:
        return f"{where} cannot be checked without the checkpoint key"
    if checkpoint.key_id != key_id(key):
        return f"{where} was signed by another key (id {checkpoint.key_id})"
    expected = sign(key, checkpoint.chain, checkpoint.seq, checkpoint.hash, checkpoint.created_at)
    if not hmac.compare_digest(expected, checkpoint.signature):
        return f"{where} was altered (its signature does not match)"
    return None


async def latest_checkpoint(session: AsyncSession, chain: str) -> UsageCheckpoint | None:
    found = await session.scalars(
        select(UsageCheckpoint)
        .where(UsageCheckpoint.chain == chain)
        .order_by(UsageCheckpoint.seq.desc())
        .limit(1)
    )
    return found.first()
