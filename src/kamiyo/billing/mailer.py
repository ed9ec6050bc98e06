"""Plain-text email through the operator's SMTP server.

Without ``KAMIYO_SMTP_HOST`` mail is off: the message is logged at WARNING instead, with every
one-time link cut out, because a log is read by more people than the mailbox it was meant for.
"""

import email.utils
import logging
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from kamiyo.config import SmtpSettings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30.0
WITHHELD = "[one-time link withheld from the log]"


class MailError(RuntimeError):
    """The mail server could not be reached or refused the message."""


def compose(smtp: SmtpSettings, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = smtp.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    _, sender = email.utils.parseaddr(smtp.mail_from)
    domain = sender.rpartition("@")[2] or None
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(text)
    return message


async def send_mail(
    smtp: SmtpSettings, to: str, subject: str, text: str, *, secrets: Sequence[str] = ()
) -> bool:
    """Send ``text`` to ``to``; False when mail is off (then it is logged without ``secrets``).

    ``secrets`` are the parts of ``text`` that must never reach a log (one-time links).
    Raises MailError when the server cannot take the message.
    """
    message = compose(smtp, to, subject, text)
    if not smtp.host:
        shown = text
        for secret in secrets:
            shown = shown.replace(secret, WITHHELD)
        log.warning(
            "mail is off (KAMIYO_SMTP_HOST is not set); not sent to %s: %s\n%s", to, subject, shown
        )
        return False
    password = smtp.password.get_secret_value() if smtp.password else None
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username or None,
            password=password if smtp.username else None,
            use_tls=smtp.security == "tls",
            # "none" must mean none: left to itself the client upgrades whenever it can.
            start_tls=smtp.security == "starttls",
            timeout=SMTP_TIMEOUT_S,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.error(
            "could not send mail %r to %s through %s:%s: %s: %s",
            subject,
            to,
            smtp.host,
            smtp.port,
            type(exc).__name__,
            exc,
        )
        raise MailError(f"the mail server did not take the message ({type(exc).__name__})") from exc
    log.info("sent mail %r to %s", subject, to)
    return True
