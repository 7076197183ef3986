"""The errors every call may raise: ``EcrdError``, the base of one class per reason
(``_api.py``), and ``ConnectionLost``, which is the client's own."""

from __future__ import annotations

from typing import Any


class EcrdError(Exception):
    """An error reply from ecrd. ``reason`` is the stable string to switch on (the class
    is the reason's own, e.g. ``TimeoutOutcomeUnknown``); ``data`` holds the rest
    (``data["transaction"]`` for money errors)."""

    reason_ = "error"

    def __init__(self, error: dict[str, Any]) -> None:
        self.code: int = error.get("code", -32603)
        self.message: str = error.get("message", "")
        self.data: dict[str, Any] = error.get("data") or {}
        self.reason: str = self.data.get("reason", self.reason_)
        super().__init__(f"{self.message} [{self.reason}]")


class ConnectionLost(EcrdError):
    """The connection ended before the reply came. A payment sent goes on: fetch its
    outcome with ``transaction_get`` (same ``reference_id``) before charging again."""

    reason_ = "connection_lost"

    def __init__(self, why: str) -> None:
        super().__init__({"code": -32000, "message": why, "data": {"reason": self.reason_}})


class HttpRefused(EcrdError):
    """The HTTP endpoint refused the request before it reached the API (``status``: 401
    without a good token, 403 for an origin or host it does not allow, ...)."""

    reason_ = "http_refused"

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        super().__init__(
            {
                "code": -32000,
                "message": f"HTTP {status}: {body[:200]}",
                "data": {"reason": self.reason_, "status": status},
            }
        )
