"""``ecrctl``: the admin's command line over ecrd's socket.

Exit codes scripts can trust:
  0  done (a payment: approved)          3  outcome UNKNOWN: check the terminal, then resolve
  1  payment declined / failed           4  ecrd not reachable (socket missing, permission)
  2  bad usage or bad parameters         5  any other error (not paired, link down, busy...)

Text output escapes control characters in every value (``ecrd.text.escape``): a terminal's
reply or a reference id can never move the cursor, clear the screen or fake a line here.
``--json`` output is JSON, where they are escaped anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

import tomli_w
import trio

from ecrd import __version__, ctl_fleet
from ecrd.client import DEFAULT_SOCKET, EcrdError, TrioClient, open_trio_client
from ecrd.text import escape

EXIT_OK, EXIT_DECLINED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_UNREACHABLE, EXIT_ERROR = range(6)
SPINNER = "|/-\\"


def _show(value: Any) -> str:
    """One value for the text output, control characters escaped."""
    return escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("-" if r.get(c) is None else _show(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _tx_text(tx: dict[str, Any]) -> str:
    reply = {k: _show(v) for k, v in (tx.get("reply") or {}).items()}
    tx = {k: (v if isinstance(v, dict) or v is None else _show(v)) for k, v in tx.items()}
    lines = [
        f"reference  {tx['reference_id']}",
        f"terminal   {tx['terminal']}  ({tx.get('link') or '-'})",
        f"action     {tx['action']}  {tx.get('amount') or ''} {tx.get('currency') or ''}".rstrip(),
        f"state      {tx['state'].upper()}",
    ]
    if reply.get("errorCode") or reply.get("errorMessage"):
        lines.append(f"terminal   {reply.get('errorCode', '')} {reply.get('errorMessage', '')}")
    for key in ("paymentMethod", "rrn", "transactionType"):
        if reply.get(key):
            lines.append(f"{key:<10} {reply[key]}")
    if tx.get("note"):
        lines.append(f"note       {tx['note']}")
    return "\n".join(lines)


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    # Line by line as well: no control character but the line breaks of the layout.
    print(json.dumps(value, indent=2) if args.json else "\n".join(map(escape, text.split("\n"))))


async def _pay(
    args: argparse.Namespace, client: TrioClient, method: str, params: dict[str, Any]
) -> int:
    """Run a money command with a live indicator fed by the daemon's events."""
    ref = params["reference_id"]
    await client.call("subscribe", topics=["transaction.state"])
    done = trio.Event()
    show = sys.stderr.isatty() and not args.json

    async def indicator() -> None:
        waiting, i = False, 0
        while not done.is_set():
            try:
                event = client.events.receive_nowait()
                if (
                    event.get("reference_id") == ref
                    and event.get("state") == "waiting_for_customer"
                ):
                    waiting = True
                    if not show:
                        print(f"{ref}: waiting for customer…", file=sys.stderr)
            except trio.WouldBlock:
                pass
            if waiting and show:
                print(
                    f"\r{SPINNER[i % 4]} waiting for customer… (Ctrl-C does NOT cancel the "
                    f"payment; use `ecrctl abort {params['terminal']}`)",
                    end="",
                    file=sys.stderr,
                )
                i += 1
            await trio.sleep(0.2)
        if waiting and show:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr)

    failure: EcrdError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(indicator)
        try:
            tx = await client.call(method, **params)
        except EcrdError as exc:
            failure = exc  # raised below, outside the nursery, unwrapped
        finally:
            done.set()
    if failure is not None:
        raise failure
    _print(args, tx, _tx_text(tx))
    return EXIT_OK if tx["state"] in ("succeeded", "resolved_succeeded") else EXIT_DECLINED


def _money_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "terminal": args.terminal,
        "reference_id": args.ref or str(uuid.uuid4()),
    }
    for key in ("amount", "currency", "original_reference_id", "payment_method",
                "customer_order_id", "print", "extra"):  # fmt: skip
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    if getattr(args, "timeout", None):
        params["timeout_s"] = args.timeout
    for flag, key in (("wait", "wait"), ("elsewhere", "original_elsewhere")):
        if getattr(args, flag, False):
            params[key] = True
    return params


