"""A webhook receiver on 127.0.0.1 for the sender's tests: records every connection and POST
(headers and body), and answers as the test sets: a status, a redirect, a slow answer, or an
answer that never ends. Optionally over TLS, with a certificate the test made.

    with Receiver() as receiver:
        receiver.reply = Answer(500)
        ...
        assert receiver.posts[0].body == body
"""

import datetime as dt
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.served import ServedInThread

CHUNK = b"x" * 16384
# An endless answer stops here anyway, so a sender that reads it all fails instead of hanging.
ENDLESS_LIMIT = 64 * 1024 * 1024
HOLD_LIMIT_S = 60  # a held answer goes at the latest then, so a broken test cannot hang


@dataclass(frozen=True)
class Answer:
    """What the receiver answers: ``status`` with ``headers``; ``endless`` streams a body that
    never ends (until the client hangs up); ``until`` holds the answer until the test sets it
    (so a sender's timeout is seen without timing anything)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    endless: bool = False
    until: threading.Event | None = None


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with owner.lock:
            owner.posts.append(Post(self.path, headers, body))
            answer = owner.reply
        if answer.until is not None:
            answer.until.wait(HOLD_LIMIT_S)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if not answer.endless:
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            while owner.sent < ENDLESS_LIMIT:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                owner.sent += len(CHUNK)
        except OSError:
            pass  # the sender hung up: what it is meant to do

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: stdout and stderr belong to the test runner


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: "Receiver") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def verify_request(self, request: object, client_address: object) -> bool:
        with self.owner.lock:
            self.owner.connections += 1
        return True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up is expected
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class Receiver(ServedInThread):
    """``tls``: serve HTTPS with that context (its certificate names the host tests use)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.reply = Answer()
        self.posts: list[Post] = []
        self.connections = 0
        self.sent = 0  # bytes of an endless answer written
        self._server = _Server(self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="receiver", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, host: str = "127.0.0.1", path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def tls_contexts(host: str, tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: the server's certificate names ``host`` and is signed by a CA
    made here, which only the client context trusts."""
    now = dt.datetime.now(dt.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("test CA", ca_key, "test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        certificate(host, key, "test CA", ca_key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "leaf.pem", tmp / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client
