"""Key derivation runs on worker threads of lower priority, never on the event loop."""

from __future__ import annotations

import os
import threading

import pytest
import trio

from ecrd.protocol import crypto
from ecrd.workers import Workers


@pytest.fixture
def workers() -> Workers:
    pool = Workers(threads=2, nice=5)
    yield pool
    pool.close()


async def test_a_job_runs_on_another_thread_and_returns_its_value(workers: Workers) -> None:
    loop_thread = threading.get_native_id()
    ran_on = await workers.run(threading.get_native_id)
    assert ran_on != loop_thread


async def test_worker_threads_run_at_a_lower_priority(workers: Workers) -> None:
    def own_priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert await workers.run(own_priority) == min(base + 5, 19)
    # The loop's own thread keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


async def test_a_job_s_exception_reaches_the_caller(workers: Workers) -> None:
    with pytest.raises(crypto.WrongKey):
        await workers.run(lambda: crypto.open_legacy("QUFBQUFBQUFBQUFBQUFBQQ==", "123456"))


@pytest.mark.real_kdf  # the derivation must outlast the caller's 1 ms deadline
async def test_a_cancelled_caller_still_lets_the_job_finish(workers: Workers) -> None:
    started, done = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        crypto.derive_key("123456", b"s" * 16)
        done.set()
        return "derived"

    with trio.move_on_after(0.001) as scope:
        result = await workers.run(slow)
    # Cancellation cannot interrupt a derivation: the caller got the result instead.
    assert started.is_set() and done.is_set()
    assert result == "derived"
    assert scope.cancel_called


async def test_jobs_run_in_parallel_up_to_the_pool_size(workers: Workers) -> None:
    barrier = threading.Barrier(2, timeout=5)
    results: list[int] = []

    async def both() -> None:
        results.append(await workers.run(barrier.wait))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(both)
        nursery.start_soon(both)
    assert sorted(results) == [0, 1]
