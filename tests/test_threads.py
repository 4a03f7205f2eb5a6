"""Threads: ``call_soon_threadsafe``, ``run_in_executor`` and friends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from typing import Callable, List, Tuple

import pytest

import quiesce


@pytest.fixture(params=["virtual", "real"])
def clock(request: pytest.FixtureRequest) -> str:
    return request.param


def test_call_soon_threadsafe_wakes_run_until_complete(
    make_loop: Callable[..., quiesce.Loop], clock: str
) -> None:
    loop = make_loop(clock=clock)
    go = threading.Event()

    async def main() -> Tuple[str, str]:
        fut = loop.create_future()
        names: List[str] = []

        def worker() -> None:
            go.wait()
            loop.call_soon_threadsafe(fut.set_result, "from thread")
            names.append(threading.current_thread().name)

        thread = threading.Thread(target=worker, name="helper")
        thread.start()
        loop.call_soon(go.set)  # only once the main task is waiting
        try:
            return await fut, threading.current_thread().name
        finally:
            thread.join()
            assert names == ["helper"]

    result, ran_in = loop.run_until_complete(main())
    assert result == "from thread"
    assert ran_in == threading.main_thread().name


def test_callback_runs_on_the_loop_thread(loop: quiesce.Loop) -> None:
    seen: List[str] = []
    thread = threading.Thread(
        target=lambda: loop.call_soon_threadsafe(
            lambda: seen.append(threading.current_thread().name)
        )
    )
    thread.start()
    thread.join()
    loop.run_until_blocked()
    assert seen == [threading.current_thread().name]


def test_call_soon_threadsafe_returns_a_cancellable_handle(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handles: List[quiesce.Handle] = []
    thread = threading.Thread(
        target=lambda: handles.append(loop.call_soon_threadsafe(ran.append, "x"))
    )
    thread.start()
    thread.join()
    (handle,) = handles
    assert isinstance(handle, quiesce.Handle)
    handle.cancel()
    loop.run_until_blocked()
    assert ran == []


def test_threadsafe_callbacks_keep_order(loop: quiesce.Loop) -> None:
    ran: List[int] = []

    def worker() -> None:
        for i in range(100):
            loop.call_soon_threadsafe(ran.append, i)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    loop.run_until_blocked()
    assert ran == list(range(100))


def test_threadsafe_and_plain_call_soon_share_one_fifo(
    make_loop: Callable[..., quiesce.Loop], clock: str
) -> None:
    # Stock asyncio appends both to one deque: a call_soon made after a call_soon_threadsafe
    # runs after it, from the loop's own thread and from another one.
    loop = make_loop(clock=clock)
    order: List[str] = []
    loop.call_soon_threadsafe(order.append, "threadsafe, same thread")
    loop.call_soon(order.append, "call_soon")
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(order.append, "thread"))
    thread.start()
    thread.join()
    loop.call_soon(order.append, "call_soon after the thread")
    loop.run_until_blocked()
    assert order == [
        "threadsafe, same thread",
        "call_soon",
        "thread",
        "call_soon after the thread",
    ]


def test_thread_that_posts_and_exits_never_reads_as_a_deadlock(
    monkeypatch: pytest.MonkeyPatch, make_loop: Callable[..., quiesce.Loop], clock: str
) -> None:
    # Regression: the idle turn checked for queued work, then listed the live threads; a
    # thread that posted and exited in between made it raise Deadlock with work queued. The
    # window is made certain here: the "thread" posts while the threads are being listed.
    loop = make_loop(clock=clock)
    future = loop.create_future()
    listed = loop._q_outside

    def post_then_list() -> quiesce._core.OutsideFacts:
        poster = threading.Thread(
            target=loop.call_soon_threadsafe, args=(future.set_result, "posted")
        )
        poster.start()
        poster.join()
        return listed()

    # A lingering thread makes the idle turn ask for the outside facts at all.
    lingering = threading.Event()
    holder = threading.Thread(target=lingering.wait)
    holder.start()
    monkeypatch.setattr(loop, "_q_outside", post_then_list)
    try:
        assert loop.run_until_complete(future) == "posted"
    finally:
        lingering.set()
        holder.join()


def test_run_in_executor_default(make_loop: Callable[..., quiesce.Loop], clock: str) -> None:
    loop = make_loop(clock=clock)

    def work(a: int, b: int) -> Tuple[int, str]:
        return a * b, threading.current_thread().name

    async def main() -> Tuple[int, str]:
        return await asyncio.get_running_loop().run_in_executor(None, work, 6, 7)

    value, thread_name = loop.run_until_complete(main())
    assert value == 42
    assert thread_name != threading.current_thread().name


def test_run_in_executor_custom_executor(loop: quiesce.Loop) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:

        async def main() -> List[int]:
            running = asyncio.get_running_loop()
            return list(
                await asyncio.gather(*(running.run_in_executor(pool, pow, i, 2) for i in range(8)))
            )

        assert loop.run_until_complete(main()) == [i * i for i in range(8)]


def test_run_in_executor_exception_propagates(loop: quiesce.Loop) -> None:
    def fail() -> None:
        raise LookupError("from the executor")

    with pytest.raises(LookupError, match="from the executor"):
        loop.run_until_complete(loop.run_in_executor(None, fail))


def test_executor_job_holds_back_the_virtual_clock(loop: quiesce.Loop) -> None:
    """While an executor job is in flight the virtual clock must not jump to a timeout that
    the job would beat in real time."""
    go = threading.Event()

    def job() -> str:
        go.wait()
        return "job"

    async def main() -> str:
        fut = asyncio.get_running_loop().run_in_executor(None, job)
        asyncio.get_running_loop().call_soon(go.set)
        return await asyncio.wait_for(fut, timeout=1000)

    assert loop.run_until_complete(main()) == "job"
    assert loop.time() < 1000


def test_to_thread(loop: quiesce.Loop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> Tuple[str, str]:
        var.set("propagated")
        return await asyncio.to_thread(lambda: (var.get(), threading.current_thread().name))

    value, name = loop.run_until_complete(main())
    assert value == "propagated"
    assert name != threading.current_thread().name


def test_run_coroutine_threadsafe(make_loop: Callable[..., quiesce.Loop], clock: str) -> None:
    loop = make_loop(clock=clock)
    go = threading.Event()
    results: List[int] = []

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> int:
        done = loop.create_future()

        def worker() -> None:
            go.wait()
            future = asyncio.run_coroutine_threadsafe(double(21), loop)
            results.append(future.result())  # blocks this thread until the loop ran it
            loop.call_soon_threadsafe(done.set_result, None)

        thread = threading.Thread(target=worker)
        thread.start()
        loop.call_soon(go.set)
        try:
            await done
        finally:
            thread.join()
        return results[0]

    assert loop.run_until_complete(main()) == 42


def test_seeded_loop_with_executor(make_loop: Callable[..., quiesce.Loop]) -> None:
    loop = make_loop(seed=123)

    async def main() -> List[int]:
        running = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(running.run_in_executor(None, abs, -i) for i in range(6)))
        )

    assert loop.run_until_complete(main()) == list(range(6))


def test_shutdown_default_executor(loop: quiesce.Loop) -> None:
    loop.run_until_complete(loop.run_in_executor(None, int, "5"))
    loop.run_until_complete(loop.shutdown_default_executor())
    # no executor threads are left behind that the loop would have to wait for
    workers = [t for t in threading.enumerate() if t is not threading.current_thread()]
    assert all(not t.name.startswith("asyncio_") for t in workers), workers


async def wait_forever() -> None:
    await asyncio.Event().wait()  # made inside the loop: Python 3.9 binds it to the loop


def test_thread_waiting_on_outside_io_ends_in_a_potential_deadlock(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    """A thread blocked reading a socket may be woken from outside and then call back, so the
    loop waits for it (up to its watchdog, shortened here) before reporting a potential
    deadlock, naming the thread; the clock does not move meanwhile (only while the thread may
    still be starting up, that is running, does it follow real time)."""
    import re
    import socket
    import time

    loop = make_loop(watchdog=0.2)
    here, there = socket.socketpair()
    thread = threading.Thread(target=there.recv, args=(1,), name="reader-thread")
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(quiesce.Deadlock) as excinfo:
            loop.run_until_complete(wait_forever())
        waited = time.monotonic() - started
    finally:
        here.send(b"x")
        thread.join()
        here.close()
        there.close()
    assert 0.2 <= waited < 10
    message = str(excinfo.value)
    assert excinfo.value.kind == "potential deadlock"
    assert message.startswith("Potential deadlock at loop time "), message
    assert "nothing has run for 0.2 s of real time" in message
    assert "'reader-thread' waiting on outside I/O" in message
    assert "[does not hold the clock]" in message
    followed = re.search(r"followed real time for ([0-9.]+) s", message)
    real_pace = float(followed.group(1)) if followed else 0.0
    # The clock moved only at real pace, while the thread ran, never while it waited.
    assert loop.time() == pytest.approx(real_pace, abs=1e-3) and real_pace < 0.2, message


def test_parked_thread_does_not_delay_a_deadlock(make_loop: Callable[..., quiesce.Loop]) -> None:
    """A thread parked on a lock or event of this process can only be woken from this process:
    with the loop blocked too, that is a deadlock now, not after the watchdog."""
    import time

    loop = make_loop(watchdog=30)
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="idle-helper")
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(quiesce.Deadlock) as excinfo:
            loop.run_until_complete(wait_forever())
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert waited < 10
    message = str(excinfo.value)
    assert excinfo.value.kind == "deadlock"
    # (A thread that has only just started may run for a moment: the clock follows it.)
    assert message.startswith("Deadlock at loop time "), message
    assert "no callback is runnable" in message
    assert loop.time() < 1.0
    assert "parked threads (listed below) can only be woken by this loop" in message
    assert "'idle-helper' parked" in message
