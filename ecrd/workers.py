"""Long-lived worker threads fed by a queue: the CPU-bound part of the protocol (v2 key
derivation, ~20–60 ms each, at low priority) and the journal's writer (one thread, so its
calls run in order).

Why not ``trio.to_thread``: derivations are pure CPU, and under load (32 terminals
selling) a thread per core deriving at normal priority crowds out the event loop's thread
too, so a ``ping`` waits behind PBKDF2 (measured p99 > 20 ms in bench/daemon.py). These
threads lower their own scheduling priority (Linux nice is per thread) so the loop, which
only ever does short work, always runs first. Trio's shared thread cache cannot be used
for this: a thread that lowered its priority cannot raise it again unprivileged.

The journal's writer is one of these too, at normal priority: a payment makes three journal
calls, and trio's thread cache pays for a thread lookup, a limiter, a context copy and an OS
thread rename on every hop (measured: ~0.4 ms of CPU per sale, bench/profile.py).

Invariants: at most ``threads`` jobs run at once, started in the order they were queued
(one thread: run in that order); a job cannot be cancelled once queued (its caller waits
for it, as with ``abandon_on_cancel=False``); the loop never blocks.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")
Job = Callable[[], None]


class Workers:
    def __init__(
        self, threads: int | None = None, nice: int = 10, name: str = "ecrd-crypto"
    ) -> None:
        self.size = threads or os.cpu_count() or 2
        self.nice = nice
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        if self.nice:
            with contextlib.suppress(OSError):  # not permitted, or not Linux: run as we are
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while (job := self._jobs.get()) is not None:
            job()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread and return (or raise) its outcome."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._threads:
            self._start()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def job() -> None:
            result = outcome.capture(fn)
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put(job)

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # a derivation cannot be interrupted

        # reschedule() delivers the job's outcome; waking up unwraps it (value or raise).
        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def close(self) -> None:
        with self._lock:
            for _ in self._threads:
                self._jobs.put(None)
            self._threads.clear()
