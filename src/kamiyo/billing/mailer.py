"""Plain-text email through the operator's SMTP server.

Without ``KAMIYO_SMTP_HOST`` mail is off: the message is logged at WARNING instead, with every
one-time link cut out, because a log is read by more people than the mailbox it was meant for.
"""

import email.utils
import logging
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from kamiyo.config import Settings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30.0
WITHHELD = "[one-time link withheld from the log]"


class MailError(RuntimeError):
    """The mail server could not be reached or refused the message."""


def compose(settings: Settings, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    _, sender = email.utils.parseaddr(settings.mail_from)
    domain = sender.rpartition("@")[2] or None
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(text)
    return message


async def send_mail(
    settings: Settings, to: str, subject: str, text: str, *, secrets: Sequence[str] = ()
) -> bool:
    """Send ``text`` to ``to``; False when mail is off (then it is logged without ``secrets``).

    ``secrets`` are the parts of ``text`` that must never reach a log (one-time links).
    Raises MailError when the server cannot take the message.
    """
    message = compose(settings, to, subject, text)
    if not settings.smtp_host:
        shown = text
        for secret in secrets:
            shown = shown.replace(secret, WITHHELD)
        log.warning(
            "mail is off (KAMIYO_SMTP_HOST is not set); not sent to %s: %s\n%s", to, subject, shown
        )
        return False
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password if settings.smtp_username else None,
            use_tls=settings.smtp_security == "tls",
            # "none" must mean none: left to itself the client upgrades whenever it can.
            start_tls=settings.smtp_security == "starttls",
            timeout=SMTP_TIMEOUT_S,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.error(
            "could not send mail %r to %s through %s:%s: %s: %s",
            subject,
            to,
            settings.smtp_host,
            settings.smtp_port,
            type(exc).__name__,
            exc,
        )
        raise MailError(f"the mail server did not take the message ({type(exc).__name__})") from exc
    log.info("sent mail %r to %s", subject, to)
    return True
