"""No secret in a real server's logs: ``kamiyo serve --transport http`` with JSON logs at DEBUG,
through a session that uses every kind of secret the product has, then its whole stderr
searched for each value.

The secrets: the configured ones (the signing key, Stripe's API key and webhook secret, the SMTP
password, an explorer API key), API keys (a good one and a forged one), a signed access token
(JWT), the one-time links of sign-up and log-in, the dashboard's session cookie, a webhook
signing secret, x402 payment headers, a bundle token, and OAuth grants' secrets (a refresh
token, a code and its verifier, a client secret). Stripe is the fake of tests/billing, mail a
real SMTP server that makes the server log in.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.billing.smtp import PASSWORD, Mailbox, running_mailbox
from tests.billing.stripe_fake import FakeStripe, running_fake_stripe
from tests.billing.test_webhooks import SECRET as WEBHOOK_SECRET
from tests.billing.test_webhooks import checkout_event, encode, sign
from tests.mcpserver.conftest import STATELESS, STATELESS_HEADERS, http_server_process, run_kamiyo

PUBLIC_URL = "https://kamiyo.example"
SIGNING_KEY = "signing-key-for-the-secrets-test-0123456789abcdef"
ETHERSCAN_KEY = "ETHERSCANKEYFORTHESECRETSTEST0123"
FORGED_KEY = "kmy_live_forgedKeyThatNoAccountHas0123456789abcdefghij"
PAYMENT = "eyJ4NDAyVmVyc2lvbiI6Miwic2lnbmF0dXJlIjoiMHhzZWNyZXRwYXltZW50In0"  # base64 JSON
V1_PAYMENT = "eyJ4NDAyVmVyc2lvbiI6MSwic2lnbmF0dXJlIjoiMHh2MXBheW1lbnQifQ"
BUNDLE_TOKEN = "kb_bundleTokenForTheSecretsTest0123456789"
REFRESH_TOKEN = "refreshTokenForTheSecretsTest-0123456789abcdef"
OAUTH_CODE = "authorizationCodeForTheSecretsTest-0123456789"
CODE_VERIFIER = "codeVerifierForTheSecretsTest-0123456789abcdefghijklmnop"
CLIENT_SECRET = "clientSecretForTheSecretsTest-0123456789"
LINK = re.compile(r"https://kamiyo\.example(/(?:keys/reveal|login)/[A-Za-z0-9_-]+)")
KEY_IN_PAGE = re.compile(r'<pre id="key">([^<]+)</pre>')
ORIGIN = {"Origin": PUBLIC_URL}


@dataclass
class Session:
    http: httpx2.Client
    mailbox: Mailbox
    log: Path
    tmp_path: Path
    used: dict[str, str]  # what each secret is -> its value


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with running_mailbox() as mailbox, running_fake_stripe() as stripe:
        env = _environment(mailbox, stripe)
        with (
            http_server_process(tmp_path, STATELESS, env) as (url, process),
            httpx2.Client(base_url=url, timeout=30) as http,
        ):
            used = {
                "signing key": SIGNING_KEY,
                "Stripe API key": stripe.secret_key,
                "Stripe webhook secret": WEBHOOK_SECRET,
                "SMTP password": PASSWORD,
                "explorer API key": ETHERSCAN_KEY,
            }
            yield Session(http, mailbox, tmp_path / "server.log", tmp_path, used)
            assert process.poll() is None  # it served the whole session


def _environment(mailbox: Mailbox, stripe: FakeStripe) -> dict[str, str]:
    return mailbox.env() | {
        "KAMIYO_LOG_LEVEL": "DEBUG",
        "KAMIYO_LOG_FORMAT": "json",
        "KAMIYO_PUBLIC_URL": PUBLIC_URL,
        "KAMIYO_AUTH_SECRET_KEY": SIGNING_KEY,
        "KAMIYO_STRIPE_SECRET_KEY": stripe.secret_key,
        "KAMIYO_STRIPE_API_BASE": stripe.url,
        "KAMIYO_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "KAMIYO_STRIPE_PRICES": json.dumps({"personal": "price_personal_test_1"}),
        "KAMIYO_ETHERSCAN_API_KEY": ETHERSCAN_KEY,
    }


def _link(session: Session, mails: int) -> str:
    mail = session.mailbox.wait_for(mails)[mails - 1]
    found = LINK.search(mail.text)
    assert found is not None, mail.text
    return found.group(1)


def _mcp(session: Session, credential: str, name: str, arguments: dict[str, object]) -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    answer = session.http.post(
        "/mcp",
        json=call | {"params": {"name": name, "arguments": arguments}},
        headers=STATELESS_HEADERS | {"Authorization": f"Bearer {credential}"},
    )
    assert answer.status_code in (200, 401), answer.text


def _sign_up_and_log_in(session: Session) -> str:
    """The key from the sign-up mail's link, then a dashboard session from a log-in link."""
    signed_up = session.http.post("/api/v1/signup", json={"email": "secrets@example.com"})
    assert signed_up.status_code == 202, signed_up.text
    reveal = _link(session, 1)
    page = session.http.post(reveal, headers=ORIGIN)
    assert page.status_code == 200, page.text
    found = KEY_IN_PAGE.search(page.text)
    assert found is not None
    key = found.group(1)
    asked = session.http.post("/login", data={"email": "secrets@example.com"}, headers=ORIGIN)
    assert asked.status_code in (200, 303), asked.text
    login = _link(session, 2)
    logged_in = session.http.post(login, headers=ORIGIN, follow_redirects=False)
    assert logged_in.status_code == 303, logged_in.text
    cookie = logged_in.headers["set-cookie"].split(";")[0]
    board = session.http.get("/dashboard", headers={"Cookie": cookie})
    assert board.status_code == 200
    session.used |= {
        "API key": key,
        "sign-up link": reveal.rsplit("/", 1)[1],
        "log-in link": login.rsplit("/", 1)[1],
        "session cookie": cookie.partition("=")[2],
    }
    return key


