"""CPU pressure without the daemon: ``python -m bench._burn THREADS SECONDS``.

THREADS threads derive v2 keys (PBKDF2, which releases the GIL) back to back for SECONDS,
like the simulator's and ecrd's crypto workers during a load, then it prints the number of
derivations done. A baseline for the ping latency: what the scheduler alone does to it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time

ROUNDS = 100_000


def main(argv: list[str]) -> int:
    threads, seconds = int(argv[0]), float(argv[1])
    end = time.monotonic() + seconds
    done = [0] * threads

    def work(i: int) -> None:
        for _ in range(100_000):  # bounded in count as well as in time
            if time.monotonic() >= end:
                return
            hashlib.pbkdf2_hmac("sha256", b"260880", os.urandom(16), ROUNDS, 32)
            done[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(sum(done))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
