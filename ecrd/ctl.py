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
from datetime import UTC, datetime
from typing import Any, NoReturn

import trio

from ecrd import __version__, ctl_fleet, ctl_http, ctl_pay
from ecrd.client import DEFAULT_SOCKET, EcrdError, TrioClient, open_trio_client
from ecrd.ctl_out import (
    EPILOG,
    EXIT_DECLINED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    error,
    exit_for,
    json_object,
    output,
    show,
    table,
    tx_text,
)
from ecrd.ctl_pay import MONEY_COMMANDS, Interrupted, interrupted
from ecrd.ctl_probe import cmd_probe, pairing_code
from ecrd.store.journal_records import STATES

TERMINAL_COLUMNS = ["id", "transport", "paired", "device_sn", "link", "busy", "last_error"]
TX_COLUMNS = ["reference_id", "terminal", "action", "amount", "currency", "state", "updated_at"]
Args = argparse.Namespace


async def cmd_status(args: Args, client: TrioClient) -> int:
    st = await client.call("status")
    counts = ", ".join(f"{state} {n}" for state, n in st["journal"].items() if n) or "empty"
    lines = [
        f"ecrd {st['version']} pid {st['pid']} up {st['uptime_s']}s  config {st['config']}",
        f"journal: {counts}  in flight: {st['in_flight']}",
    ]
    if st["journal"].get("disputed"):
        lines.append("DISPUTED transactions: `ecrctl tx --state disputed`")
    if st.get("unwritten"):
        lines.append(f"NOT JOURNALED yet (disk?): {', '.join(map(show, st['unwritten']))}")
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
    lines = [f"{key:<14} {', '.join(map(show, value)) or '-'}"
             for key, value in res.items() if isinstance(value, list)]  # fmt: skip
    lines += [f"failed         {show(tid)}: {show(why)}" for tid, why in res["failed"].items()]
    output(args, res, "reloaded\n" + "\n".join(lines))
    return EXIT_OK


async def cmd_send(args: Args, client: TrioClient) -> int:
    params = {"terminal": args.terminal, "action": args.action, "body": args.body or {}}
    res = await client.call("terminal.send", **params)
    output(args, res, "\n".join(f"{show(k):<12} {show(v)}" for k, v in res.items()))
    # As abort: the terminal's Failed is said as such (1), its Success is 0.
    return EXIT_DECLINED if str(res.get("status", "")).lower() == "failed" else EXIT_OK


async def cmd_watch(args: Args, client: TrioClient) -> int:
    await client.call("subscribe", **({"topics": args.topics} if args.topics else {}))
    async for event in client.events:
        when = datetime.fromtimestamp(float(event.get("at", 0)), UTC).astimezone()
        shown = {**event, "at": when.isoformat(timespec="milliseconds")}
        text = " ".join(f"{show(k)}={show(v)}" for k, v in shown.items())
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


TERMINAL_HELP = ctl_pay.TERMINAL_HELP


def _support_parsers(sub: Any) -> None:
    """probe and trace: first contact with a real terminal (docs/first-contact.md)."""
    p = sub.add_parser(
        "probe", help="find the settings a terminal answers under, or (--status) its status action"
    )
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("code", nargs="?", help="the code on its pairing page (or its QR JSON)")
    p.add_argument(
        "--status", action="store_true",
        help="a paired terminal: which status action it knows (read-only queries)",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, help="give up after this many seconds (1-300)")
    p = sub.add_parser("trace", help="a terminal's wire trace for support: on, off, --tail")
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("switch", nargs="?", choices=("on", "off"), help="turn the trace on or off")
    p.add_argument("--tail", type=int, nargs="?", const=50, help="show the last N lines (N: 50)")


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown; the exit-code table kept as it is laid out."""


class _Commands:
    """The subcommands' parsers, each with the common options (``--json`` anywhere on the
    line), its defaults and choices shown in its help."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self._sub, self._common = sub, common

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        kw.setdefault("parents", [self._common])
        kw.setdefault("formatter_class", _Help)
        kw.setdefault("description", kw.get("help"))
        parser: argparse.ArgumentParser = self._sub.add_parser(name, **kw)
        return parser