def _use_every_credential(session: Session, key: str) -> None:
    http = session.http
    auth = {"Authorization": f"Bearer {key}"}
    _mcp(session, key, "search_exploits", {"limit": 1})
    _mcp(session, FORGED_KEY, "search_exploits", {"limit": 1})
    _mcp(session, key, "search_exploits", {"x402_bundle_token": BUNDLE_TOKEN})
    token = run_kamiyo(session.tmp_path, "token", "issue", "secrets@example.com").stdout.strip()
    _mcp(session, token, "get_usage", {})
    # REST: a read, a paid-looking retry with x402 headers, an alert with its signing secret.
    assert http.get("/api/v1/exploits", params={"limit": 1}, headers=auth).status_code == 200
    paid = {"PAYMENT-SIGNATURE": PAYMENT, "X-PAYMENT": V1_PAYMENT}
    http.get("/api/v1/risk/Euler", headers=auth | paid)
    http.get("/api/v1/exploits", headers={"Authorization": f"Bearer {FORGED_KEY}"} | paid)
    alert = http.post(
        "/api/v1/alerts",
        json={"filters": {"chains": ["bsc"]}, "webhook_url": "https://hooks.example.com/k"},
        headers=auth,
    )
    if alert.status_code == 200:  # alerts need a tier that has them
        session.used["webhook signing secret"] = alert.json()["secret"]
    # Billing: a checkout (Stripe's API key goes out) and Stripe's signed delivery.
    assert http.post("/api/v1/billing/checkout", json={"tier": "personal"}, headers=auth)
    payload = encode(checkout_event(1, created=1_700_000_000))
    http.post("/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)})
    http.post("/webhooks/stripe", content=payload, headers={"Stripe-Signature": "t=1,v1=bad"})
    # OAuth grants' secrets, each refused.
    http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN, "client_id": "c"},
    )
    http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": OAUTH_CODE,
            "code_verifier": CODE_VERIFIER,
            "client_id": "c",
            "client_secret": CLIENT_SECRET,
            "redirect_uri": "https://app.example.com/cb",
        },
    )
    session.used |= {
        "forged API key": FORGED_KEY,
        "access token (JWT)": token,
        "x402 payment": PAYMENT,
        "x402 v1 payment": V1_PAYMENT,
        "bundle token": BUNDLE_TOKEN,
        "OAuth refresh token": REFRESH_TOKEN,
        "OAuth code": OAUTH_CODE,
        "OAuth code verifier": CODE_VERIFIER,
        "OAuth client secret": CLIENT_SECRET,
    }


def test_no_secret_reaches_the_log(session: Session) -> None:
    key = _sign_up_and_log_in(session)
    _use_every_credential(session, key)
    run_kamiyo(session.tmp_path, "usage", "verify")  # the CLI's log lines count too
    session.http.close()
    log = session.log.read_text()
    # Every line a JSON record, but the banner serve writes for whoever started it.
    records = [json.loads(line) for line in log.splitlines() if not line.startswith("KAMIYO MCP")]
    assert len(records) > 50  # a DEBUG log of the whole session, not a quiet one
    assert any(record["level"] == "DEBUG" for record in records)
    leaked = [what for what, value in session.used.items() if value and value in log]
    assert leaked == []


def test_the_log_still_says_what_happened(session: Session) -> None:
    """Redaction blanks secrets, not the story: refusals and paths are still there."""
    _mcp(session, FORGED_KEY, "search_exploits", {"limit": 1})
    session.http.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
    log = session.log.read_text()
    assert "POST /mcp" in log
    assert "POST /webhooks/stripe" in log


def test_stderr_of_a_failed_start_has_no_secret(tmp_path: Path) -> None:
    """A setting refused at start: one line naming it, never the secret it was given."""
    secret = "sk_live_secretThatIsRefused0123456789"
    done = run_kamiyo(
        tmp_path,
        "serve",
        "--transport",
        "http",
        env={"KAMIYO_STRIPE_SECRET_KEY": secret, "KAMIYO_OTEL_ENDPOINT": "not a url"},
        check=False,
    )
    assert done.returncode == 2
    assert "KAMIYO_OTEL_ENDPOINT" in done.stderr
    assert secret not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
