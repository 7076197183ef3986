"""Store mode (``[http]`` with tls_cert, tls_key and client_ca): a throwaway CA made here
with the openssl command, a real TLS server on 127.0.0.1 and real httpx and WebSocket
clients. A till with a good certificate sells under its CN; one without a certificate is
refused at the handshake, one whose CN names no [[http.client]] gets 401."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from http_stack import SALE, HttpStack, open_ws, rpc, sha256, start_http_stack
from stack import pair
from wsproto.events import AcceptConnection

from ecrd.client import open_trio_client

DAYS = "2"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(tmp: Path, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    (tmp / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={cn}",
        cwd=tmp,
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", DAYS, "-extfile", f"{name}.ext",
             cwd=tmp)  # fmt: skip


def _ca(tmp: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj",
             f"/CN={name} (throwaway)", "-days", DAYS, cwd=tmp)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pki")
    _ca(tmp, "ca")
    _ca(tmp, "other-ca")
    _signed(tmp, "server", "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")  # fmt: skip
    client = "extendedKeyUsage=clientAuth"
    _signed(tmp, "till-1", "till-1", client)
    _signed(tmp, "till-2", "till-2", client)
    _signed(tmp, "stranger", "stranger", client)
    _signed(tmp, "forged", "till-1", client, ca="other-ca")
    return tmp


def context(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


@pytest.fixture
async def hs(nursery: trio.Nursery, tmp_path: Path, pki: Path) -> HttpStack:
    second = sha256("second-factor")
    tills = [{"name": "till-1", "roles": ["sell"]},
             {"name": "till-2", "roles": ["sell"], "token_sha256": second}]  # fmt: skip
    hs = await start_http_stack(
        nursery, tmp_path, client=tills, tls_cert=str(pki / "server.crt"),
        tls_key=str(pki / "server.key"), client_ca=str(pki / "ca.crt"),
    )  # fmt: skip
    async with open_trio_client(hs.stack.socket) as c:
        await pair(c, hs.stack, "lan")
    return hs


async def post(hs: HttpStack, ctx: ssl.SSLContext, ref: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=ctx) as client:
        url = f"https://localhost:{hs.port}/rpc"
        return await client.post(url, json=rpc("sale", **SALE, reference_id=ref))


async def test_a_till_with_a_good_certificate_sells_under_its_common_name(
    hs: HttpStack, pki: Path
) -> None:
    r = await post(hs, context(pki, "till-1"), "t1")
    assert r.json()["result"]["state"] == "succeeded", r.text
    assert hs.stack.charges("lan", "t1") == 1
    async with open_trio_client(hs.stack.socket) as c:
        tx = await c.call("transaction.get", reference_id="t1")
    assert tx["started_by"] == "http client=till-1 (certificate)"


@pytest.mark.parametrize("cert", [None, "forged"], ids=["no-certificate", "another-ca"])
async def test_a_till_without_a_certificate_of_client_ca_is_refused_at_the_handshake(
    hs: HttpStack, pki: Path, cert: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """TLS 1.2: the client's handshake itself fails (httpx: ConnectError, nothing sent)."""
    caplog.set_level(logging.INFO, "ecrd.http")
    ctx = context(pki, cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        await post(hs, ctx, "t2")
    assert hs.stack.requests("lan", "t2") == 0
    assert "failed the TLS handshake" in caplog.text


async def test_under_tls_1_3_a_till_without_a_certificate_reads_nothing_but_the_refusal(
    hs: HttpStack, pki: Path
) -> None:
    """TLS 1.3 ends the client's side of the handshake first: the server's refusal (the
    certificate_required alert) comes with the first read; the request is never read."""
    raw = await trio.open_tcp_stream("127.0.0.1", hs.port)
    stream = trio.SSLStream(raw, context(pki, None), server_hostname="localhost")
    async with stream:
        await stream.do_handshake()
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
        head = f"POST /rpc HTTP/1.1\r\nHost: localhost:{hs.port}\r\n"
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await stream.receive_some(1024)


async def test_a_certificate_that_names_no_client_is_401(hs: HttpStack, pki: Path) -> None:
    r = await post(hs, context(pki, "stranger"), "t3")
    assert r.status_code == 401
    assert hs.stack.requests("lan", "t3") == 0


async def test_a_client_with_a_token_sha256_needs_its_certificate_and_its_token(
    hs: HttpStack, pki: Path
) -> None:
    ctx = context(pki, "till-2")
    url = f"https://localhost:{hs.port}/rpc"
    async with httpx.AsyncClient(verify=ctx) as client:
        alone = await client.post(url, json=rpc("ping"))
        both = await client.post(
            url, json=rpc("ping"), headers={"Authorization": "Bearer second-factor"}
        )
    assert (alone.status_code, both.status_code) == (401, 200)


async def test_a_websocket_over_tls_with_a_good_certificate(hs: HttpStack, pki: Path) -> None:
    async with open_ws(hs, {}, tls=context(pki, "till-1")) as (ws, answer):
        assert isinstance(answer, AcceptConnection)
        await ws.send(rpc("ping", "p"))
        assert (await ws.receive())["id"] == "p"


def test_a_certificate_that_cannot_be_loaded_stops_the_start(tmp_path: Path, pki: Path) -> None:
    """One line and exit status 2 (no restart loop), as any start-up problem."""
    config = tmp_path / "ecrd.toml"
    config.write_text(
        f'[daemon]\nsocket = "{tmp_path}/run/ecrd.sock"\nstate_dir = "{tmp_path}/state"\n'
        f'[http]\nlisten = "127.0.0.1:0"\ntls_cert = "{tmp_path}/missing.crt"\n'
        f'tls_key = "{pki}/server.key"\nclient_ca = "{pki}/ca.crt"\n'
    )
    ecrd = str(Path(sys.executable).parent / "ecrd")
    res = subprocess.run([ecrd, "run", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("ecrd: cannot start: [http] cannot listen on 127.0.0.1:0")
