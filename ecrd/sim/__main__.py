"""``ecrd-sim``: run simulated Wonder terminals until SIGINT/SIGTERM.

On readiness it prints exactly one JSON line on stdout (see docs/simulator.md) and then
logs for people on stderr. It exits 0 on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ecrd import __version__
from ecrd.protocol.crypto import SCHEMES
from ecrd.protocol.frames import CRC_VARIANTS, FrameFormat
from ecrd.sim.faults import FAULTS, MAGIC_CENTS
from ecrd.sim.lan import LAN_PATH
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import DEFAULT_BUSINESS_ID, INFO_ACTIONS, PIN2_FIELDS, SimTerminal

log = logging.getLogger("ecrd.sim")

SN_PREFIX = "NEXGO-N96-"
SN_BASE = 1170270945


def _epilog() -> str:
    faults = "\n".join(f"  {name:<18} {kind.help}" for name, kind in FAULTS.items())
    magic = "\n".join(f"  x.{cents}  {name}" for cents, name in MAGIC_CENTS.items())
    return f"""\
links:
  lan     HTTP POST http://HOST:PORT{LAN_PATH} (envelope in, envelope out)
  serial  frames on a pty; the daemon opens the slave, or the stable symlink
          STATE_DIR/ttyECR<n> that follows the pty across unplug/replug
  cloud   reachable only through the fake gateway (every terminal is reachable there):
          POST {{cloud}}/svc/payment/public/api/v1/openapi/terminal/info
          POST {{cloud}}/svc/payment/public/api/v1/openapi/terminal/command
          headers x-p-business-id, x-device-sn (command), x-request-id (a fresh UUID)

faults (arm through the control API; one-shot unless "sticky": true):
{faults}

magic amounts (Sale, PreAuth, Refund; the cents pick a one-shot fault; --no-magic-amounts):
{magic}
  (x.92 waits --magic-delay seconds)

control API (JSON over HTTP, URL in the readiness line):
  GET / | GET /terminals | GET /terminals/SN | PATCH /terminals/SN {{settings}}
  GET /terminals/SN/ledger | GET|POST|DELETE /terminals/SN/faults[/NAME]
  POST /terminals/SN/reboot | /pairing-page | /unplug | /replug   (body {{"pin1"?}})
  e.g. curl -X POST URL/terminals/SN/faults -d '{{"name":"delay","params":{{"seconds":5}}}}'

stdout: one JSON line when ready (control_url, cloud urls, terminals with sn, link,
host/port/url or device, pin1, qr, scheme); logs go to stderr. The pairing code (pinCode1)
is printed because the real terminal shows it on its screen; pinCode2 is never printed.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ecrd-sim",
        description="Simulated Wonder payment terminals over real links (LAN, RS232, cloud).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--version", action="version", version=f"ecrd-sim {__version__}")
    a(
        "--lan",
        type=int,
        default=None,
        metavar="N",
        help="terminals on LAN (default 1 if no link given)",
    )
    a("--serial", type=int, default=0, metavar="N", help="terminals on a pty serial line")
    a("--cloud", type=int, default=0, metavar="N", help="terminals reachable only via the cloud")
    a("--host", default="127.0.0.1", help="address to listen on (loopback)")
    a("--sn", action="append", default=[], help="serial number, repeat per terminal")
    a("--pin1", action="append", default=[], help="fixed pairing code, repeat per terminal")
    a("--pin2", default=None, help="fixed pinCode2 to issue on Pair (default random)")
    a("--pin2-field", default="pinCode2", choices=PIN2_FIELDS, help="Pair reply field name")
    a("--business-id", default=DEFAULT_BUSINESS_ID)
    a("--scheme", default="v2", choices=SCHEMES)
    a("--lan-port", type=int, default=0, help="port of the first LAN terminal, then +1 (0: any)")
    a("--lan-path", default=LAN_PATH)
    a("--cloud-port", type=int, default=0)
    a("--cloud-timeout", type=float, default=300.0, help="gateway waits this long, then 504")
    a("--control-port", type=int, default=0)
    a("--no-control", action="store_true", help="do not serve the control API")
    a("--state-dir", default=None, help="where serial symlinks and ready.json go (default: temp)")
    a("--pace", type=float, default=None, metavar="BPS", help="serial write rate, bytes/s")
    a("--frame-cmd", type=lambda s: int(s, 0), default=FrameFormat().cmd)
    a("--frame-byteorder", default="big", choices=("big", "little"))
    a("--frame-crc", default="crc32", choices=sorted(CRC_VARIANTS))
    a("--status-action", default=None, help="enable a status action by this name")
    a("--customer-delay", type=float, default=0.0, help="seconds every customer takes")
    a("--magic-delay", type=float, default=3.0, help="delay of the x.92 magic amount")
    a("--no-magic-amounts", action="store_true")
    a("--reply-salt-reuse", action="store_true", help="reuse one reply salt (benchmarks)")
    a("-v", "--verbose", action="store_true")
    _variant_options(a)
    args = p.parse_args(argv)
    if args.lan is None:
        args.lan = 0 if (args.serial or args.cloud) else 1
    if args.lan + args.serial + args.cloud < 1:
        p.error("no terminals: give --lan, --serial or --cloud")
    return args


