"""The README's "run it" command: ecrd against the built-in simulator, end to end.

Starts ``ecrd-sim`` (one LAN, one serial-over-pty, one cloud terminal) and ``ecrd`` with a
generated config in a temporary directory, pairs all three terminals, runs a sale, a
refund and a void with ``ecrctl`` and a sale over the HTTP endpoint, prints what
happened, then keeps everything running so the reader can try their own commands.
Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import tomli_w

BIN = Path(sys.executable).parent
BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def start_simulator(
    work: Path, customer_delay: float
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    log = open(work / "sim.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [str(BIN / "ecrd-sim"), "--lan", "1", "--serial", "1", "--cloud", "1",
         "--state-dir", str(work / "sim"), "--business-id", BUSINESS,
         "--customer-delay", str(customer_delay)],
        stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        sys.exit("the simulator did not start:\n" + (work / "sim.log").read_text())
    return proc, json.loads(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_http_client() -> tuple[dict[str, Any], int, dict[str, Any]]:
    """``ecrctl http-token``'s answer for the demo's browser till (its token and lines),
    the port, and the ``[http]`` table."""
    say("an HTTP client for a browser till ([http], off unless configured)")
    shown = "ecrctl http-token web-pos --roles sell refund"
    print(f"{DIM}${RESET} {shown}", flush=True)
    res = subprocess.run([str(BIN / "ecrctl"), "--json", *shown.split()[1:]],
                         stdout=subprocess.PIPE, text=True, check=True)  # fmt: skip
    said: dict[str, Any] = json.loads(res.stdout)
    print(f"token (shown once): {said['token']}\n{said['toml']}")
    port = free_port()
    table = {"listen": f"127.0.0.1:{port}", "allowed_origins": ["http://localhost:3000"],
             "client": [{k: said[k] for k in ("name", "token_sha256", "roles")}]}  # fmt: skip
    return said, port, table


def http_sale(port: int, token: str) -> bool:
    """One sale over POST /rpc, as a browser till or a program in any language makes it."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "sale", "params": {
        "terminal": "counter-1", "amount": "12.50", "currency": "HKD",
        "reference_id": "demo-http-1"}}  # fmt: skip
    url = f"http://127.0.0.1:{port}/rpc"
    print(f"{DIM}${RESET} curl -s -H 'Authorization: Bearer {token}' \\\n"
          f"    -d '{json.dumps(body)}' {url}", flush=True)  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    reply = httpx.post(url, json=body, headers=auth, timeout=90, trust_env=False).json()
    print(json.dumps(reply, indent=2))
    return bool(reply.get("result", {}).get("state") == "succeeded")


def write_config(work: Path, sim: dict[str, Any], http: dict[str, Any]) -> Path:
    links = {t["link"]: t for t in sim["terminals"]}
    config = {
        "daemon": {
            "socket": str(work / "run" / "ecrd.sock"),
            "state_dir": str(work / "state"),
            "client_device_sn": "POS-DEMO",
        },
        "cloud": {
            "base_url": sim["cloud"]["base_url"],
            "command_url": sim["cloud"]["command_url"],
            "business_id": BUSINESS,
        },
        "terminal": [
            {"id": "counter-1", "transport": "lan",
             "host": links["lan"]["host"], "port": links["lan"]["port"], "timeout_s": 60,
             "send_actions": ["Settlement"]},
            {"id": "counter-2", "transport": "serial", "device": links["serial"]["device"],
             "timeout_s": 60},
            {"id": "kiosk", "transport": "cloud", "timeout_s": 60},
        ],
        "http": http,
    }  # fmt: skip
    path = work / "ecrd.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def start_daemon(work: Path, config: Path) -> subprocess.Popen[bytes]:
    log = open(work / "ecrd.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [str(BIN / "ecrd"), "run", "--config", str(config)], stdout=log, stderr=log
    )
    sock = work / "run" / "ecrd.sock"
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("ecrd did not start:\n" + (work / "ecrd.log").read_text())
        time.sleep(0.05)
    return proc


