"""Correctly signed Stripe deliveries with hostile values, replayed against ``kamiyo serve``.

    python -m bench.webhook_payloads                       # PostgreSQL (the local test server)
    python -m bench.webhook_payloads --database sqlite

Starts ``kamiyo serve --transport http`` on a fresh database (PostgreSQL: created on
``--postgres-url``'s server and dropped afterwards) with a webhook secret, then posts each case
signed with that secret, one at a time, and prints a table: the HTTP status, how long the
answer took, how many log lines the server wrote for it, and how long a ``/healthz`` sent
0.2 s into the delivery waited. The cases are issue 11's nine out-of-range values, the event
nested 50,000 deep, and some neighbours found while fixing them. The events are the recorded
ones in ``tests/fixtures/stripe/events``, changed per case.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import stripe

EVENTS = Path(__file__).parent.parent / "tests" / "fixtures" / "stripe" / "events"
SECRET = "whsec_bench_webhook_payloads_0123456789"
HUGE_PK = str(2**31)
ACCOUNT_PK = 1  # the account the script creates first, on a fresh database
FAR = 10**20
Event = dict[str, Any]


def _fixture(name: str) -> Event:
    event: Event = json.loads((EVENTS / f"{name}.json").read_text())
    event["id"] = f"evt_bench_{uuid.uuid4().hex[:20]}"
    event["created"] = int(time.time()) - 60
    return event


def _subscription(change: Callable[[Event, dict[str, Any]], None]) -> Event:
    """An update of a new subscription of ``ACCOUNT_PK``'s (named in its metadata)."""
    event = _fixture("customer.subscription.updated")
    obj = event["data"]["object"]
    obj.update(
        id=f"sub_bench_{uuid.uuid4().hex[:8]}",
        metadata={"account_pk": str(ACCOUNT_PK)},
        customer=f"cus_bench_{uuid.uuid4().hex[:8]}",
    )
    change(event, obj)
    return event


def _checkout(change: Callable[[dict[str, Any]], None]) -> Event:
    event = _fixture("checkout.session.completed")
    obj = event["data"]["object"]
    obj.update(mode="subscription", client_reference_id=None, metadata={})
    change(obj)
    return event


def _no_item_end(obj: dict[str, Any]) -> None:
    del obj["items"]["data"][0]["current_period_end"]
    obj["current_period_end"] = FAR


def _deep() -> bytes:
    event = _fixture("invoice.paid")
    depth = 50_000
    text = json.dumps(event)
    return text[:-1].encode() + b', "x": ' + b"[" * depth + b"]" * depth + b"}"


def _item_end(obj: dict[str, Any]) -> None:
    obj["items"]["data"][0]["current_period_end"] = FAR


def _cancel_at(obj: dict[str, Any]) -> None:
    obj.update(cancel_at_period_end=False, cancel_at=FAR)


def _huge_reference(obj: dict[str, Any]) -> None:
    obj.update(client_reference_id=HUGE_PK)


def _huge_checkout_metadata(obj: dict[str, Any]) -> None:
    obj.update(metadata={"account_pk": HUGE_PK})


def _huge_subscription_metadata(event: Event, obj: dict[str, Any]) -> None:
    obj.update(metadata={"account_pk": HUGE_PK})