def _variant_options(a: Callable[..., Any]) -> None:
    """What a real terminal may differ in (docs/first-contact.md), to test ecrctl probe."""
    a("--letter-codes", action="store_true", help="make up codes of A-Z and 0-9, not digits")
    a("--lan-tls", nargs=2, metavar=("CERT", "KEY"), help="serve LAN over https with these")
    a("--lan-wrap", action="store_true", help="LAN replies wrapped as the cloud's {code,...}")
    a("--serial-baud", type=int, default=None, help="answer only at this pty speed (garble others)")
    a("--strict-cmd", action="store_true", help="serial: ignore frames with another --frame-cmd")
    a("--strict", action="store_true", help="refuse what the vendor's document marks required")
    a("--identify-only", choices=INFO_ACTIONS, help="under the pairing code answer only this")
    a("--pair-uuid-field", default="pairUuid", help="the Pair body's field (default pairUuid)")


def build(args: argparse.Namespace, state_dir: Path) -> Simulator:
    sim = Simulator(
        host=args.host,
        business_id=args.business_id,
        state_dir=state_dir,
        cloud_port=args.cloud_port,
        cloud_timeout=args.cloud_timeout,
        control_port=None if args.no_control else args.control_port,
        strict_cloud=args.strict,
    )
    fmt = FrameFormat(cmd=args.frame_cmd, byteorder=args.frame_byteorder, crc=args.frame_crc)
    links = ["lan"] * args.lan + ["serial"] * args.serial + ["cloud"] * args.cloud
    for i, link in enumerate(links):
        terminal = SimTerminal(
            args.sn[i] if i < len(args.sn) else f"{SN_PREFIX}{SN_BASE + i}",
            business_id=args.business_id,
            scheme=args.scheme,
            pin1=args.pin1[i] if i < len(args.pin1) else None,
            pin2=args.pin2,
            pin2_field=args.pin2_field,
            status_action=args.status_action,
            customer_delay=args.customer_delay,
            magic_amounts=not args.no_magic_amounts,
            magic_delay=args.magic_delay,
            reply_salt_reuse=args.reply_salt_reuse,
            letter_codes=args.letter_codes,
            identify_only=args.identify_only,
            pair_uuid_field=args.pair_uuid_field,
            strict=args.strict,
        )
        if link == "lan":
            port = args.lan_port + i if args.lan_port else 0
            tls = _server_tls(args.lan_tls)
            sim.add_lan(terminal, port=port, path=args.lan_path, tls=tls, wrap=args.lan_wrap)
        elif link == "serial":
            sim.add_serial(
                terminal, fmt=fmt, pace_bps=args.pace, baudrate=args.serial_baud,
                strict_cmd=args.strict_cmd,
            )  # fmt: skip
        else:
            sim.add_cloud(terminal)
    return sim


def _server_tls(files: list[str] | None) -> ssl.SSLContext | None:
    if not files:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files[0], files[1])
    return ctx


async def run(sim: Simulator, ready_file: Path) -> None:
    # The signal receiver exists before readiness is announced, so a SIGTERM sent the
    # moment the JSON line is read is always a clean exit, never the default kill.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            description: dict[str, Any] = await nursery.start(sim.run)
            line = json.dumps(description)
            await trio.Path(ready_file).write_text(line + "\n")
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            for t in sim.terminals:
                t.show_screen()
            async for signum in signals:
                log.info("ecrd-sim: %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="ecrd-sim %(levelname)s %(name)s: %(message)s",
    )
    temporary = args.state_dir is None
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="ecrd-sim-"))
    try:
        try:
            sim = build(args, state_dir)
        except ValueError as exc:  # bad option values (a malformed pairing code...)
            print(f"ecrd-sim: {exc}", file=sys.stderr)
            return 2
        trio.run(run, sim, state_dir / "ready.json")
    finally:
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
