"""sd_notify against a real datagram socket set as NOTIFY_SOCKET."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ecrd.sdnotify import Notifier, watchdog_interval


def test_messages_arrive_on_the_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = Notifier(path)
    assert n.ready("1 terminal(s)")
    msg = server.recv(4096).decode()
    assert "READY=1" in msg.splitlines() and "STATUS=1 terminal(s)" in msg
    assert n.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    n.close()
    server.close()


def test_abstract_socket_names_work() -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0ecrd-test-notify")
    server.settimeout(2)
    n = Notifier("@ecrd-test-notify")
    assert n.status("hello")
    assert server.recv(100) == b"STATUS=hello"
    n.close()
    server.close()


def test_without_systemd_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready("x")


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None
