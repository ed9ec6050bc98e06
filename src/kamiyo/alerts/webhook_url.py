"""What a rule's webhook URL may be, checked by its form when the rule is made (and again by
the sender, which also checks where the name resolves on every delivery).

HTTPS only in production; plain HTTP is allowed elsewhere so a developer can point a rule at a
local receiver. No userinfo: credentials in a URL end up in logs and delivery records.
"""

import urllib.parse

MAX_URL_LENGTH = 2048


class WebhookUrlError(ValueError):
    """A webhook URL that cannot be used; the message says why, for the rule's owner."""


def check_webhook_url(url: str, *, require_https: bool) -> str:
    """``url`` stripped, if a rule may send to it; otherwise :class:`WebhookUrlError`."""
    url = url.strip()
    if not url:
        raise WebhookUrlError("the webhook URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlError(f"the webhook URL does not parse ({exc})") from None
    allowed = ("https",) if require_https else ("https", "http")
    if parts.scheme not in allowed:
        raise WebhookUrlError(
            f"the webhook URL must start with {' or '.join(s + '://' for s in allowed)}"
        )
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("the webhook URL must not carry a user name or password")
    if not parts.hostname:
        raise WebhookUrlError("the webhook URL has no host")
    if port == 0:
        raise WebhookUrlError("the webhook URL's port must be between 1 and 65535")
    if parts.fragment:
        raise WebhookUrlError("the webhook URL must not have a #fragment")
    return url
