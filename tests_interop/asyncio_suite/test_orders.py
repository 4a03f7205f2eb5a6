"""A small, ordinary pytest-asyncio test suite (strict mode), used unchanged by the recipes.

It tests an order-processing service with the usual ingredients: sync and async fixtures, a
Queue between a producer and a consumer, ``wait_for`` timeouts, retries with backoff, and
sleeps of minutes. On stock asyncio those sleeps would take most of an hour; the recipes'
conftest.py files run the same tests on ``quiesce.Loop``, where they finish at once.

Each test first checks that it runs on a quiesce loop (``on_quiesce()``), so a broken recipe
fails fast instead of sleeping for real.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Dict, List, Optional

import pytest
import pytest_asyncio

import quiesce


def on_quiesce() -> quiesce.Loop:
    """The running loop, which the recipe under test must have made a quiesce.Loop."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop), f"running on {type(loop).__name__}, not quiesce.Loop"
    return loop


class OrderService:
    """Takes orders from a queue, charges each (slowly), records the receipts."""

    def __init__(self, charge_seconds: float = 90.0) -> None:
        self.queue: asyncio.Queue[Dict[str, int]] = asyncio.Queue()
        self.receipts: List[int] = []
        self.charge_seconds = charge_seconds
        self._worker: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._worker = asyncio.ensure_future(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def _work(self) -> None:
        while True:
            order = await self.queue.get()
            await asyncio.sleep(self.charge_seconds)
            self.receipts.append(order["id"])
            self.queue.task_done()


@pytest.fixture
def order_ids() -> List[int]:
    return [101, 102, 103, 104]


@pytest_asyncio.fixture
async def service() -> AsyncIterator[OrderService]:
    on_quiesce()
    running = OrderService()
    running.start()
    yield running
    await running.stop()


@pytest.mark.asyncio
async def test_runs_on_a_quiesce_loop_with_virtual_time() -> None:
    loop = on_quiesce()
    start = loop.time()
    await asyncio.sleep(15 * 60)
    assert loop.time() - start == 15 * 60


@pytest.mark.asyncio
async def test_service_processes_the_queue(service: OrderService, order_ids: List[int]) -> None:
    loop = on_quiesce()
    start = loop.time()
    for order_id in order_ids:
        service.queue.put_nowait({"id": order_id})
    await service.queue.join()
    assert service.receipts == order_ids
    assert loop.time() - start == 4 * 90.0  # one order at a time, 90 s each


@pytest.mark.asyncio
async def test_producer_and_consumer() -> None:
    loop = on_quiesce()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    consumed: List[int] = []

    async def producer() -> None:
        for item in range(6):
            await asyncio.sleep(60)  # a new item every minute
            await queue.put(item)
        await queue.put(-1)

    async def consumer() -> None:
        while (item := await queue.get()) != -1:
            await asyncio.sleep(150)  # slower than the producer: the queue fills up
            consumed.append(item)

    start = loop.time()
    await asyncio.gather(producer(), consumer())
    assert consumed == list(range(6))
    assert loop.time() - start == 60 + 6 * 150


@pytest.mark.asyncio
async def test_wait_for_times_out() -> None:
    loop = on_quiesce()
    never = asyncio.Event()
    start = loop.time()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(never.wait(), timeout=300)
    assert loop.time() - start == 300


@pytest.mark.asyncio
async def test_wait_for_in_time() -> None:
    on_quiesce()

    async def slow_answer() -> int:
        await asyncio.sleep(120)
        return 42

    assert await asyncio.wait_for(slow_answer(), timeout=121) == 42


@pytest.mark.asyncio
async def test_retry_with_exponential_backoff() -> None:
    loop = on_quiesce()
    attempts: List[float] = []

    async def flaky() -> str:
        attempts.append(loop.time())
        if len(attempts) < 8:
            raise ConnectionError("try again")
        return "ok"

    async def with_retries() -> str:
        delay = 1.0
        while True:
            try:
                return await flaky()
            except ConnectionError:
                await asyncio.sleep(delay)
                delay *= 2

    start = loop.time()
    assert await with_retries() == "ok"
    assert [t - start for t in attempts] == [0, 1, 3, 7, 15, 31, 63, 127]


@pytest.mark.asyncio
class TestFirstCompleted:
    async def test_fastest_replica_wins(self) -> None:
        loop = on_quiesce()
        start = loop.time()

        async def replica(name: str, seconds: float) -> str:
            await asyncio.sleep(seconds)
            return name

        tasks = [asyncio.ensure_future(replica(n, s)) for n, s in [("a", 30), ("b", 10)]]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        assert [task.result() for task in done] == ["b"]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert loop.time() - start == 10

    async def test_lock_serialises_writers(self) -> None:
        on_quiesce()
        lock = asyncio.Lock()
        log: List[str] = []

        async def writer(name: str) -> None:
            async with lock:
                log.append(f"{name}+")
                await asyncio.sleep(45)
                log.append(f"{name}-")

        await asyncio.gather(writer("x"), writer("y"))
        assert log == ["x+", "x-", "y+", "y-"]


def test_plain_sync_test_is_untouched(order_ids: List[int]) -> None:
    assert sum(order_ids) == 410
