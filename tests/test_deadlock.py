"""``quiesce.Deadlock``: raised instead of hanging when the awaited future can never complete."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Callable, List

import pytest

import quiesce

SOURCE = Path(__file__).read_text().splitlines()


def line_of(marker: str) -> int:
    """The line number of the line ending in ``# <marker>``."""
    hits = [n for n, text in enumerate(SOURCE, start=1) if text.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


async def wait_for_event(event: asyncio.Event) -> None:
    await event.wait()  # at:event


async def get_from(queue: asyncio.Queue[int]) -> int:
    return await queue.get()  # at:queue


async def await_task(task: asyncio.Task[None]) -> None:
    await task  # at:task


def test_event_that_is_never_set(loop: quiesce.Loop) -> None:
    event = asyncio.Event()

    def never_wait(timeout: object) -> None:
        pytest.fail("a deadlock is reported at once, without waiting in real time")

    loop._q_wait = never_wait  # type: ignore[method-assign]
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(wait_for_event(event))
    error = excinfo.value
    assert isinstance(error, RuntimeError)
    assert len(error.tasks) == 1
    (task,) = error.tasks
    assert not task.done()
    assert task.get_coro().__qualname__ == "wait_for_event"


def test_message_lists_every_pending_task(loop: quiesce.Loop) -> None:
    event = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def main() -> None:
        waiter = asyncio.get_running_loop().create_task(wait_for_event(event), name="the-waiter")
        asyncio.get_running_loop().create_task(get_from(queue), name="the-getter")
        await await_task(waiter)

    main_task = loop.create_task(main(), name="the-main")
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(main_task)
    error = excinfo.value
    message = str(error)

    names = sorted(task.get_name() for task in error.tasks)
    assert names == ["the-getter", "the-main", "the-waiter"]
    pending = {task for task in asyncio.all_tasks(loop) if not task.done()}
    assert set(error.tasks) == pending

    this_file = Path(__file__).name
    for name, coro_name, marker, awaits in [
        ("the-waiter", "wait_for_event", "at:event", r"Event\.wait\(\)"),
        ("the-getter", "get_from", "at:queue", r"Queue\.get\(\)"),
        ("the-main", "main", "at:task", r"Task 'the-waiter'"),
    ]:
        block = next(b for b in message.split("\n\n") if b.startswith(f"Task {name!r}"))
        assert f"coroutine {coro_name}()" in block or f"{coro_name}()" in block, block
        assert f"{this_file}:{line_of(marker)}" in block, block
        assert re.search(r"awaiting: .*" + awaits, block), block


def test_lock_ordering_deadlock(loop: quiesce.Loop) -> None:
    async def worker(first: asyncio.Lock, second: asyncio.Lock, go: asyncio.Event) -> None:
        async with first:
            await go.wait()
            async with second:
                pass

    async def main() -> None:
        a, b = asyncio.Lock(), asyncio.Lock()
        go = asyncio.Event()
        running = asyncio.get_running_loop()
        one = running.create_task(worker(a, b, go), name="one")
        two = running.create_task(worker(b, a, go), name="two")
        await asyncio.sleep(0)
        go.set()
        await asyncio.gather(one, two)

    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(main())
    message = str(excinfo.value)
    assert "Task 'one'" in message and "Task 'two'" in message
    assert message.count("Lock.acquire()") == 2


def test_bare_future_that_nobody_resolves(loop: quiesce.Loop) -> None:
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(loop.create_future())
    assert excinfo.value.tasks == ()


def test_run_forever_with_nothing_to_do(loop: quiesce.Loop) -> None:
    with pytest.raises(quiesce.Deadlock):
        loop.run_forever()
    assert not loop.is_running()


def test_done_tasks_are_not_listed(loop: quiesce.Loop) -> None:
    async def quick() -> int:
        return 1

    finished = loop.create_task(quick(), name="finished")
    loop.run_until_blocked()
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(wait_for_event(asyncio.Event()))
    assert finished not in excinfo.value.tasks
    assert "finished" not in str(excinfo.value)


def test_loop_is_usable_after_a_deadlock(loop: quiesce.Loop) -> None:
    event = asyncio.Event()
    task = loop.create_task(wait_for_event(event))
    with pytest.raises(quiesce.Deadlock):
        loop.run_until_complete(task)
    event.set()
    loop.run_until_complete(task)
    assert task.done() and task.result() is None


def test_pending_timer_is_not_a_deadlock(loop: quiesce.Loop) -> None:
    event = asyncio.Event()
    loop.call_later(3600, event.set)
    loop.run_until_complete(wait_for_event(event))
    assert loop.time() == 3600.0


def test_timer_that_wakes_nothing_ends_in_a_deadlock(loop: quiesce.Loop) -> None:
    fired: List[float] = []
    loop.call_later(5, lambda: fired.append(loop.time()))
    with pytest.raises(quiesce.Deadlock):
        loop.run_until_complete(wait_for_event(asyncio.Event()))
    assert fired == [5.0]


def test_run_until_blocked_never_reports_a_deadlock(loop: quiesce.Loop) -> None:
    task = loop.create_task(wait_for_event(asyncio.Event()))
    loop.run_until_blocked()
    assert not task.done()


def test_executor_job_in_flight_is_not_a_deadlock(loop: quiesce.Loop) -> None:
    go = threading.Event()

    def job() -> str:
        go.wait()
        return "job done"

    async def main() -> str:
        fut = asyncio.get_running_loop().run_in_executor(None, job)
        asyncio.get_running_loop().call_soon(go.set)
        return await fut

    assert loop.run_until_complete(main()) == "job done"


def test_thread_that_will_call_back_is_not_a_deadlock(loop: quiesce.Loop) -> None:
    go = threading.Event()

    async def main() -> str:
        fut = loop.create_future()

        def worker() -> None:
            go.wait()
            loop.call_soon_threadsafe(fut.set_result, "from thread")

        thread = threading.Thread(target=worker)
        thread.start()
        loop.call_soon(go.set)
        try:
            return await fut
        finally:
            thread.join()

    assert loop.run_until_complete(main()) == "from thread"


def test_seeded_loop_reports_deadlocks(make_loop: Callable[..., quiesce.Loop]) -> None:
    seeded = make_loop(seed=99)

    async def main() -> None:
        await wait_for_event(asyncio.Event())

    with pytest.raises(quiesce.Deadlock) as excinfo:
        seeded.run_until_complete(main())
    assert len(excinfo.value.tasks) == 1


def test_deadlock_carries_tasks_tuple() -> None:
    error = quiesce.Deadlock("message")
    assert error.tasks == ()
    assert str(error) == "message"
