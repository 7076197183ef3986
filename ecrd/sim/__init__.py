"""A simulated Wonder payment terminal, for tests, benchmarks and demos (design.md §7).

It speaks the real protocol over real links: HTTP on loopback (LAN), the frame protocol
on a pty pair (RS232), and a fake cloud gateway. See docs/simulator.md.

Layout: ``terminal`` (the link-independent behaviour: pairing, crypto, dispatch),
``payments`` (money actions and the ledger), ``faults`` (what can go wrong), ``shaping``
(the reply a link sends, reshaped by faults), ``strict`` (what the vendor's document
requires, for ``strict=True``), ``http`` (a tiny h11 server), ``lan``/``serial``/``cloud``
(the links), ``control`` (the control API), ``simulator`` (several terminals as one),
``probe`` (a minimal client), ``__main__`` (CLI).
"""

from ecrd.sim.cloud import COMMAND_PATH, INFO_PATH, serve_cloud
from ecrd.sim.control import serve_control
from ecrd.sim.faults import FAULTS, MAGIC_CENTS, Fault, FaultError
from ecrd.sim.lan import LAN_PATH, serve_lan
from ecrd.sim.serial import SimCable, serve_serial
from ecrd.sim.shaping import Reply
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import SimTerminal

__all__ = [
    "COMMAND_PATH",
    "FAULTS",
    "INFO_PATH",
    "LAN_PATH",
    "MAGIC_CENTS",
    "Fault",
    "FaultError",
    "Reply",
    "SimCable",
    "SimTerminal",
    "Simulator",
    "serve_cloud",
    "serve_control",
    "serve_lan",
    "serve_serial",
]
