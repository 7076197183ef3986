"""``ecrctl probe``: first contact with a real terminal (docs/first-contact.md).

``ecrctl probe TERMINAL CODE`` finds the settings it answers under; ``ecrctl probe TERMINAL
--status`` asks a paired terminal which status action it knows. Either way each step is
printed as it happens (the daemon's ``terminal`` events, on stderr), then the lines to
paste into the terminal's ``[[terminal]]`` entry (stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import tomli_w
import trio

from ecrd.client import TrioClient
from ecrd.ctl_out import EXIT_ERROR, EXIT_OK, EXIT_USAGE, error, output, show


def pairing_code(code: str) -> str:
    """The code as typed, or a pasted QR code's JSON on one line: the QR's text may hold
    line breaks (the vendor prints it so), which the socket API refuses in a parameter."""
    if code.lstrip().startswith("{"):
        try:
            return json.dumps(json.loads(code), separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            pass  # not JSON after all: ecrd says what is wrong with it
    return code


async def cmd_probe(args: argparse.Namespace, client: TrioClient) -> int:
    """Progress per step on stderr (the daemon's events), then the lines to paste."""
    if (args.code is None) == (not args.status):
        error(args, "usage", "probe: give CODE (find the settings) or --status, not both")
        return EXIT_USAGE
    await client.call("subscribe", topics=["terminal"])
    params: dict[str, Any] = {"terminal": args.terminal}
    params |= {"status": True} if args.status else {"code": pairing_code(args.code)}
    if args.timeout is not None:
        params["timeout_s"] = args.timeout
    what = "read-only status queries" if args.status else "its look-up only"
    limit = f"{args.timeout:g} s" if args.timeout is not None else "5 minutes"
    print(f"probing {args.terminal} ({what}; at most {limit})…", file=sys.stderr)
    res, shown = await _with_progress(client, args.terminal, params)
    steps = res.get("tried", [])
    for step in steps[shown:]:  # the events still on their way
        print(f"  {_line(step)}", file=sys.stderr)
    if args.status:
        output(args, res, status_text(res))
        return EXIT_OK if res["recognised"] else EXIT_ERROR
    output(args, res, settings_text(res))
    return EXIT_OK if res["found"] is not None else EXIT_ERROR


async def _with_progress(
    client: TrioClient, terminal: str, params: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    shown = 0
    async with trio.open_nursery() as nursery:

        async def progress() -> None:
            nonlocal shown
            async for event in client.events:
                step = event.get("probe")
                if event.get("terminal") == terminal and isinstance(step, dict):
                    print(f"  {_line(step)}", file=sys.stderr, flush=True)
                    shown += 1

        nursery.start_soon(progress)
        res: dict[str, Any] = await client.call("terminal.probe", **params)
        nursery.cancel_scope.cancel()
    return res, shown


def _line(step: dict[str, Any]) -> str:
    settings = " ".join(f"{show(k)}={show(v)}" for k, v in step["settings"].items())
    return f"{settings or '-'}: {show(step['result'])}"


def settings_text(res: dict[str, Any]) -> str:
    found = res["found"]
    if found is None:
        return (
            f"{show(res['terminal'])}: no settings answered ({len(res['tried'])} steps); "
            "check the cable or address, the code on the pairing page, then send support "
            "the trace (`ecrctl --json probe ...`)"
        )
    lines = [
        f"{show(res['terminal'])} answers as {show(res['device_sn'])} with these settings;",
        "put them in its [[terminal]] entry, then `ecrctl reload`:",
        "",
        tomli_w.dumps(found).rstrip("\n"),
    ]
    if any(t["settings"] == found and t["result"].startswith("https, needs ca_file")
           for t in res["tried"]):  # fmt: skip
        lines.append("# https answers, but its certificate is not trusted: add")
        lines.append('# ca_file = "/path/to/the terminal\'s CA certificate.pem"')
    return "\n".join(lines)


def status_text(res: dict[str, Any]) -> str:
    terminal = show(res["terminal"])
    if res.get("error"):
        return f"{terminal}: {show(res['error'])}"
    control = _said(res.get("control") or {})
    known = [a for a in res["status_actions"] if a.get("recognised")]
    if not known:
        return (
            f"{terminal} answers every candidate as it answers an action that cannot exist "
            f"({control}): it knows none of them. Leave status_action unset; an unknown "
            "outcome is settled by a person (`ecrctl resolve`)."
        )
    first = known[0]
    lines = [
        f"{terminal} recognises: " + ", ".join(show(a["action"]) for a in known),
        f"(an action that cannot exist gets {control}; each was asked about a reference it",
        "never saw). To let ecrd settle unknown outcomes by asking, put in its entry:",
        "",
        f"status_action = {json.dumps(first['action'])}",
    ]
    code = (first.get("answer") or {}).get("errorCode")
    if code:
        lines += [
            f"# For a reference it never saw, {first['action']} answered errorCode "
            f"{json.dumps(code)}:",
            "# the code a payment the terminal never took gets. List it only once you know",
            "# (Wonder's documentation or support) that it means never charged:",
            f"# not_charged_codes = [{json.dumps(code)}]",
        ]
    return "\n".join(show(line) for line in lines)


def _said(entry: dict[str, Any]) -> str:
    answer = entry.get("answer")
    if not answer:
        return f"no usable reply ({entry.get('error')})"
    return ", ".join(f"{k} {v!r}" for k, v in answer.items() if k != "action")
