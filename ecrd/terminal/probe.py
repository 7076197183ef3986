"""``terminal.probe``: under which settings does this terminal answer? And, on a paired
terminal, which status action does it know?

Finding the settings, it sends only the look-up pairing will send (``identify_action``:
DeviceInfo, or ConnectionInfo {businessID}; via the cloud the seed's terminal-info) sealed
under the pairing code — never ``Pair``, never a money action — varying the [ASSUMED] knobs
of the terminal's entry, and stops at the first reply that decrypts and answers:

* serial (``probe_serial.py``): at each speed, every framing in one paced window, every
  reply decoded under every framing; crypto varied only where a reply proved the framing;
* LAN (``probe_net.py``): every address (path × tls × port) at once, then crypto and
  look-up where an envelope came back;
* cloud: the crypto.

Every try goes out on a link or port of the probe's own; the terminal's own links and
config are never touched (serial: the terminal's link lends the device and gets it back
however the probe ends), so cancelling a probe (a client gone, Ctrl-C) leaves the settings
in force. Bounded by ``limit_s`` (at most five minutes) whatever happens.

The status-action discovery (``probe_status.py``) is the other mode: it runs on a paired
terminal, on its own link, under its own PIN.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

import trio

from ecrd.terminal.probe_net import probe_cloud, probe_lan
from ecrd.terminal.probe_serial import probe_serial
from ecrd.terminal.probe_status import discover_status
from ecrd.terminal.probing import MAX_LIMIT_S, OnTry, Probe
from ecrd.terminal.terminal import Terminal
from ecrd.transport.serial import SerialLink

__all__ = ["MAX_LIMIT_S", "PROBE_HOLD", "discover_status", "probe"]

log = logging.getLogger("ecrd.terminal")

PROBE_HOLD: Final = "probe"  # what the terminal is busy with meanwhile


async def probe(
    term: Terminal,
    pin: str,
    *,
    business_id: str | None = None,
    limit_s: float = MAX_LIMIT_S,
    on_try: OnTry | None = None,
) -> dict[str, Any]:
    """Find the settings within ``limit_s``; the result of ``terminal.probe``.
    ``business_id``: ConnectionInfo's (the QR code's), else the terminal's known one."""
    state = Probe(term.id, pin, business_id or term.target.business_id, on_try)
    run = {"serial": probe_serial, "lan": probe_lan}.get(term.cfg.transport, probe_cloud)
    with trio.move_on_after(min(limit_s, MAX_LIMIT_S)) as scope:
        async with _borrowed(term):
            await run(term, state)
    if scope.cancelled_caught:
        state.note({}, f"stopped at the time limit ({limit_s:g} s)")
    log.info("terminal=%s probe: %d tries, found %s", term.id, len(state.tried), state.found)
    return state.result()


def _borrowed(term: Terminal) -> contextlib.AbstractAsyncContextManager[None]:
    """Serial: the one port, lent by the terminal's own link for the probe (and given back
    however the probe ends). LAN and cloud: nothing to borrow."""
    own = term.links.get("serial") if term.cfg.transport == "serial" else None
    if isinstance(own, SerialLink):
        return own.lend()
    return contextlib.nullcontext()