def _parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    _Parser.json_errors = json_errors
    parser = _Parser(
        prog="ecrctl", description="Talk to ecrd, the Wonder payment-terminal daemon.",
        epilog=EPILOG, formatter_class=_Help,
    )  # fmt: skip
    parser.add_argument("--socket", default=os.environ.get("ECRD_SOCKET", DEFAULT_SOCKET),
                        help="ecrd's socket (env ECRD_SOCKET)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"ecrctl {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (anywhere on the line)")  # fmt: skip
    sub = _Commands(parser.add_subparsers(dest="command", required=True), common)
    _admin_parsers(sub)
    ctl_pay.add_parsers(sub)
    ctl_fleet.add_parsers(sub)
    _support_parsers(sub)
    ctl_http.add_parser(sub)
    return parser


def _admin_parsers(sub: Any) -> None:
    sub.add_parser("status", help="daemon and terminal overview")
    sub.add_parser("terminals", help="list terminals")
    sub.add_parser("ping", help="is ecrd alive?")
    sub.add_parser("reload", help="re-read the config file")
    p = sub.add_parser("watch", help="print events as they happen (times in ISO 8601)")
    p.add_argument("--topics", nargs="+", help="only these (default: all)",
                   choices=["transaction.state", "transaction.disputed", "terminal"])  # fmt: skip
    p = sub.add_parser("send", help="send an allowed action (terminal.send; admin)")
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("action", help="DeviceInfo, the status action, or one of send_actions")
    p.add_argument("--body", type=json_object, metavar="JSON", help="the request body")
    p = sub.add_parser("pair", help="pair with the code the terminal shows (admin)")
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("code", help="the code shown (6 of A-Z, 0-9), or the QR JSON")
    sub.add_parser("unpair", help="forget a terminal's pairing (admin)").add_argument(
        "terminal", help=TERMINAL_HELP
    )
    sub.add_parser("info", help="ask the terminal its DeviceInfo").add_argument(
        "terminal", help=TERMINAL_HELP
    )
    p = sub.add_parser("tx", help="show one transaction, or list them")
    p.add_argument("ref", nargs="?", help="its reference_id (none: a list, newest first)")
    p.add_argument("--state", choices=STATES, help="only in this state")
    p.add_argument("--terminal", help="only on this terminal")
    p.add_argument("--limit", type=int, default=20, help="at most this many (1-500, one page)")
    p.add_argument("--before", metavar="REF", help="the page after REF (older than it)")
    p = sub.add_parser("resolve", help="settle an UNKNOWN or DISPUTED transaction (admin)")
    p.add_argument("ref", help="its reference_id")
    p.add_argument("outcome", choices=["succeeded", "failed"], help="what the terminal shows")
    p.add_argument("--note", required=True, help="why: what you checked (journaled)")


# The man page and the shell completions are made from ecrctl's parser (ecrd/docgen).
parser = _parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(json_errors="--json" in argv).parse_args(argv)
    if args.command == "http-token":  # made here: no daemon needed
        return ctl_http.cmd_http_token(args)
    if args.command in MONEY_COMMANDS:
        args.ref = args.ref or str(uuid.uuid4())  # known before it is sent: said if stopped
    try:
        return trio.run(_run, args)
    except Interrupted:
        return interrupted(args)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
        why = f"cannot reach ecrd at {args.socket}: {exc.strerror or exc}"
        hint = "is it running? (systemctl status ecrd) Are you in its socket group?"
        error(args, "unreachable", why, hint=hint)
        return EXIT_UNREACHABLE
    except EcrdError as exc:
        return _failed(args, exc)
    except KeyboardInterrupt:  # before the command started (connecting)
        return interrupted(args)


def _failed(args: Args, exc: EcrdError) -> int:
    """An error from ecrd: said (JSON on stderr under --json), and its class's exit code."""
    hint = ""
    if exc.reason == "permission_denied":
        role = show(exc.data.get("role"))
        hint = f"missing role: {role}; an admin grants it in [access].{role}"
    error(args, exc.reason, exc.message, exc.code, exc.data, hint)
    tx = exc.data.get("transaction")
    if tx and not args.json:
        print(tx_text(tx))
    return exit_for(exc.reason)


class _Parser(argparse.ArgumentParser):
    """Usage errors said as the others are: one JSON object on stderr under --json."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            said: dict[str, Any] = {"code": None, "reason": "usage", "message": message,
                                    "data": {}}  # fmt: skip
            print(json.dumps(said), file=sys.stderr)
            sys.exit(EXIT_USAGE)
        super().error(message)


if __name__ == "__main__":
    sys.exit(main())
