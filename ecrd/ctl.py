"""``ecrctl``: the admin's command line over ecrd's socket.

Its exit codes and output are ``ctl_out.py``'s; the payment commands are ``ctl_pay.py``'s,
the fleet's (export, report, metrics, backup) ``ctl_fleet.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid
from typing import Any

import trio

from ecrd import __version__, ctl_fleet, ctl_pay
from ecrd.client import DEFAULT_SOCKET, EcrdError, TrioClient, open_trio_client
from ecrd.ctl_out import (
    EPILOG,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    json_object,
    output,
    show,
    table,
    tx_text,
)
from ecrd.ctl_pay import MONEY_COMMANDS, Interrupted, interrupted
from ecrd.ctl_probe import cmd_probe, pairing_code

TERMINAL_COLUMNS = ["id", "transport", "paired", "device_sn", "link", "busy", "last_error"]
TX_COLUMNS = ["reference_id", "terminal", "action", "amount", "currency", "state", "updated_at"]
Args = argparse.Namespace


async def cmd_status(args: Args, client: TrioClient) -> int:
    st = await client.call("status")
    lines = [
        f"ecrd {st['version']} pid {st['pid']} up {st['uptime_s']}s  config {st['config']}",
        f"journal: {st['journal']}  in flight: {st['in_flight']}",
    ]
    if st.get("reload_error"):
        lines.append(f"RELOAD FAILED (old config in force): {show(st['reload_error'])}")
    output(args, st, "\n".join(lines) + "\n\n" + table(st["terminals"], TERMINAL_COLUMNS))
    return EXIT_OK


async def cmd_terminals(args: Args, client: TrioClient) -> int:
    rows = await client.call("terminal.list")
    output(args, rows, table(rows, TERMINAL_COLUMNS))
    return EXIT_OK


async def cmd_pair(args: Args, client: TrioClient) -> int:
    print(f"pairing {args.terminal}…", file=sys.stderr)
    res = await client.call("terminal.pair", terminal=args.terminal, code=pairing_code(args.code))
    output(args, res, f"paired {show(res['terminal'])} with terminal {show(res['device_sn'])}")
    return EXIT_OK


async def cmd_unpair(args: Args, client: TrioClient) -> int:
    res = await client.call("terminal.unpair", terminal=args.terminal)
    output(args, res, f"{args.terminal} unpaired")
    return EXIT_OK


async def cmd_info(args: Args, client: TrioClient) -> int:
    res = await client.call("terminal.info", terminal=args.terminal)
    output(args, res, "\n".join(f"{show(k):<12} {show(v)}" for k, v in res.items()))
    return EXIT_OK


async def cmd_trace(args: Args, client: TrioClient) -> int:
    params: dict[str, Any] = {"terminal": args.terminal}
    if args.switch is not None:
        params["on"] = args.switch == "on"
    if args.tail is not None:
        params["tail"] = args.tail
    res = await client.call("terminal.trace", **params)
    if "lines" in res:
        text = "\n".join(show(json.dumps(line, ensure_ascii=False)) for line in res["lines"])
        output(args, res, text or "(the trace is empty)")
    else:
        state = "on" if res["trace"] else "off"
        output(args, res, f"trace {state} for {show(res['terminal'])}: {show(res['file'])}")
    return EXIT_OK


async def cmd_tx(args: Args, client: TrioClient) -> int:
    if args.ref:
        tx = await client.call("transaction.get", reference_id=args.ref)
        output(args, tx, tx_text(tx))
        return EXIT_OK
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.terminal:
        params["terminal"] = args.terminal
    if args.before:
        params["before"] = args.before
    rows = await client.call("transaction.list", **params)
    output(args, rows, table(rows, TX_COLUMNS))
    return EXIT_OK


async def cmd_resolve(args: Args, client: TrioClient) -> int:
    tx = await client.call(
        "transaction.resolve", reference_id=args.ref, outcome=args.outcome, note=args.note or ""
    )
    output(args, tx, tx_text(tx))
    return EXIT_OK


async def cmd_reload(args: Args, client: TrioClient) -> int:
    res = await client.call("config.reload")
    output(args, res, f"reloaded: {res}")
    return EXIT_OK


async def cmd_send(args: Args, client: TrioClient) -> int:
    params = {"terminal": args.terminal, "action": args.action, "body": args.body or {}}
    res = await client.call("terminal.send", **params)
    output(args, res, "\n".join(f"{show(k):<12} {show(v)}" for k, v in res.items()))
    return EXIT_OK


async def cmd_watch(args: Args, client: TrioClient) -> int:
    await client.call("subscribe", **({"topics": args.topics} if args.topics else {}))
    async for event in client.events:
        text = " ".join(f"{show(k)}={show(v)}" for k, v in event.items())
        print(json.dumps(event) if args.json else text, flush=True)
    return EXIT_OK


async def cmd_ping(args: Args, client: TrioClient) -> int:
    res = await client.call("ping")
    output(args, res, f"ecrd {res['version']} (protocol {res['protocol']})")
    return EXIT_OK


COMMANDS = {
    "status": cmd_status,
    "terminals": cmd_terminals,
    "pair": cmd_pair,
    "unpair": cmd_unpair,
    "info": cmd_info,
    "probe": cmd_probe,
    "trace": cmd_trace,
    **dict.fromkeys(MONEY_COMMANDS, ctl_pay.cmd_money),
    "abort": ctl_pay.cmd_abort,
    "tx": cmd_tx,
    "resolve": cmd_resolve,
    "reload": cmd_reload,
    "watch": cmd_watch,
    "send": cmd_send,
    "ping": cmd_ping,
    **ctl_fleet.COMMANDS,
}


async def _run(args: Args) -> int:
    """The command, until it ends or a signal stops it: a payment command then says what
    goes on without it (main), never a traceback."""
    stopped: list[int] = []
    failure: BaseException | None = None
    code = EXIT_ERROR
    async with open_trio_client(args.socket) as client, trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        nursery.start_soon(_watch_signals, scope, stopped)
        with scope:
            try:
                code = await COMMANDS[args.command](args, client)
            except BaseException as exc:  # raised below, outside the nursery, unwrapped
                failure = exc
        nursery.cancel_scope.cancel()
    if stopped:
        raise Interrupted(stopped[0])
    if failure is not None:
        raise failure
    return code


async def _watch_signals(scope: trio.CancelScope, stopped: list[int]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            stopped.append(signum)
            scope.cancel()
            return


def _support_parsers(sub: Any) -> None:
    """probe and trace: first contact with a real terminal (docs/first-contact.md)."""
    p = sub.add_parser(
        "probe", help="find the settings a terminal answers under, or (--status) its status action"
    )
    p.add_argument("terminal")
    p.add_argument("code", nargs="?", help="the code on its pairing page (or its QR JSON)")
    p.add_argument(
        "--status", action="store_true",
        help="a paired terminal: which status action it knows (read-only queries)",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, help="give up after this many seconds (max 300)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    p = sub.add_parser("trace", help="a terminal's wire trace for support: on, off, --tail")
    p.add_argument("terminal")
    p.add_argument("switch", nargs="?", choices=("on", "off"))
    p.add_argument("--tail", type=int, nargs="?", const=50, help="show the last N lines (50)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecrctl",
        description="Talk to ecrd, the Wonder payment-terminal daemon.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--socket",
        default=os.environ.get("ECRD_SOCKET", DEFAULT_SOCKET),
        help="ecrd's socket (env ECRD_SOCKET; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"ecrctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="daemon and terminal overview")
    sub.add_parser("terminals", help="list terminals")
    sub.add_parser("ping", help="is ecrd alive?")
    sub.add_parser("reload", help="re-read the config file")
    p = sub.add_parser("watch", help="print events as they happen")
    p.add_argument(
        "--topics", nargs="+", choices=["transaction.state", "transaction.disputed", "terminal"]
    )
    p = sub.add_parser("send", help="send an allowed action (terminal.send; admin)")
    p.add_argument("terminal")
    p.add_argument("action", help="DeviceInfo, the status action, or one of send_actions")
    p.add_argument("--body", type=json_object, metavar="JSON")
    p = sub.add_parser("pair", help="pair with the code the terminal shows")
    p.add_argument("terminal")
    p.add_argument("code", help="the code shown (6 of A-Z, 0-9), or the QR JSON")
    for name in ("unpair", "info"):
        sub.add_parser(name).add_argument("terminal")
    ctl_pay.add_parsers(sub)
    ctl_fleet.add_parsers(sub)
    _support_parsers(sub)
    p = sub.add_parser("abort", help="cancel the payment in progress on a terminal")
    p.add_argument("terminal")
    p.add_argument("--ref")
    p = sub.add_parser("tx", help="show one transaction, or list them")
    p.add_argument("ref", nargs="?")
    p.add_argument("--state")
    p.add_argument("--terminal")
    p.add_argument("--limit", type=int, default=20, help="at most 500 (one page)")
    p.add_argument("--before", metavar="REF", help="the page after REF (older than it)")
    p = sub.add_parser("resolve", help="settle an UNKNOWN transaction after checking the terminal")
    p.add_argument("ref")
    p.add_argument("outcome", choices=["succeeded", "failed"])
    p.add_argument("--note", help="why (journaled with your uid)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in MONEY_COMMANDS:
        args.ref = args.ref or str(uuid.uuid4())  # known before it is sent: said if stopped
    try:
        return trio.run(_run, args)
    except Interrupted:
        return interrupted(args)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
        print(
            f"ecrctl: cannot reach ecrd at {args.socket}: {exc.strerror or exc}\n"
            "  is it running? (systemctl status ecrd) Are you in its socket group?",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except EcrdError as exc:
        if args.json:
            print(
                json.dumps(
                    {"error": {"code": exc.code, "message": exc.message, "data": exc.data}},
                    indent=2,
                )
            )
        print(f"ecrctl: {show(exc.message)} [{show(exc.reason)}]", file=sys.stderr)
        if exc.reason == "permission_denied":
            role = show(exc.data.get("role"))
            print(f"  missing role: {role}; an admin grants it in [access].{role}", file=sys.stderr)
        tx = exc.data.get("transaction")
        if tx and not args.json:
            print(tx_text(tx))
        if exc.reason == "timeout_outcome_unknown":
            return EXIT_UNKNOWN
        if exc.reason == "invalid_params":
            return EXIT_USAGE
        return EXIT_ERROR
    except KeyboardInterrupt:  # before the command started (connecting)
        return interrupted(args)


if __name__ == "__main__":
    sys.exit(main())
