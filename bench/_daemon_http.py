"""Benchmark 1H: a sale over the HTTP endpoint (``POST /rpc``) against the same sale over
the Unix socket, same daemon, same terminal, same run.

The simulator reuses its reply salt (no derivation per sale), so the difference is what
the HTTP path adds: TCP on loopback, h11 on both sides, the token check, one
``server.Connection`` per request. Both clients are lean and keep their connection open
(``TrioClient`` on the socket; a keep-alive h11 client here), interleaved one sale each per
round, the order rotating; then ecrd's CPU per sale (/proc), 200 sales one way, then 200
the other. httpx, a general client, is a last row for information: what a typical program
in another language pays on its own side.
"""

from __future__ import annotations

import hashlib
import json
import socket
import statistics
from typing import Any, Final

import h11
import httpx
import trio

from bench._daemon_setup import AMOUNT, new_ref, set_reply_salt_reuse
from bench._daemon_trip import BARE_ROUNDS, Sale, interleaved, via_daemon, warm_up
from bench._procs import Daemon, Sim, cpu_seconds
from bench._table import Row, ms, p
from ecrd.client import open_trio_client

TOKEN: Final = "bench-http-token-not-a-secret"  # noqa: S105 - the benchmark's own
ADDS_LIMIT_S: Final = 0.001  # the goal: HTTP adds at most 1 ms to a sale
CPU_ROUNDS: Final = 200  # sales one way for ecrd's CPU per sale: /proc counts in 10 ms ticks


def free_port() -> int:
    """A port nobody listens on now (the benchmark's own ecrd takes it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_table(port: int) -> dict[str, Any]:
    client = {"name": "bench", "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
              "roles": ["sell"]}  # fmt: skip
    return {"listen": f"127.0.0.1:{port}", "client": [client]}


class H11Client:
    """One keep-alive HTTP/1.1 connection, one POST at a time."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream, self.host = stream, f"127.0.0.1:{port}"
        self.conn = h11.Connection(h11.CLIENT)

    async def post(self, body: bytes) -> bytes:
        headers = [("host", self.host), ("authorization", f"Bearer {TOKEN}"),
                   ("content-type", "application/json"),
                   ("content-length", str(len(body)))]  # fmt: skip
        data = self.conn.send(h11.Request(method="POST", target="/rpc", headers=headers)) or b""
        data += (self.conn.send(h11.Data(data=body)) or b"") + (
            self.conn.send(h11.EndOfMessage()) or b""
        )
        await self.stream.send_all(data)
        reply = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                reply += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                return bytes(reply)


def _sale_body(tid: str) -> bytes:
    params = {"terminal": tid, "amount": AMOUNT, "currency": "HKD", "reference_id": new_ref()}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sale", "params": params}).encode()


def _check(reply: bytes) -> None:
    tx = json.loads(reply).get("result") or {}
    if tx.get("state") != "succeeded":
        raise RuntimeError(f"HTTP sale failed: {reply[:300]!r}")


def via_h11(client: H11Client, tid: str) -> Sale:
    async def sale() -> None:
        _check(await client.post(_sale_body(tid)))

    return sale


def via_httpx(client: httpx.AsyncClient, url: str, tid: str) -> Sale:
    async def sale() -> None:
        r = await client.post(url, content=_sale_body(tid),
                              headers={"authorization": f"Bearer {TOKEN}"})  # fmt: skip
        _check(r.content)

    return sale


async def _measure(sim: Sim, daemon: Daemon, port: int, tid: str) -> dict[str, list[float]]:
    term = sim.lan[0]
    await trio.to_thread.run_sync(set_reply_salt_reuse, sim, True, [term])
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with open_trio_client(daemon.socket) as c, stream, httpx.AsyncClient(
            trust_env=False
        ) as web:  # fmt: skip
            fns = {
                "socket": via_daemon(c, tid),
                "http": via_h11(H11Client(stream, port), tid),
                "httpx": via_httpx(web, f"http://127.0.0.1:{port}/rpc", tid),
            }
            await warm_up(fns)
            times = await interleaved(fns, BARE_ROUNDS)
            for name in ("socket", "http"):  # ecrd's CPU, one way at a time
                c0 = cpu_seconds(daemon.pid)
                await interleaved({name: fns[name]}, CPU_ROUNDS)
                times[f"cpu {name}"] = [(cpu_seconds(daemon.pid) - c0) / CPU_ROUNDS]
            return times
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(set_reply_salt_reuse, sim, False, [term])


def bench_http(sim: Sim, daemon: Daemon, port: int, tid: str) -> list[Row]:
    times = trio.run(_measure, sim, daemon, port, tid)
    base, http, web = times["socket"], times["http"], times["httpx"]
    added = statistics.median(http) - statistics.median(base)
    return [
        Row(
            f"1H. sale over the Unix socket, {len(base)} each, reply salt reused (base)",
            ms(statistics.median(base)),
            ms(p(base, 95)),
        ),
        Row(
            "   ... over HTTP: POST /rpc, keep-alive, bearer token",
            ms(statistics.median(http)),
            ms(p(http, 95)),
            f"{statistics.median(http) / statistics.median(base):.2f}x",
        ),
        Row(
            "   latency HTTP adds (median - median)",
            ms(added),
            limit=f"<= {ADDS_LIMIT_S * 1e3:.1f} ms",
            ok=added <= ADDS_LIMIT_S,
        ),
        Row(
            "   ecrd's CPU per sale over HTTP - over the socket (/proc, 200 each) (info)",
            ms(times["cpu http"][0] - times["cpu socket"][0]),
            f"{ms(times['cpu socket'][0]).strip()} base",
        ),
        Row(
            "   ... over HTTP with httpx as the client (info)",
            ms(statistics.median(web)),
            ms(p(web, 95)),
            f"{statistics.median(web) / statistics.median(base):.2f}x",
        ),
    ]
