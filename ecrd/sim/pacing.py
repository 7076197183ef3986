"""Writing bytes at a given rate, to mimic a slow serial line or a dribbling peer.

The data is cut into chunks of about 10 ms worth of bytes (at least one byte) and each
chunk is followed by the pause that keeps the average at ``bytes_per_s``; so a reader sees
the bytes trickle in, in many small pieces, as it would from a real UART.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

TICK = 0.01  # seconds of line time per chunk


async def write_paced(
    send_all: Callable[[bytes], Awaitable[None]], data: bytes, bytes_per_s: float | None
) -> None:
    if not bytes_per_s:
        await send_all(data)
        return
    chunk = max(1, int(bytes_per_s * TICK))
    deadline = trio.current_time()
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        await send_all(piece)
        # Pace against an absolute schedule so scheduling jitter does not accumulate.
        deadline += len(piece) / bytes_per_s
        await trio.sleep_until(deadline)