def _json_object(text: str) -> dict[str, Any]:
    """``--extra`` / ``--body``: a JSON object on the command line."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('a JSON object, e.g. \'{"memo": "x"}\'')
    return value


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
        lines.append(f"RELOAD FAILED (old config in force): {_show(st['reload_error'])}")
    _print(args, st, "\n".join(lines) + "\n\n" + _table(st["terminals"], TERMINAL_COLUMNS))
    return EXIT_OK


async def cmd_terminals(args: Args, client: TrioClient) -> int:
    rows = await client.call("terminal.list")
    _print(args, rows, _table(rows, TERMINAL_COLUMNS))
    return EXIT_OK


async def cmd_pair(args: Args, client: TrioClient) -> int:
    print(f"pairing {args.terminal}…", file=sys.stderr)
    res = await client.call("terminal.pair", terminal=args.terminal, code=args.code)
    _print(args, res, f"paired {_show(res['terminal'])} with terminal {_show(res['device_sn'])}")
    return EXIT_OK


async def cmd_unpair(args: Args, client: TrioClient) -> int:
    res = await client.call("terminal.unpair", terminal=args.terminal)
    _print(args, res, f"{args.terminal} unpaired")
    return EXIT_OK


async def cmd_info(args: Args, client: TrioClient) -> int:
    res = await client.call("terminal.info", terminal=args.terminal)
    _print(args, res, "\n".join(f"{_show(k):<12} {_show(v)}" for k, v in res.items()))
    return EXIT_OK


async def cmd_probe(args: Args, client: TrioClient) -> int:
    """Progress per try on stderr (the daemon's events), then the lines to paste."""
    await client.call("subscribe", topics=["terminal"])
    params: dict[str, Any] = {"terminal": args.terminal, "code": args.code}
    if args.timeout is not None:
        params["timeout_s"] = args.timeout
    print(f"probing {args.terminal} (DeviceInfo only; at most 5 minutes)…", file=sys.stderr)
    shown = 0
    async with trio.open_nursery() as nursery:

        async def progress() -> None:
            nonlocal shown
            async for event in client.events:
                tried = event.get("probe")
                if event.get("terminal") == args.terminal and isinstance(tried, dict):
                    print(f"  {_probe_line(tried)}", file=sys.stderr, flush=True)
                    shown += 1

        nursery.start_soon(progress)
        res = await client.call("terminal.probe", **params)
        nursery.cancel_scope.cancel()
    for tried in res["tried"][shown:]:  # the events still on their way
        print(f"  {_probe_line(tried)}", file=sys.stderr)
    _print(args, res, _probe_text(res))
    return EXIT_OK if res["found"] is not None else EXIT_ERROR


def _probe_line(tried: dict[str, Any]) -> str:
    settings = " ".join(f"{_show(k)}={_show(v)}" for k, v in tried["settings"].items())
    return f"{settings or '-'}: {_show(tried['result'])}"


def _probe_text(res: dict[str, Any]) -> str:
    found = res["found"]
    if found is None:
        return (
            f"{_show(res['terminal'])}: no settings answered ({len(res['tried'])} tries); "
            "check the cable or address, the code on the pairing page, then send support "
            "the trace (`ecrctl --json probe ...`)"
        )
    lines = [
        f"{_show(res['terminal'])} answers as {_show(res['device_sn'])} with these settings;",
        "put them in its [[terminal]] entry, then `ecrctl reload`:",
        "",
        tomli_w.dumps(found).rstrip("\n"),
    ]
    if res["tried"][-1]["result"].startswith("https, needs ca_file"):
        lines.append("# https answers, but its certificate is not trusted: add")
        lines.append('# ca_file = "/path/to/the terminal\'s CA certificate.pem"')
    return "\n".join(lines)


async def cmd_trace(args: Args, client: TrioClient) -> int:
    params: dict[str, Any] = {"terminal": args.terminal}
    if args.switch is not None:
        params["on"] = args.switch == "on"
    if args.tail is not None:
        params["tail"] = args.tail
    res = await client.call("terminal.trace", **params)
    if "lines" in res:
        text = "\n".join(_show(json.dumps(line, ensure_ascii=False)) for line in res["lines"])
        _print(args, res, text or "(the trace is empty)")
    else:
        state = "on" if res["trace"] else "off"
        _print(args, res, f"trace {state} for {_show(res['terminal'])}: {_show(res['file'])}")
    return EXIT_OK


async def cmd_money(args: Args, client: TrioClient) -> int:
    return await _pay(args, client, args.command, _money_params(args))


async def cmd_abort(args: Args, client: TrioClient) -> int:
    params = {"terminal": args.terminal}
    if args.ref:
        params["reference_id"] = args.ref
    res = await client.call("abort", **params)
    status, message = _show(res.get("status", "?")), _show(res.get("errorMessage"))
    _print(args, res, f"abort sent: {status} {message}")
    # The terminal's Failed (e.g. NO_TRANSACTION: nothing was in progress) is a failure.
    return EXIT_OK if res.get("status") == "Success" else EXIT_ERROR


async def cmd_tx(args: Args, client: TrioClient) -> int:
    if args.ref:
        tx = await client.call("transaction.get", reference_id=args.ref)
        _print(args, tx, _tx_text(tx))
        return EXIT_OK
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    if args.terminal:
        params["terminal"] = args.terminal
    if args.before:
        params["before"] = args.before
    rows = await client.call("transaction.list", **params)
    _print(args, rows, _table(rows, TX_COLUMNS))
    return EXIT_OK


async def cmd_resolve(args: Args, client: TrioClient) -> int:
    tx = await client.call(
        "transaction.resolve", reference_id=args.ref, outcome=args.outcome, note=args.note or ""
    )
    _print(args, tx, _tx_text(tx))
    return EXIT_OK


async def cmd_reload(args: Args, client: TrioClient) -> int:
    res = await client.call("config.reload")
    _print(args, res, f"reloaded: {res}")
    return EXIT_OK


async def cmd_send(args: Args, client: TrioClient) -> int:
    params = {"terminal": args.terminal, "action": args.action, "body": args.body or {}}
    res = await client.call("terminal.send", **params)
    _print(args, res, "\n".join(f"{_show(k):<12} {_show(v)}" for k, v in res.items()))
    return EXIT_OK


async def cmd_watch(args: Args, client: TrioClient) -> int:
    await client.call("subscribe", **({"topics": args.topics} if args.topics else {}))
    async for event in client.events:
        text = " ".join(f"{_show(k)}={_show(v)}" for k, v in event.items())
        print(json.dumps(event) if args.json else text, flush=True)
    return EXIT_OK


async def cmd_ping(args: Args, client: TrioClient) -> int:
    res = await client.call("ping")
    _print(args, res, f"ecrd {res['version']} (protocol {res['protocol']})")
    return EXIT_OK


COMMANDS = {
    "status": cmd_status,
    "terminals": cmd_terminals,
    "pair": cmd_pair,
    "unpair": cmd_unpair,
    "info": cmd_info,
    "probe": cmd_probe,
    "trace": cmd_trace,
    "sale": cmd_money,
    "preauth": cmd_money,
    "refund": cmd_money,
    "void": cmd_money,
    "abort": cmd_abort,
    "tx": cmd_tx,
    "resolve": cmd_resolve,
    "reload": cmd_reload,
    "watch": cmd_watch,
    "send": cmd_send,
    "ping": cmd_ping,
    **ctl_fleet.COMMANDS,
}


async def _run(args: Args) -> int:
    async with open_trio_client(args.socket) as client:
        return await COMMANDS[args.command](args, client)


def _money_parsers(sub: Any) -> None:
    for name in ("sale", "preauth", "refund"):
        p = sub.add_parser(name, help=f"{name} (amount like 10.20)")
        p.add_argument("terminal")
        p.add_argument("amount")
        p.add_argument("currency", nargs="?", default="HKD")
        if name == "refund":
            p.add_argument("--original", dest="original_reference_id", required=True)
        p.add_argument("--method", dest="payment_method")
        p.add_argument("--customer-order-id", "--order", dest="customer_order_id")
        p.add_argument("--print", choices=["YES", "NO"], help="print a receipt")
        _common_money(p, reversal=name == "refund")
    p = sub.add_parser("void", help="void a transaction")
    p.add_argument("terminal")
    p.add_argument("original_reference_id")
    _common_money(p, reversal=True)


def _common_money(p: argparse.ArgumentParser, *, reversal: bool) -> None:
    p.add_argument("--ref", help="your reference_id (reuse it to retry safely)")
    p.add_argument("--timeout", type=float, help="seconds (1-3600)")
    p.add_argument("--wait", action="store_true", help="wait if the terminal is busy")
    p.add_argument("--extra", type=_json_object, metavar="JSON", help="more body fields")
    if reversal:
        p.add_argument(
            "--elsewhere",
            action="store_true",
            help="the original was taken on another box: skip the journal check",
        )


def _support_parsers(sub: Any) -> None:
    """probe and trace: first contact with a real terminal (docs/first-contact.md)."""
    p = sub.add_parser("probe", help="find the settings a terminal answers under")
    p.add_argument("terminal")
    p.add_argument("code", help="the code on its pairing page")
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
        epilog="exit codes: 0 ok/approved, 1 declined, 2 usage, 3 outcome UNKNOWN, "
        "4 ecrd unreachable, 5 other error",
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
    p.add_argument("--topics", nargs="+", choices=["transaction.state", "terminal"])
    p = sub.add_parser("send", help="send an allowed action (terminal.send; admin)")
    p.add_argument("terminal")
    p.add_argument("action", help="DeviceInfo, the status action, or one of send_actions")
    p.add_argument("--body", type=_json_object, metavar="JSON")
    p = sub.add_parser("pair", help="pair with the code the terminal shows")
    p.add_argument("terminal")
    p.add_argument("code", help="the code shown (6 of A-Z, 0-9), or the QR JSON")
    for name in ("unpair", "info"):
        sub.add_parser(name).add_argument("terminal")
    _money_parsers(sub)
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
    try:
        return trio.run(_run, args)
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
        print(f"ecrctl: {_show(exc.message)} [{_show(exc.reason)}]", file=sys.stderr)
        if exc.reason == "permission_denied":
            role = _show(exc.data.get("role"))
            print(f"  missing role: {role}; an admin grants it in [access].{role}", file=sys.stderr)
        tx = exc.data.get("transaction")
        if tx and not args.json:
            print(_tx_text(tx))
        if exc.reason == "timeout_outcome_unknown":
            return EXIT_UNKNOWN
        if exc.reason == "invalid_params":
            return EXIT_USAGE
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "\necrctl: interrupted (a payment in progress continues; see `ecrctl tx`)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
