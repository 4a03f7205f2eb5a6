"""``loop.run_until_blocked()``: run everything runnable at this instant, then return."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Iterator, List, Tuple

import pytest

import quiesce


@pytest.fixture
def socket_pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_seed_scenario_event_waiter(loop: quiesce.Loop, capsys: pytest.CaptureFixture[str]) -> None:
    """The question that started it all: a task waits on an Event; run until blocked, check
    it is waiting, set the event, run until blocked, check it finished."""
    event = asyncio.Event()

    async def worker() -> str:
        print("waiting")
        await event.wait()
        print("done")
        return "finished"

    task = loop.create_task(worker())
    loop.run_until_blocked()
    assert capsys.readouterr().out == "waiting\n"
    assert not task.done()

    event.set()
    loop.run_until_blocked()
    assert capsys.readouterr().out == "done\n"
    assert task.done()
    assert task.result() == "finished"


def test_returns_none_and_is_idempotent_when_blocked(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    loop.call_soon(ran.append, 1)
    assert loop.run_until_blocked() is None
    assert loop.run_until_blocked() is None
    assert ran == [1]


def test_runs_chains_of_plain_callbacks(loop: quiesce.Loop) -> None:
    calls: List[int] = []

    def link(n: int) -> None:
        calls.append(n)
        if n < 500:
            loop.call_soon(link, n + 1)

    loop.call_soon(link, 1)
    loop.run_until_blocked()
    assert calls == list(range(1, 501))
    assert len(loop._ready) == 0


def test_runs_tasks_that_wake_each_other(loop: quiesce.Loop) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    received: List[int] = []

    async def producer() -> None:
        for i in range(20):
            await queue.put(i)
        await queue.put(-1)

    async def consumer() -> None:
        while True:
            item = await queue.get()
            if item < 0:
                return
            received.append(item)

    prod = loop.create_task(producer())
    cons = loop.create_task(consumer())
    loop.run_until_blocked()
    assert prod.done() and cons.done()
    assert received == list(range(20))


def test_stops_at_a_task_that_needs_time_to_pass(loop: quiesce.Loop) -> None:
    steps: List[str] = []

    async def sleeper() -> None:
        steps.append("before")
        await asyncio.sleep(10)
        steps.append("after")

    task = loop.create_task(sleeper())
    loop.run_until_blocked()
    assert steps == ["before"]
    assert not task.done()
    assert loop.time() == 0.0
    assert len(loop._scheduled) == 1


def test_never_moves_the_clock(loop: quiesce.Loop) -> None:
    fired: List[str] = []
    loop.call_later(0.001, fired.append, "soon")
    loop.call_at(1e9, fired.append, "far")
    for _ in range(3):
        loop.run_until_blocked()
    assert loop.time() == 0.0
    assert fired == []
    assert len(loop._scheduled) == 2


def test_runs_timers_already_due(loop: quiesce.Loop) -> None:
    fired: List[Tuple[str, float]] = []
    loop.advance(5)
    loop.call_at(2.0, lambda: fired.append(("past", loop.time())))
    loop.call_later(0, lambda: fired.append(("now", loop.time())))
    loop.call_at(5.0, lambda: fired.append(("exactly now", loop.time())))
    loop.call_later(0.5, lambda: fired.append(("later", loop.time())))
    loop.run_until_blocked()
    assert fired == [("past", 5.0), ("now", 5.0), ("exactly now", 5.0)]
    assert loop.time() == 5.0
    assert len(loop._scheduled) == 1


def test_runs_timers_that_become_due_during_the_settle(loop: quiesce.Loop) -> None:
    fired: List[str] = []

    def first() -> None:
        fired.append("first")
        loop.call_later(0, fired.append, "zero-delay timer")

    loop.call_soon(first)
    loop.run_until_blocked()
    assert fired == ["first", "zero-delay timer"]


def test_work_after_a_sleep_zero_chain(loop: quiesce.Loop) -> None:
    counter = [0]

    async def spinner(n: int) -> int:
        for _ in range(n):
            counter[0] += 1
            await asyncio.sleep(0)
        return n

    tasks = [loop.create_task(spinner(100)) for _ in range(5)]
    loop.run_until_blocked()
    assert counter[0] == 500
    assert [task.result() for task in tasks] == [100] * 5


def test_busy_loop_exceeds_the_budget(loop: quiesce.Loop) -> None:
    async def busy() -> None:
        while True:
            await asyncio.sleep(0)

    task = loop.create_task(busy(), name="spinner")
    with pytest.raises(quiesce.BudgetExceeded) as excinfo:
        loop.run_until_blocked(max_steps=1000)
    assert isinstance(excinfo.value, RuntimeError)
    assert task in excinfo.value.tasks
    assert "spinner" in str(excinfo.value)
    assert not loop.is_running()
    assert loop.time() == 0.0

    # The loop stays usable: cancel the spinner and settle.
    task.cancel()
    loop.run_until_blocked()
    assert task.cancelled()


def test_budget_counts_callbacks_exactly(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(5):
        loop.call_soon(ran.append, i)
    loop.run_until_blocked(max_steps=5)  # exactly the budget: fine
    assert ran == [0, 1, 2, 3, 4]

    for i in range(6):
        loop.call_soon(ran.append, 10 + i)
    with pytest.raises(quiesce.BudgetExceeded):
        loop.run_until_blocked(max_steps=5)  # one more than the budget
    assert ran[5:] == [10, 11, 12, 13, 14]
    loop.run_until_blocked()
    assert ran[5:] == [10, 11, 12, 13, 14, 15]


def test_budget_is_per_call(loop: quiesce.Loop) -> None:
    for _ in range(3):
        for _ in range(4):
            loop.call_soon(lambda: None)
        loop.run_until_blocked(max_steps=4)


def test_cancelled_handles_do_not_count_against_the_budget(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(10):
        loop.call_soon(ran.append, i).cancel()
    loop.call_soon(ran.append, 99)
    loop.run_until_blocked(max_steps=1)
    assert ran == [99]


def test_exact_budget_with_a_cancelled_handle_left_over(loop: quiesce.Loop) -> None:
    """Exactly ``max_steps`` callbacks run; the one left in the queue is cancelled and never
    runs, so the budget was not exceeded."""
    ran: List[int] = []
    for i in range(5):
        loop.call_soon(ran.append, i)
    loop.call_soon(ran.append, 99).cancel()
    loop.run_until_blocked(max_steps=5)
    assert ran == [0, 1, 2, 3, 4]


def test_no_budget_with_max_steps_none(loop: quiesce.Loop) -> None:
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] < 20_000:
            loop.call_soon(tick)

    loop.call_soon(tick)
    loop.run_until_blocked(max_steps=None)
    assert count[0] == 20_000


def test_default_budget_is_documented_value() -> None:
    import inspect

    default = inspect.signature(quiesce.Loop.run_until_blocked).parameters["max_steps"].default
    assert default == quiesce.DEFAULT_MAX_STEPS == 10_000_000


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_invalid_max_steps(loop: quiesce.Loop, bad: object) -> None:
    loop.call_soon(lambda: None)
    with pytest.raises((TypeError, ValueError)):
        loop.run_until_blocked(max_steps=bad)  # type: ignore[arg-type]
    assert len(loop._ready) == 1


def test_runs_threadsafe_work_already_queued(loop: quiesce.Loop) -> None:
    import threading

    ran: List[str] = []
    thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(ran.append, "from thread"))
    thread.start()
    thread.join()
    loop.run_until_blocked()
    assert ran == ["from thread"]


def test_runs_io_that_is_already_ready(
    loop: quiesce.Loop, socket_pair: Tuple[socket.socket, socket.socket]
) -> None:
    """Spec: run_until_blocked runs "I/O already ready (polled without waiting)"."""
    reader, writer = socket_pair
    received: List[bytes] = []
    loop.add_reader(reader.fileno(), lambda: received.append(reader.recv(100)))
    try:
        writer.send(b"ping")
        loop.run_until_blocked()
        assert received == [b"ping"]
    finally:
        loop.remove_reader(reader.fileno())


def test_stream_reader_gets_data_already_in_the_socket(
    loop: quiesce.Loop, socket_pair: Tuple[socket.socket, socket.socket]
) -> None:
    reader_sock, writer_sock = socket_pair

    async def read_line() -> bytes:
        stream_reader, stream_writer = await asyncio.open_connection(sock=reader_sock)
        try:
            return await stream_reader.readline()
        finally:
            stream_writer.close()

    task = loop.create_task(read_line())
    loop.run_until_blocked()
    assert not task.done()
    writer_sock.send(b"hello\n")
    loop.run_until_blocked()
    assert task.done()
    assert task.result() == b"hello\n"


def test_io_is_polled_alongside_ready_callbacks(
    loop: quiesce.Loop, socket_pair: Tuple[socket.socket, socket.socket]
) -> None:
    """Control for the two tests above: with a callback queued, ready I/O is picked up."""
    reader, writer = socket_pair
    received: List[bytes] = []
    loop.add_reader(reader.fileno(), lambda: received.append(reader.recv(100)))
    try:
        writer.send(b"ping")
        loop.call_soon(lambda: None)
        loop.run_until_blocked()
        assert received == [b"ping"]
    finally:
        loop.remove_reader(reader.fileno())


def test_on_the_real_clock(real_loop: quiesce.Loop) -> None:
    fired: List[str] = []
    real_loop.call_later(0, fired.append, "due")
    real_loop.call_later(3600, fired.append, "not due")
    event = asyncio.Event()

    async def waiter() -> None:
        await event.wait()
        fired.append("woken")

    real_loop.create_task(waiter())
    real_loop.run_until_blocked()
    assert fired == ["due"]
    event.set()
    real_loop.run_until_blocked()
    assert fired == ["due", "woken"]


def test_seeded_loop_runs_everything(make_loop: Callable[..., quiesce.Loop]) -> None:
    seeded = make_loop(seed=7)
    done: List[int] = []

    async def worker(i: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        done.append(i)

    for i in range(8):
        seeded.create_task(worker(i))
    seeded.run_until_blocked()
    assert sorted(done) == list(range(8))
