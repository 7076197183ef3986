"""The web POS example (examples/web-pos/) in headless Chromium, against the demo stack.

The simulator and ``ecrd run`` are real subprocesses (tests/e2e.py) with an ``[http]``
endpoint on loopback; the page is served from another origin (a static server on another
port), so CORS and the Origin check are exercised as a browser meets them. Chromium is
Debian's ``chromium``, driven over the DevTools protocol (tests/chromium.py) and kept to
loopback. What the page shows is checked in the page, and what it did in the journal
(``transaction.get`` on the socket) and in the simulator's ledger. The screenshot goes to
the test's tmp dir; its path is printed (``pytest -s``, or the report of a failure).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import pytest
import tomli_w
from chromium import CHROMIUM, Chromium, Page, query
from e2e import Daemon, Sim, pair, write_config

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium package (apt-get install chromium; .ci/run installs it)",
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "web-pos"
TOKEN = secrets.token_urlsafe(24)
PNG = b"\x89PNG\r\n\x1a\n"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1 (a free port); yields its origin."""
    handler = partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def http_endpoint(daemon: Daemon, timeout: float = 10) -> str:
    """The address ``listen = "127.0.0.1:0"`` was given, as ecrd logs it once bound."""
    deadline = time.monotonic() + timeout
    while not (found := re.search(r"HTTP endpoint on (http://[\d.:]+)", daemon.log_text())):
        assert time.monotonic() < deadline, "ecrd did not log its HTTP endpoint"
        time.sleep(0.05)
    return found[1]


def add_http(config: Path, listen: str, origin: str) -> None:
    """The README's ``[http]`` lines: the till's origin allowed, one client with a token."""
    data = tomllib.loads(config.read_text())
    data["http"] = {
        "listen": listen,
        "allowed_origins": [origin],
        "client": [{
            "name": "web-pos",
            "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            "roles": ["sell", "refund"],
        }],
    }  # fmt: skip
    config.write_text(tomli_w.dumps(data))


@attrs.define
class Shop:
    sim: Sim
    daemon: Daemon
    endpoint: str  # ecrd's HTTP endpoint
    origin: str  # where the page is served from, and allowed
    stranger: str  # the same page from an origin ecrd does not allow

    def url(self, origin: str, token: str = TOKEN) -> str:
        query = urlencode({"endpoint": self.endpoint, "token": token, "terminal": "lan-1"})
        return f"{origin}/index.html?{query}"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("web-pos")
    with static_site(EXAMPLE) as origin, static_site(EXAMPLE) as stranger:
        sim = Sim(tmp, "--lan", "1", "--customer-delay", "0.2")
        daemon: Daemon | None = None
        try:
            config = write_config(tmp, sim)
            add_http(config, "127.0.0.1:0", origin)
            daemon = Daemon(tmp, config)
            pair(daemon, sim, "lan")  # the page pairs nothing: the admin did
            yield Shop(sim, daemon, http_endpoint(daemon), origin, stranger)
        finally:
            try:
                if daemon is not None:
                    daemon.stop(sim)
            finally:
                sim.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    tmp = tmp_path_factory.mktemp("chromium")
    browser = Chromium(tmp / "profile", tmp / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Chromium) -> Iterator[Page]:
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def shown(page: Page, selector: str, what: str = "innerText") -> str:
    """Waits for an element ``selector`` matches; its ``what`` (a property path)."""
    return str(page.wait_for(f"{query(selector)}?.{what}"))


