"""``ecrctl``'s payment commands: sale, preauth, refund, void, abort.

A payment command shows a live indicator fed by the daemon's events. Stopped by Ctrl-C or
SIGTERM (``ctl._run``), it never pretends to know the outcome: the payment goes on in ecrd
and on the terminal, so it names the reference and how to look it up, and exits
``EXIT_INTERRUPTED`` — never 0 (approved) or 1 (declined).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

import trio

from ecrd.client import EcrdError, TrioClient
from ecrd.ctl_out import (
    EXIT_DECLINED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    json_object,
    output,
    show,
    tx_text,
)

Args = argparse.Namespace
MONEY_COMMANDS: Final = ("sale", "preauth", "refund", "void")
SPINNER: Final = "|/-\\"


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
    output(args, tx, tx_text(tx))
    return EXIT_OK if tx["state"] in ("succeeded", "resolved_succeeded") else EXIT_DECLINED


def _money_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"terminal": args.terminal, "reference_id": args.ref}
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


async def cmd_money(args: Args, client: TrioClient) -> int:
    return await _pay(args, client, args.command, _money_params(args))


async def cmd_abort(args: Args, client: TrioClient) -> int:
    params = {"terminal": args.terminal}
    if args.ref:
        params["reference_id"] = args.ref
    res = await client.call("abort", **params)
    status, message = show(res.get("status", "?")), show(res.get("errorMessage"))
    output(args, res, f"abort sent: {status} {message}")
    # The terminal's Failed (e.g. NO_TRANSACTION: nothing was in progress) is said as such.
    return EXIT_OK if res.get("status") == "Success" else EXIT_DECLINED


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while a command ran (``EXIT_INTERRUPTED``)."""


def interrupted(args: Args) -> int:
    """What a stopped command says; a payment's goes on, so say which and how to see it."""
    if args.command in MONEY_COMMANDS:
        print(
            f"\necrctl: interrupted. The {args.command} {args.ref} on {args.terminal} is NOT "
            "cancelled: it goes on, and the terminal decides its outcome.\n"
            f"  Look it up with `ecrctl tx {args.ref}` before charging again (retrying with "
            f"--ref {args.ref} is safe); to stop it on the terminal: `ecrctl abort "
            f"{args.terminal}`.",
            file=sys.stderr,
        )
    else:
        print("\necrctl: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


TERMINAL_HELP: Final = "the terminal's id in the config ([[terminal]] id)"
METHODS: Final = ("credit_card", "fps", "octopus", "consumer_presented_qr_code")


def add_parsers(sub: Any) -> None:
    for name, what in (("sale", "take a payment"), ("preauth", "hold an amount on a card"),
                       ("refund", "pay back (part of) a sale")):  # fmt: skip
        p = sub.add_parser(name, help=f"{what} (sell role; refund: refund role)")
        p.add_argument("terminal", help=TERMINAL_HELP)
        p.add_argument("amount", help='a decimal with two places, e.g. "10.20"')
        p.add_argument("currency", nargs="?", default="HKD", help="ISO 4217 code")
        if name == "refund":
            p.add_argument("--original", dest="original_reference_id", required=True,
                           help="the reference_id of the sale refunded")  # fmt: skip
        p.add_argument("--method", dest="payment_method", choices=METHODS,
                       help="the payment method (default: the terminal asks)")  # fmt: skip
        p.add_argument("--customer-order-id", "--order", dest="customer_order_id",
                       help="your order number, on the receipt and in the journal")  # fmt: skip
        p.add_argument("--print", choices=["YES", "NO"], help="print a receipt")
        _common_money(p, reversal=name == "refund")
    p = sub.add_parser("void", help="undo a sale, preauth or refund whole (refund role)")
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("original_reference_id", help="the reference_id of what is voided")
    _common_money(p, reversal=True)
    p = sub.add_parser("abort", help="cancel the payment in progress on a terminal")
    p.add_argument("terminal", help=TERMINAL_HELP)
    p.add_argument("--ref", help="the payment to cancel (default: the one in progress)")


def _common_money(p: argparse.ArgumentParser, *, reversal: bool) -> None:
    p.add_argument("--ref", help="your reference_id (reuse it to retry safely; default: new)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the customer (1-3600; "
                   "default: the terminal's timeout_s)")  # fmt: skip
    p.add_argument("--wait", action="store_true", help="wait if the terminal is busy")
    p.add_argument("--extra", type=json_object, metavar="JSON", help="more body fields")
    if reversal:
        p.add_argument(
            "--elsewhere",
            action="store_true",
            help="the original may have been taken on another box: one this box's journal "
            "does not hold goes to the terminal, which checks it",
        )
