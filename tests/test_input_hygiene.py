"""Input hygiene, paging and reload reports, against the daemon in one process (quick).

Repro 4 and 6 of the robustness issue: text parameters with control characters, currencies
outside ISO 4217, dates out of range, listings without a bound, and reloads that said less
than they did.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from hostile import fill_journal
from stack import Stack, call_error, config_data, pair, start_stack

from ecrd.api.methods import MAX_EXTRA_BYTES
from ecrd.client import open_trio_client
from ecrd.store.journal_view import MAX_PAGE, PAGE_BYTES

SALE = {"terminal": "serial-1", "amount": "1.00", "currency": "HKD"}  # never paired


def rewrite_config(stack: Stack, **daemon: Any) -> None:
    data = config_data(stack.description, stack.tmp)
    data["daemon"].update(daemon)
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))


BAD_TEXT = [
    ("sale", {**SALE, "reference_id": "order-1\nCRITICAL forged"}, "reference_id"),
    ("sale", {**SALE, "reference_id": "r1", "customer_order_id": "c\x1b[2J"}, "customer_order_id"),
    ("sale", {**SALE, "reference_id": "r2", "extra": {"memo": "a\rb"}}, "extra.memo"),
    ("sale", {**SALE, "reference_id": "r3", "extra": {"l": ["ok", "\x00"]}}, "extra.l[1]"),
    ("refund", {**SALE, "reference_id": "r4", "original_reference_id": "o\n"},
     "original_reference_id"),
    ("transaction.resolve", {"reference_id": "r5", "outcome": "failed", "note": "ok\x07"},
     "note"),
    ("transaction.get", {"reference_id": "r6\u2028"}, "reference_id"),
    ("terminal.send", {"terminal": "serial-1", "action": "Info\n", "body": {}}, "action"),
    ("terminal.send", {"terminal": "serial-1", "action": "Info", "body": {"k\t": 1}}, "body"),
    ("terminal.pair", {"terminal": "serial-1", "code": "12345\n"}, "code"),
    ("sale", {**SALE, "terminal": "serial-1\x1b"}, "terminal"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "params", "field"), BAD_TEXT)
async def test_text_params_refuse_control_characters_naming_the_field(
    stack: Stack, method: str, params: dict[str, Any], field: str
) -> None:
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, method, **params)
    assert (err.reason, err.data["field"]) == ("invalid_params", field)


@pytest.mark.parametrize("currency", ["XXX", "XTS", "ABC", "XAU"])
async def test_currencies_are_checked_against_iso_4217(stack: Stack, currency: str) -> None:
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "sale", **{**SALE, "currency": currency, "reference_id": "c1"})
    assert (err.reason, err.data["field"]) == ("invalid_params", "currency")


async def test_extra_currencies_let_a_terminals_own_code_through(stack: Stack) -> None:
    rewrite_config(stack, extra_currencies=["TST"])
    async with open_trio_client(stack.socket) as c:
        assert "extra_currencies" in (await c.call("config.reload"))["applied"]
        err = await call_error(c, "sale", **{**SALE, "currency": "TST", "reference_id": "c2"})
    assert err.reason == "not_paired"  # past every parameter check


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-13-01T00:00:00Z"]
)
async def test_out_of_range_dates_are_invalid_params(stack: Stack, since: str) -> None:
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "transaction.list", since=since)
        assert (err.reason, err.data["field"]) == ("invalid_params", "since")
        assert (await c.call("ping"))["protocol"] == 1


async def test_listings_have_a_hard_page_size_and_page_on_with_before(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        for i in range(5):
            await c.call("sale", terminal="lan-1", amount="1.00", currency="HKD",
                         reference_id=f"p{i}")  # fmt: skip
        err = await call_error(c, "transaction.list", limit=MAX_PAGE + 1)
        assert (err.reason, err.data["field"]) == ("invalid_params", "limit")
        seen: list[str] = []
        before: dict[str, str] = {}
        while page := await c.call("transaction.list", limit=2, **before):
            assert len(page) <= 2
            seen += [r["reference_id"] for r in page]
            before = {"before": seen[-1]}
        assert seen == [f"p{i}" for i in reversed(range(5))]
        err = await call_error(c, "transaction.list", before="no-such-ref")
        assert (err.reason, err.data["field"]) == ("invalid_params", "before")


async def big_records(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    """100 settled sales of ~40 KB each (a terminal's long receipt): 4 MB in all."""
    fill_journal(tmp_path / "state", 100, receipt_bytes=40_000)
    return await start_stack(nursery, tmp_path)


async def test_a_page_is_about_a_mib_at_most_and_paging_on_with_before_gets_every_record(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await big_records(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        seen: list[str] = []
        before: dict[str, str] = {}
        while page := await c.call("transaction.list", limit=MAX_PAGE, **before):
            assert len(json.dumps(page)) <= PAGE_BYTES
            assert 0 < len(page) < 100  # shorter than limit, yet not the end
            seen += [r["reference_id"] for r in page]
            before = {"before": seen[-1]}
    assert seen == [f"bulk-{i}" for i in range(1, 101)]  # every one, once, newest first
    ecrctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", stack.socket]
    out = await trio.run_process([*ecrctl, "export"], capture_stdout=True)
    assert len(out.stdout.decode().splitlines()) == 101  # the header and every record


async def test_a_batch_of_listings_holds_about_one_page_in_all(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Batch members' replies wait in memory for the whole batch: the pages of one batch
    share one page's bytes (each still gets at least one record)."""
    stack = await big_records(nursery, tmp_path)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "transaction.list",
              "params": {"limit": MAX_PAGE}} for i in range(16)]  # fmt: skip
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(stack.socket)
    async with trio.SocketStream(sock) as stream:
        await stream.send_all(json.dumps(batch).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += await stream.receive_some(1 << 20)
    replies = json.loads(data)
    assert len(replies) == 16 and all(r["result"] for r in replies)
    assert len(data) <= PAGE_BYTES + 16 * 50_000, f"{len(data)} bytes for one batch"


async def test_extra_is_bounded_per_payment(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
        big = {"memo": "x" * (MAX_EXTRA_BYTES - 11)}  # {"memo":"..."}: 11 bytes around it
        assert len(json.dumps(big, separators=(",", ":"))) == MAX_EXTRA_BYTES
        assert (await c.call("sale", **sale, reference_id="e1", extra=big))["state"] == "succeeded"
        too_big = {"memo": "x" * (MAX_EXTRA_BYTES - 10)}
        err = await call_error(c, "sale", **sale, reference_id="e2", extra=too_big)
        assert (err.reason, err.data["field"]) == ("invalid_params", "extra")
        void = {"terminal": "lan-1", "reference_id": "e3", "original_reference_id": "e1"}
        err = await call_error(c, "void", **void, extra=too_big)
        assert (err.reason, err.data["field"]) == ("invalid_params", "extra")
    assert stack.requests("lan", "e2") == 0 and stack.requests("lan", "e3") == 0


async def test_journal_reads_do_not_queue_behind_payment_writes(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await c.call("sale", terminal="lan-1", amount="1.00", currency="HKD", reference_id="w1")
        # Every payment write is stuck (the writer's one thread is taken)...
        stuck = threading.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stack.daemon.payments.db, stuck.wait)
            try:
                with trio.fail_after(3):  # ... and reads still answer at once
                    assert (await c.call("transaction.get", reference_id="w1"))["state"] == (
                        "succeeded"
                    )
                    assert len(await c.call("transaction.list")) == 1
                    assert (await c.call("status"))["journal"]["succeeded"] == 1
            finally:
                stuck.set()


async def test_reload_applies_log_level_and_max_clients_and_lists_what_needs_a_restart(
    stack: Stack,
) -> None:
    root = logging.getLogger()
    level = root.level
    rewrite_config(
        stack, log_level="error", max_clients=3, socket=str(stack.tmp / "other" / "x.sock")
    )
    try:
        async with open_trio_client(stack.socket) as c:
            result = await c.call("config.reload")
        assert {"log_level", "max_clients"} <= set(result["applied"])
        assert result["needs_restart"] == ["socket"]
        assert root.level == logging.ERROR
        assert stack.daemon.config.daemon.max_clients == 3
        assert stack.daemon.config.daemon.socket == stack.socket  # until the next start
    finally:
        root.setLevel(level)


async def test_a_reload_that_cannot_build_a_terminal_keeps_the_old_one_and_says_so(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ecrd.daemon

    real = ecrd.daemon.Terminal

    def fragile(cfg: Any, *args: Any) -> Any:
        if cfg.id == "lan-1":
            raise ValueError("cannot build this link")
        return real(cfg, *args)

    monkeypatch.setattr(ecrd.daemon, "Terminal", fragile)
    data = config_data(stack.description, stack.tmp)
    data["terminal"][0]["timeout_s"] = 7
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    old = stack.daemon.terminals["lan-1"]
    async with open_trio_client(stack.socket) as c:
        result = await c.call("config.reload")
        assert "lan-1" not in result["changed"]
        assert "cannot build this link" in result["failed"]["lan-1"]
        assert "old configuration stays" in result["failed"]["lan-1"]
        assert stack.daemon.terminals["lan-1"] is old
        assert "lan-1" in (await c.call("status"))["reload_error"]
        await pair(c, stack, "lan")
        tx = await c.call("sale", terminal="lan-1", amount="1.00", currency="HKD",
                          reference_id="still-sells")  # fmt: skip
    assert tx["state"] == "succeeded"


@pytest.mark.parametrize(
    ("key", "value"), [("host", "127.0.0.1:44391"), ("host", "http://x"), ("path", "x")]
)
async def test_a_reload_with_a_bad_host_or_path_is_refused_and_the_terminal_stays(
    stack: Stack, key: str, value: str
) -> None:
    data = config_data(stack.description, stack.tmp)
    data["terminal"][0][key] = value
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    old = stack.daemon.terminals["lan-1"]
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "config.reload")
        assert err.reason == "config_error" and f"terminal[0].{key} must be" in err.message
        assert stack.daemon.terminals["lan-1"] is old
        await pair(c, stack, "lan")
        tx = await c.call("sale", terminal="lan-1", amount="1.00", currency="HKD",
                          reference_id=f"after-{key}")  # fmt: skip
    assert tx["state"] == "succeeded"


async def test_a_reloaded_max_clients_applies_to_the_next_connection(stack: Stack) -> None:
    from ecrd.api.sharing import RESERVE

    rewrite_config(stack, max_clients=2)
    async with open_trio_client(stack.socket) as c:
        await c.call("config.reload")
        held = [await trio.open_unix_socket(stack.socket) for _ in range(1 + RESERVE)]
        for stream in held:  # admitted, in this order (peers are identified on a thread)
            await stream.send_all(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
            assert b'"protocol"' in await stream.receive_some()
        extra = await trio.open_unix_socket(stack.socket)
        with trio.fail_after(5):
            assert b'"too_many_clients"' in await extra.receive_some()
        for stream in [*held, extra]:
            await stream.aclose()
