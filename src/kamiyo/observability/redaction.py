"""The last line of defence against secrets in logs: what a record would write is searched for
credentials and the configured secrets, and each is replaced by ``[redacted]``.

The first line is not logging them at all (access lines show paths only, HTTP clients and
Stripe's library are kept quiet, no code logs a header). This filter catches what slips past:
a library that logs a request's headers, an exception whose message quotes a URL or a token.
It knows secrets two ways: by form (our API keys, bundle tokens and webhook secrets have
prefixes; JWTs start ``eyJ``; credential headers and cookies by name) and by value (every
``SecretStr`` of the settings, and passwords in the database and Redis URLs, handed over by
``configure_logging``). Tokens that are only random characters (OAuth tokens, sessions, one-time
links) have no form to match: only their header, cookie or parameter name gives them away.
"""

import logging
import re
from collections.abc import Iterable
from typing import Final

from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

REDACTED: Final = "[redacted]"
# Configured secrets shorter than this are not searched for: a 3-character "password" would
# blank out every word that contains it, and is no secret worth the name anyway.
MIN_KNOWN_SECRET: Final = 8

# Credentials recognised by their form, whatever carries them.
_TOKEN_FORMS: Final = (
    r"kmy_live_[A-Za-z0-9_\-]{20,}",  # API keys (access/keys.py); a shown prefix is shorter
    r"\bkb_[A-Za-z0-9_\-]{16,}",  # bundle tokens (payments/bundles.py)
    r"whsec_[A-Za-z0-9_\-+/=.]+",  # Stripe and alert webhook signing secrets
    r"\bsk_(?:live|test)_[A-Za-z0-9]+",  # Stripe API keys
    r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",  # JWTs
)
# What each form starts with, tested before the expression is run.
_FORM_MARKERS: Final = ("kmy_live_", "kb_", "whsec_", "sk_live_", "sk_test_", "eyJ")
# Headers, cookies, form fields and query parameters whose value is a credential, by name:
# "name: value", "name=value", "'name': 'value'" (a logged dict), "name": "value" (JSON).
_SECRET_NAMES: Final = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "payment-signature",
    "x-payment",
    "stripe-signature",
    "x-kamiyo-signature",
    "kamiyo_session",
    "kamiyo_oauth_csrf",
    "password",
    "client_secret",
    "refresh_token",
    "access_token",
    "code_verifier",
    "token",
    "csrf",
)
_NAMED: Final = (
    r"(?i)(?P<name>\b(?:"
    + "|".join(re.escape(name) for name in _SECRET_NAMES)
    + r")\b['\"]?\s*[:=]\s*['\"]?)"
    # A scheme word (Bearer, Basic) is kept in front of what it introduces.
    # A placeholder ("Bearer <API key>") in our own messages is no value.
    + r"(?P<scheme>(?:bearer|basic)\s+)?(?!(?:bearer|basic)\b)(?P<value>[^\s'\",;&}<][^\s'\",;&}]*)"
)
# 16 characters or more: "the Bearer scheme" in a sentence is no credential.
_BEARER: Final = r"(?i)\b(?P<bearer>bearer\s+)[A-Za-z0-9._~+/\-]{16,}=*"


class Redacted(logging.Filter):
    """Replaces credentials in the rendered message, the string extras and the traceback text
    of every record. Runs after ``BoundedRecords``, which leaves the message rendered and
    short, so each record costs a search of a few hundred characters."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        super().__init__()
        self._known = re.compile("|".join(re.escape(s) for s in sorted(set(known), key=len)[::-1]))
        self._has_known = bool(set(known))
        self._named = re.compile(_NAMED)
        self._bearer = re.compile(_BEARER)
        self._forms = re.compile("|".join(_TOKEN_FORMS))

    def redact(self, text: str) -> str:
        # Substring tests first: on most lines nothing matches, and ``in`` is far cheaper than
        # a regular expression's search (a few µs a line instead of a hundred).
        if self._has_known:
            text = self._known.sub(REDACTED, text)
        if any(marker in text for marker in _FORM_MARKERS):
            text = self._forms.sub(REDACTED, text)
        lowered = text.lower()
        if "bearer" in lowered:
            text = self._bearer.sub(lambda m: m["bearer"] + REDACTED, text)
        if any(name in lowered for name in _SECRET_NAMES):
            text = self._named.sub(lambda m: m["name"] + (m["scheme"] or "") + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken call: the handler reports it as it always has
            return True
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in record.__dict__.items():
            if isinstance(value, str) and key not in _KEPT:
                cleaned = self.redact(value)
                if cleaned != value:
                    record.__dict__[key] = cleaned
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            cleaned = self.redact(record.exc_text)
            if cleaned != record.exc_text:
                # The JSON formatter renders exc_info afresh: it must take the cleaned text.
                record.exc_text, record.exc_info = cleaned, None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# String attributes of every record that name code, not data: not searched.
_KEPT: Final = frozenset(
    {"msg", "name", "levelname", "pathname", "filename", "module", "funcName", "processName"}
    | {"threadName", "taskName", "exc_text", "stack_info", "request_id"}
)


def known_secrets(settings: BaseModel) -> list[str]:
    """Every configured secret of ``settings``: its ``SecretStr`` values, and the passwords of
    the URLs it names (a database's, Redis's), long enough to search for."""
    found: list[str] = []
    _collect(settings, found)
    return [value for value in found if len(value) >= MIN_KNOWN_SECRET]


def _collect(model: BaseModel, found: list[str]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            _collect(value, found)
        elif isinstance(value, str) and "://" in value and "@" in value:
            password = _url_password(value)
            if password:
                found.append(password)


def _url_password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None
