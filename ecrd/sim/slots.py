"""One simulated terminal and the local link it is served on (a LAN port, a pty)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import attrs

from ecrd.protocol.frames import FrameFormat
from ecrd.sim.lan import LAN_PATH
from ecrd.sim.serial import SimCable
from ecrd.sim.terminal import LinkKind, SimTerminal


@attrs.define
class Slot:
    """One terminal and the local link it is served on."""

    terminal: SimTerminal
    link: LinkKind
    lan_port: int = 0
    lan_path: str = LAN_PATH
    lan_tls: ssl.SSLContext | None = None  # https with this server context
    lan_wrap: bool = False  # replies wrapped as the cloud's {code, message, data}
    symlink: Path | None = None
    fmt: FrameFormat = attrs.field(factory=FrameFormat)
    pace_bps: float | None = None
    baudrate: int | None = None  # serial: answers only at this speed
    strict_cmd: bool = False  # serial: ignores frames with another cmd
    serial: SimCable | None = None  # set once the pty is open

    def describe(self, host: str) -> dict[str, Any]:
        t = self.terminal
        out: dict[str, Any] = {
            "sn": t.sn,
            "link": self.link,
            "scheme": t.scheme,
            "business_id": t.business_id,
            # The pairing code on the terminal's screen: printing it is the screen's job.
            "pin1": t.pin1,
            "qr": t.qr_json(),
        }
        if self.link == "lan":
            out |= {
                "host": host,
                "port": self.lan_port,
                "path": self.lan_path,
                "tls": self.lan_tls is not None,
                "wrap": self.lan_wrap,
                "url": f"{'https' if self.lan_tls else 'http'}://{host}:{self.lan_port}"
                f"{self.lan_path}",
            }
        elif self.link == "serial":
            out |= {
                "device": self.serial.path if self.serial else None,
                "slave": self.serial.slave_path if self.serial else None,
                "plugged": self.serial.plugged if self.serial else False,
                "frame": {
                    "cmd": self.fmt.cmd,
                    "byteorder": self.fmt.byteorder,
                    "crc": self.fmt.crc,
                },
                "pace_bps": self.pace_bps,
            }
        return out