def cases() -> list[tuple[str, bytes, int]]:
    """(name, body, seconds the Stripe-Signature's timestamp is ahead of now) for each case."""
    now = int(time.time())
    listed: list[tuple[str, Event | bytes]] = [
        ("event id with NUL", _subscription(lambda e, o: e.update(id="evt_bench_\x00nul"))),
        ("created = 1e12", _subscription(lambda e, o: e.update(created=10**12))),
        ("checkout client_reference_id = 2^31", _checkout(_huge_reference)),
        ("checkout metadata.account_pk = 2^31", _checkout(_huge_checkout_metadata)),
        ("subscription metadata.account_pk = 2^31", _subscription(_huge_subscription_metadata)),
        ("subscription current_period_end = 1e20", _subscription(lambda e, o: _no_item_end(o))),
        ("item current_period_end = 1e20", _subscription(lambda e, o: _item_end(o))),
        ("cancel_at = 1e20", _subscription(lambda e, o: _cancel_at(o))),
        ("subscription id with NUL", _subscription(lambda e, o: o.update(id="sub_\x00nul"))),
        ("nested 50,000 deep", _deep()),
        ("customer id of 65 characters", _subscription(lambda e, o: o.update(customer="c" * 65))),
        ("status with NUL", _subscription(lambda e, o: o.update(status="active\x00"))),
        ("event type with NUL", _subscription(lambda e, o: e.update(type="customer.\x00"))),
        ("created 1 day ahead", _subscription(lambda e, o: e.update(created=now + 86_400))),
    ]
    found = [
        (name, item if isinstance(item, bytes) else json.dumps(item).encode(), 0)
        for name, item in listed
    ]
    found.append(("signature t 1 day ahead", json.dumps(_fixture("invoice.paid")).encode(), 86_400))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _postgres_database(admin_url: str) -> Iterator[str]:
    name = f"kamiyo_bench_webhooks_{uuid.uuid4().hex[:8]}"

    async def run(statement: str) -> None:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def _server(folder: Path, database_url: str | None, log_format: str) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log_path = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env |= {
        "KAMIYO_DATA_DIR": str(folder / "data"),
        "KAMIYO_STRIPE_WEBHOOK_SECRET": SECRET,
        "KAMIYO_LOG_FORMAT": log_format,
    }
    if database_url is not None:
        env["KAMIYO_DATABASE_URL"] = database_url
    account = [sys.executable, "-m", "kamiyo", "accounts", "create", "bench@example.com"]
    subprocess.run(account, env=env, cwd=folder, check=True, capture_output=True)
    command = [sys.executable, "-m", "kamiyo", "serve", "--transport", "http", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=folder, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=60)


def _post(url: str, payload: bytes, header: str) -> tuple[int, float]:
    request = urllib.request.Request(
        f"{url}/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - started


def _healthz_after(url: str, delay_s: float, into: list[float]) -> None:
    time.sleep(delay_s)
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/healthz", timeout=300):
        into.append(time.perf_counter() - started)


def _lines_and_bytes(path: Path) -> tuple[int, int]:
    with path.open("rb") as log:
        text = log.read()
    return text.count(b"\n"), len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("KAMIYO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )  # fmt: skip
    parser.add_argument("--log-format", choices=["pretty", "json"], default="pretty")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextmanager(_database)(args) as database_url,
        _server(Path(tmp), database_url, args.log_format) as (url, log_path),
    ):
        _replay(url, log_path)


def _replay(url: str, log_path: Path) -> None:
    print(f"{'case':42} {'status':>6} {'answer s':>9} {'log lines':>9} {'log bytes':>10} healthz s")
    for name, payload, ahead in cases():
        stamp = int(time.time()) + ahead
        header = stripe.WebhookSignature.generate_signature_header(payload.decode(), SECRET, stamp)
        lines_before, bytes_before = _lines_and_bytes(log_path)
        waited: list[float] = []
        probe = threading.Thread(target=_healthz_after, args=(url, 0.2, waited))
        probe.start()
        status, took = _post(url, payload, header)
        probe.join()
        time.sleep(0.3)  # the server's last lines for this request
        lines, size = _lines_and_bytes(log_path)
        lines, size = lines - lines_before, size - bytes_before
        print(f"{name:42} {status:>6} {took:>9.3f} {lines:>9} {size:>10} {waited[0]:>9.3f}")


def _database(args: argparse.Namespace) -> Iterator[str | None]:
    if args.database == "sqlite":
        yield None
        return
    with _postgres_database(args.postgres_url) as url:
        yield url


if __name__ == "__main__":
    main()
