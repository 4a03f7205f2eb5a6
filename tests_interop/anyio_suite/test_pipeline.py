"""A small, ordinary anyio test suite (anyio's pytest plugin), used unchanged by the recipe.

Task groups, memory object streams, ``fail_after`` / ``move_on_after`` timeouts, an async
fixture, and sleeps of minutes. tests_interop/anyio/conftest.py runs it on ``quiesce.Loop``,
where the sleeps finish at once. Each test first checks that it runs on a quiesce loop
(``on_quiesce()``), so a broken recipe fails fast instead of sleeping for real.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, List

import anyio
import pytest

import quiesce

pytestmark = pytest.mark.anyio


def on_quiesce() -> quiesce.Loop:
    """The running loop, which the recipe under test must have made a quiesce.Loop."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, quiesce.Loop), f"running on {type(loop).__name__}, not quiesce.Loop"
    return loop


@pytest.fixture
async def warmed_cache() -> AsyncIterator[List[str]]:
    on_quiesce()
    cache: List[str] = []
    await anyio.sleep(120)  # two minutes of warming up
    cache.append("warm")
    yield cache
    await anyio.sleep(30)
    cache.clear()


async def test_runs_on_a_quiesce_loop_with_virtual_time() -> None:
    on_quiesce()
    start = anyio.current_time()
    await anyio.sleep(20 * 60)
    assert anyio.current_time() - start == 20 * 60


async def test_async_fixture(warmed_cache: List[str]) -> None:
    on_quiesce()
    assert warmed_cache == ["warm"]


async def test_pipeline_with_a_memory_stream() -> None:
    on_quiesce()
    send, receive = anyio.create_memory_object_stream[int](1)
    received: List[int] = []
    start = anyio.current_time()

    async def produce() -> None:
        async with send:
            for item in range(5):
                await anyio.sleep(60)
                await send.send(item)

    async def consume() -> None:
        async with receive:
            async for item in receive:
                await anyio.sleep(10)
                received.append(item)

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        group.start_soon(consume)
    assert received == [0, 1, 2, 3, 4]
    assert anyio.current_time() - start == 5 * 60 + 10


async def test_fail_after_times_out() -> None:
    on_quiesce()
    never = anyio.Event()
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(300):
            await never.wait()
    assert anyio.current_time() - start == 300


async def test_move_on_after_cancels_the_slow_part() -> None:
    on_quiesce()
    done: List[str] = []
    with anyio.move_on_after(90) as scope:
        await anyio.sleep(60)
        done.append("first minute")
        await anyio.sleep(60)
        done.append("second minute")
    assert scope.cancelled_caught
    assert done == ["first minute"]


async def test_task_group_cancels_siblings_on_error() -> None:
    on_quiesce()
    finished: List[str] = []

    async def slow() -> None:
        try:
            await anyio.sleep(3600)
            finished.append("slow")
        finally:
            finished.append("slow cleaned up")

    async def failing() -> None:
        await anyio.sleep(5)
        raise ValueError("boom")

    with pytest.raises(Exception) as caught:
        async with anyio.create_task_group() as group:
            group.start_soon(slow)
            group.start_soon(failing)
    leaves = getattr(caught.value, "exceptions", [caught.value])
    assert [type(exc) for exc in leaves] == [ValueError]
    assert finished == ["slow cleaned up"]