def test_the_page_sells_refunds_and_shows_the_live_events(
    shop: Shop, page: Page, tmp_path: Path
) -> None:
    page.navigate(shop.url(shop.origin))
    shown(page, "#live.on")
    assert "lan-1: lan, paired, link" in page.text("#terminal-state")

    page.fill("#amount", "12.34")
    page.click("#sell")
    sale_ref = shown(page, 'tr[data-state="succeeded"]', "dataset.ref")
    sale_row = shown(page, f'tr[data-ref="{sale_ref}"][data-state="succeeded"]')
    assert sale_row.split("\t") == [sale_ref, "Sale", "12.34 HKD", "approved"]
    page.wait_for(f"{query('#terminal-state')}.textContent.endsWith('link up')")  # an event

    shown(page, "#refund:enabled")  # once the sale's reply is in, not only its event
    page.click("#refund")
    refund_ref = f"{sale_ref}-refund"
    refund_row = shown(page, f'tr[data-ref="{refund_ref}"][data-state="succeeded"]')
    assert refund_row.split("\t") == [refund_ref, "Refund", "12.34 HKD", "approved"]

    for ref in (sale_ref, refund_ref):
        shown(page, f'#events li[data-ref="{ref}"][data-state="succeeded"]')
    events = page.text("#events")
    assert f"{sale_ref}  pending" in events
    assert f"{sale_ref}  waiting_for_customer (lan)" in events
    assert page.evaluate(f"{query('#error')}.hidden") is True
    shot = page.screenshot(tmp_path / "web-pos.png")
    print(f"screenshot: {shot}")
    assert shot.read_bytes().startswith(PNG)

    sale = shop.daemon.call("transaction.get", reference_id=sale_ref)
    assert (sale["action"], sale["amount"], sale["currency"], sale["state"]) == (
        "Sale", "12.34", "HKD", "succeeded",
    )  # fmt: skip
    assert "web-pos" in sale["started_by"]
    refund = shop.daemon.call("transaction.get", reference_id=refund_ref)
    assert (refund["action"], refund["amount"], refund["state"]) == ("Refund", "12.34", "succeeded")
    assert refund["params"]["original_reference_id"] == sale_ref
    assert shop.sim.charges("lan", sale_ref) == 1
    assert shop.sim.charges("lan", refund_ref) == 1


def test_the_page_from_an_origin_not_allowed_cannot_sell(
    shop: Shop, page: Page, tmp_path: Path
) -> None:
    page.navigate(shop.url(shop.stranger))
    # The browser hides a refused preflight from the page: to it, ecrd did not answer.
    assert shown(page, "#error:not([hidden])", "dataset.reason") == "no_answer"
    assert "origin" in page.text("#error")

    page.click("#sell")
    ref = shown(page, 'tr[data-state="no_answer"]', "dataset.ref")
    page.click("#sell")  # the same sale again: a retry, under the same reference
    shown(page, "#sell:enabled")
    rows = page.evaluate("[...document.querySelectorAll('tbody tr')].map(r => r.dataset.ref)")
    assert rows == [ref]
    assert shop.daemon.error("transaction.get", reference_id=ref).reason == "transaction_not_found"
    assert shop.sim.requests("lan", ref) == 0
    print(f"screenshot: {page.screenshot(tmp_path / 'web-pos-refused.png')}")


def test_a_wrong_token_and_a_declined_card_are_shown_by_their_reason(
    shop: Shop, page: Page
) -> None:
    page.navigate(shop.url(shop.origin, token="not-the-token"))
    assert shown(page, "#error:not([hidden])", "dataset.reason") == "http_401"
    assert "token" in page.text("#error")

    page.fill("#token", TOKEN)
    page.click("#connect")
    shown(page, "#live.on")
    assert page.evaluate(f"{query('#error')}.hidden") is True
    page.fill("#amount", "3.91")  # the simulator's magic amount: a declined card
    page.click("#sell")
    ref = shown(page, 'tr[data-state="failed"]', "dataset.ref")
    assert "declined" in shown(page, f'tr[data-ref="{ref}"]')
    assert page.evaluate(f"{query('#error')}.hidden") is True  # a result, not an error
    assert page.evaluate(f"{query('#refund')}.disabled") is True  # nothing to refund
    assert shop.daemon.call("transaction.get", reference_id=ref)["state"] == "failed"
