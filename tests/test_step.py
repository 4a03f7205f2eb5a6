"""``loop.step()``: run exactly one callback; say whether something ran."""

from __future__ import annotations

import asyncio
import socket
from typing import List

import quiesce


def test_empty_loop_runs_nothing(loop: quiesce.Loop) -> None:
    assert loop.step() is False
    assert loop.step() is False
    assert loop.time() == 0.0


def test_runs_one_callback_at_a_time_in_fifo_order(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    for name in "abc":
        loop.call_soon(ran.append, name)
    assert loop.step() is True
    assert ran == ["a"]
    assert len(loop._ready) == 2
    assert loop.step() is True
    assert ran == ["a", "b"]
    assert loop.step() is True
    assert ran == ["a", "b", "c"]
    assert loop.step() is False
    assert ran == ["a", "b", "c"]


def test_runs_one_link_of_a_chain(loop: quiesce.Loop) -> None:
    ran: List[int] = []

    def link(n: int) -> None:
        ran.append(n)
        loop.call_soon(link, n + 1)

    loop.call_soon(link, 0)
    for expected in range(5):
        assert loop.step() is True
        assert ran == list(range(expected + 1))
    loop._ready.clear()


def test_skips_cancelled_handles(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    loop.call_soon(ran.append, "cancelled-1").cancel()
    loop.call_soon(ran.append, "cancelled-2").cancel()
    loop.call_soon(ran.append, "live")
    assert loop.step() is True
    assert ran == ["live"]


def test_only_cancelled_handles_means_nothing_ran(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    loop.call_soon(ran.append, "x").cancel()
    assert loop.step() is False
    assert ran == []


def test_advances_a_task_one_step_at_a_time(loop: quiesce.Loop) -> None:
    trace: List[int] = []

    async def stepper() -> str:
        trace.append(1)
        await asyncio.sleep(0)
        trace.append(2)
        await asyncio.sleep(0)
        trace.append(3)
        return "ok"

    task = loop.create_task(stepper())
    assert trace == []
    assert loop.step() is True
    assert trace == [1]
    assert loop.step() is True
    assert trace == [1, 2]
    assert loop.step() is True
    assert trace == [1, 2, 3]
    assert task.done() and task.result() == "ok"
    assert loop.step() is False


def test_runs_a_due_timer_but_not_a_future_one(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    loop.call_later(1, ran.append, "future")
    loop.call_later(0, ran.append, "due")
    assert loop.step() is True
    assert ran == ["due"]
    assert loop.step() is False
    assert ran == ["due"]
    assert loop.time() == 0.0
    assert len(loop._scheduled) == 1


def test_ready_callbacks_before_due_timers(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    loop.call_later(0, ran.append, "timer")
    loop.call_soon(ran.append, "soon")
    assert loop.step() is True
    assert ran == ["soon"]
    assert loop.step() is True
    assert ran == ["soon", "timer"]


def test_never_moves_the_clock(loop: quiesce.Loop) -> None:
    loop.call_later(5, lambda: None)
    for _ in range(3):
        loop.step()
    assert loop.time() == 0.0
    assert len(loop._scheduled) == 1


def test_returns_a_bool(loop: quiesce.Loop) -> None:
    loop.call_soon(lambda: None)
    assert type(loop.step()) is bool
    assert type(loop.step()) is bool


def test_polls_io_that_is_already_ready(loop: quiesce.Loop) -> None:
    """``step()`` documents that it polls due timers and ready I/O when nothing is queued."""
    reader, writer = socket.socketpair()
    received: List[bytes] = []
    try:
        reader.setblocking(False)
        loop.add_reader(reader.fileno(), lambda: received.append(reader.recv(100)))
        writer.send(b"x")
        assert loop.step() is True
        assert received == [b"x"]
    finally:
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()


def test_step_then_run_until_blocked(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(4):
        loop.call_soon(ran.append, i)
    loop.step()
    assert ran == [0]
    loop.run_until_blocked()
    assert ran == [0, 1, 2, 3]
