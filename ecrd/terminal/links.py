"""A terminal's links: built and aimed here, the one module that knows their kinds.

``Terminal`` holds its links as ``Link`` (transport/base.py) and never asks which kind it
holds. What differs between kinds is decided here:

* ``make_link`` builds a link from the terminal's config and its ``Target``;
* ``retarget`` aims a link at a new ``Target`` — LAN takes the host and port, the cloud
  the SN the gateway routes by, serial nothing (a cable does not move);
* ``aimed_at`` builds a *new* link at a target, to try a place without moving the
  terminal's own link (pairing with a QR code's address): None where the kind has nothing
  to aim (serial: the one port is the only way to that terminal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from ecrd.config import CloudConfig, LanTerminal, SerialTerminal, TerminalConfig
from ecrd.protocol.envelope import Envelope
from ecrd.transport.base import Link, Tap
from ecrd.transport.cloud import CloudLink, cloud_urls
from ecrd.transport.lan import LanLink
from ecrd.transport.serial import SerialLink

log = logging.getLogger("ecrd.terminal")


@attrs.frozen
class Target:
    """Where a terminal is, as far as ecrd knows: its LAN address and its serial number."""

    host: str | None = None
    port: int | None = None
    device_sn: str | None = None
    # The business the cloud serves it for: [cloud].business_id, else the pairing's.
    business_id: str | None = None


def make_link(
    kind: str,
    cfg: TerminalConfig,
    cloud: CloudConfig,
    target: Target,
    on_stale: Callable[[Envelope], None],
) -> Link:
    if kind == "lan":
        assert isinstance(cfg, LanTerminal)
        assert target.host is not None and target.port is not None
        return lan_link(cfg, target.host, target.port)
    if kind == "serial":
        assert isinstance(cfg, SerialTerminal)
        return SerialLink(
            cfg.device,
            baudrate=cfg.baudrate,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            rtscts=cfg.rtscts,
            frame_format=cfg.frame_format,
            on_stale=on_stale,
        )
    return cloud_link(cloud, target.device_sn, target.business_id)


def lan_link(cfg: LanTerminal, host: str, port: int, *, verify: bool = True) -> LanLink:
    return LanLink(
        host,
        port,
        path=cfg.path,
        tls=cfg.tls,
        ca_file=cfg.ca_file,
        connect_timeout=cfg.connect_timeout_s,
        verify=verify,
        keep_alive=cfg.keep_alive,
    )


def probe_link(cfg: TerminalConfig, cloud: CloudConfig, target: Target, verify: bool) -> Link:
    """A link of the probe's own, built from ``cfg`` (the entry with the settings being
    tried): LAN at the target's host and ``cfg.port``, or the cloud. Never the terminal's
    own link, so a probe cannot change the settings in force (serial: the terminal's own
    link lends the device meanwhile, ``SerialLink.lend``)."""
    if isinstance(cfg, SerialTerminal):
        return make_link("serial", cfg, cloud, target, lambda _reply: None)
    if isinstance(cfg, LanTerminal):
        assert target.host is not None
        return lan_link(cfg, target.host, cfg.port, verify=verify)
    return cloud_link(cloud, target.device_sn, target.business_id)


def cloud_link(c: CloudConfig, device_sn: str | None, business_id: str | None = None) -> CloudLink:
    info_url, command_url = cloud_urls(c.environment, c.base_url, c.command_url, c.info_url)
    return CloudLink(
        command_url,
        info_url,
        c.business_id or business_id,
        device_sn,
        ca_file=c.ca_file,
        refusal_statuses=frozenset(c.refusal_statuses),
    )


def tap(link: Link, fn: Tap) -> None:
    """Tell ``fn`` what each HTTP exchange of ``link`` looked like (a trace); serial: its
    frames are traced from the envelope."""
    if isinstance(link, LanLink | CloudLink):
        link.tap = fn


def retarget(link: Link, target: Target) -> None:
    """Aim ``link`` at ``target``; what does not concern its kind is ignored."""
    if isinstance(link, LanLink) and target.host and target.port:
        link.set_address(target.host, target.port)
    elif isinstance(link, CloudLink):
        if target.device_sn:
            link.set_device_sn(target.device_sn)
        if target.business_id:
            link.set_business_id(target.business_id)


def aimed_at(
    link: Link, target: Target, cfg: TerminalConfig, cloud: CloudConfig
) -> LanLink | CloudLink | None:
    """A new link of ``link``'s kind at ``target``, or None where there is nothing to aim."""
    if isinstance(link, LanLink) and isinstance(cfg, LanTerminal) and target.host:
        return lan_link(cfg, target.host, target.port or cfg.port)
    if isinstance(link, CloudLink):
        return cloud_link(
            cloud, target.device_sn or link.device_sn, target.business_id or link.business_id
        )
    return None