class Ctl:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.failures = 0

    def __call__(self, *args: str, expect: int = 0) -> str:
        shown = " ".join(shlex.quote(a) for a in args)
        print(f"{DIM}${RESET} ecrctl {shown}", flush=True)
        res = subprocess.run(
            [str(BIN / "ecrctl"), "--socket", str(self.socket), *args],
            stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        print(res.stdout.rstrip())
        if res.returncode != expect:
            self.failures += 1
            print(f"(exit status {res.returncode}, expected {expect})")
        return res.stdout


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def show(work: Path, sim: dict[str, Any], ctl: Ctl, http: tuple[int, str]) -> None:
    pins = {t["link"]: t for t in sim["terminals"]}
    say("the terminals' pairing pages show these codes (printed by the simulator)")
    for link, tid in (("lan", "counter-1"), ("serial", "counter-2"), ("cloud", "kiosk")):
        where = pins[link].get("url") or pins[link].get("device") or "reachable via the cloud only"
        print(f"  {tid:<10} {pins[link]['sn']:<22} code {pins[link]['pin1']}   {where}")
    say("pairing: LAN with the 6 digits, serial with the 6 digits, cloud with the QR JSON")
    ctl("pair", "counter-1", pins["lan"]["pin1"])
    ctl("pair", "counter-2", pins["serial"]["pin1"])
    ctl("pair", "kiosk", pins["cloud"]["qr"])
    ctl("terminals")
    say("a sale on the LAN terminal (the simulated customer takes a moment to tap)")
    ctl("sale", "counter-1", "10.20", "HKD", "--ref", "demo-sale-1")
    say("a partial refund of it")
    ctl("refund", "counter-1", "4.20", "HKD", "--original", "demo-sale-1", "--ref", "demo-refund-1")
    say("a sale over RS232 (a pty), then voided")
    ctl("sale", "counter-2", "25.00", "HKD", "--ref", "demo-sale-2")
    ctl("void", "counter-2", "demo-sale-2", "--ref", "demo-void-2")
    say("a sale through the cloud relay")
    ctl("sale", "kiosk", "8.80", "HKD", "--ref", "demo-sale-3")
    say(f"a sale over HTTP (POST /rpc on 127.0.0.1:{http[0]}, the web-pos token: sell and refund)")
    if not http_sale(*http):
        ctl.failures += 1
    say("a declined card is a result, not an error (exit status 1)")
    ctl("sale", "counter-1", "3.91", "HKD", "--ref", "demo-declined", expect=1)
    say("the journal")
    ctl("tx")


def try_these(work: Path, sim: dict[str, Any], token: str, port: int) -> None:
    print(f"  export PATH={BIN}:$PATH ECRD_SOCKET={work / 'run' / 'ecrd.sock'}")
    print("  ecrctl status")
    print("  ecrctl sale counter-1 12.50 HKD --ref my-first-sale")
    print("  ecrctl sale counter-1 1.94 HKD      # magic amount: the reply is lost -> UNKNOWN")
    print("  ecrctl tx --state unknown ; ecrctl resolve REF succeeded --note checked")
    print("  ecrctl watch                        # live events")
    print(f"  curl -s -H 'Authorization: Bearer {token}' -d "
          f"'{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}}' "
          f"http://127.0.0.1:{port}/rpc")  # fmt: skip
    # The web POS example (examples/web-pos/README.md) from the origin [http] allows.
    query = urlencode({"endpoint": f"http://127.0.0.1:{port}", "token": token,
                       "terminal": "counter-1"}, safe=":/")  # fmt: skip
    print(f"  python3 -m http.server 3000 --bind 127.0.0.1 --directory examples/web-pos &\n"
          f"  # then open http://localhost:3000/?{query}  (the web POS example)")  # fmt: skip
    print(f"  simulator control API: {sim['control_url']} (docs/simulator.md)")
    print(f"  logs: {work}/ecrd.log and {work}/sim.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-wait", action="store_true", help="stop after the demo")
    parser.add_argument("--customer-delay", type=float, default=1.5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ecrd-demo-"))
    sim_proc, sim = start_simulator(work, args.customer_delay)
    daemon = None
    try:
        said, port, table = new_http_client()
        config = write_config(work, sim, table)
        say(f"config written to {config}")
        print(config.read_text())
        daemon = start_daemon(work, config)
        say(f"ecrd is running (pid {daemon.pid}), socket {work / 'run' / 'ecrd.sock'}")
        ctl = Ctl(work / "run" / "ecrd.sock")
        show(work, sim, ctl, (port, said["token"]))
        if ctl.failures:
            print(f"\n{ctl.failures} step(s) did not go as expected; logs: {work}/ecrd.log")
            return 1
        if args.no_wait:
            say("all done (--no-wait: stopping now). Without it, everything keeps running:")
        else:
            say("all done. Everything keeps running: try your own commands in another shell")
        try_these(work, sim, said["token"], port)
        if args.no_wait:
            return 0
        print("\nCtrl-C stops the daemon and the simulator.")
        try:
            while daemon.poll() is None and sim_proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping…")
        return 0
    finally:
        stop(*(p for p in (daemon, sim_proc) if p is not None))
        if not os.environ.get("ECRD_DEMO_KEEP"):
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
