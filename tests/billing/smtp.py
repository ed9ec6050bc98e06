"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import anyio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.mcpserver.conftest import free_port

USERNAME = "mailer"
PASSWORD = "smtp-test-password"
LINK = re.compile(r"https?://\S+/keys/reveal/[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    logged_in_as: str | None

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content = body.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")

    def reveal_links(self) -> list[str]:
        return LINK.findall(self.text)


@dataclass
class Mailbox:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.received if address in m.recipients]

    def wait_for(self, count: int, timeout_s: float = 20) -> list[Received]:
        """Block until ``count`` messages arrived (mail sent after an HTTP answer is late)."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.received)} of {count} messages arrived")
                self._arrived.wait(left)
        return list(self.received)

    async def arrived(self, count: int, timeout_s: float = 20) -> list[Received]:
        """``wait_for`` without blocking the event loop (for mail sent by a worker that runs
        in this loop, as a server's alerts worker does)."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} messages arrived")
            await anyio.sleep(0.02)
        return list(self.received)

    def settings(self) -> dict[str, Any]:
        """SmtpSettings fields that send mail here, logging in without TLS."""
        return {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username": USERNAME,
            "password": PASSWORD,
        }

    def env(self) -> dict[str, str]:
        return {
            f"KAMIYO_SMTP_{name.upper()}": str(value) for name, value in self.settings().items()
        }

    async def handle_DATA(  # noqa: N802 (the name aiosmtpd calls)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        with self._arrived:
            self.received.append(
                Received(
                    sender=envelope.mail_from or "",
                    recipients=list(envelope.rcpt_tos),
                    message=message,
                    logged_in_as=login,
                )
            )
            self._arrived.notify_all()
        return "250 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = Controller(
        mailbox,
        hostname=mailbox.host,
        port=mailbox.port,
        authenticator=_authenticate,
        auth_require_tls=False,  # loopback only; TLS set-up is aiosmtplib's, not ours
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
