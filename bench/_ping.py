"""A separate ping client: ``python -m bench._ping SOCKET SECONDS [INTERVAL_S [DELAY_S]]``.

Runs as its own process (standard library only, so it starts fast and shares no GIL or
event loop with the load driver). It connects, waits DELAY_S (default 0), then sends one
``ping`` every INTERVAL_S (default 0.02) on that connection, on a fixed cadence (a late
reply is followed by the next ping at once), for SECONDS, and prints one JSON line:
``{"latencies": [seconds, ...], "errors": n}``.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def main(argv: list[str]) -> int:
    path, seconds = argv[0], float(argv[1])
    interval = float(argv[2]) if len(argv) > 2 else 0.02
    delay = float(argv[3]) if len(argv) > 3 else 0.0
    latencies: list[float] = []
    errors = 0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    reader = sock.makefile("rb")
    time.sleep(delay)
    start = time.perf_counter()
    end = start + seconds
    limit = int(seconds / interval) + 1  # bounded in count as well as in time
    for i in range(limit):
        now = time.perf_counter()
        if now >= end:
            break
        due = start + i * interval
        if due > now:
            time.sleep(due - now)
        line = json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}).encode() + b"\n"
        t0 = time.perf_counter()
        sock.sendall(line)
        reply = json.loads(reader.readline())
        latencies.append(time.perf_counter() - t0)
        if reply.get("id") != i or "result" not in reply:
            errors += 1
    reader.close()
    sock.close()
    print(json.dumps({"latencies": latencies, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
