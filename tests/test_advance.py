"""``loop.advance(seconds)``: move the virtual clock, firing timers at their own instants."""

from __future__ import annotations

import asyncio
import math
from typing import Callable, List, Tuple

import pytest

import quiesce


def test_fires_due_timers_in_deadline_order_at_their_own_instant(loop: quiesce.Loop) -> None:
    fired: List[Tuple[str, float]] = []
    for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("d", 2.5)]:
        loop.call_later(delay, lambda name=name: fired.append((name, loop.time())))
    loop.advance(10)
    assert fired == [("a", 1.0), ("b", 2.0), ("d", 2.5), ("c", 3.0)]
    assert loop.time() == 10.0


def test_only_timers_inside_the_window_fire(loop: quiesce.Loop) -> None:
    fired: List[float] = []
    for delay in (1.0, 2.0, 3.0):
        loop.call_later(delay, lambda: fired.append(loop.time()))
    loop.advance(2.5)
    assert fired == [1.0, 2.0]
    assert loop.time() == 2.5
    assert [handle.when() for handle in loop._scheduled] == [3.0]
    loop.advance(0.5)
    assert fired == [1.0, 2.0, 3.0]


def test_timer_exactly_at_the_target_fires(loop: quiesce.Loop) -> None:
    fired: List[float] = []
    loop.call_later(2.0, lambda: fired.append(loop.time()))
    loop.advance(2.0)
    assert fired == [2.0]


def test_ends_at_exactly_old_time_plus_seconds(loop: quiesce.Loop) -> None:
    expected = 0.0
    for seconds in [0.1] * 10 + [1e-9, 1 / 3, 7, 0.0, 12345.678]:
        expected = expected + seconds
        loop.advance(seconds)
        assert loop.time() == expected


def test_ends_at_target_even_when_timers_fire_on_the_way(loop: quiesce.Loop) -> None:
    loop.advance(0.1)
    loop.call_later(0.2, lambda: None)
    loop.call_later(0.25, lambda: None)
    loop.advance(0.3)
    assert loop.time() == 0.1 + 0.3


def test_accepts_ints(loop: quiesce.Loop) -> None:
    loop.advance(3)
    assert loop.time() == 3.0
    assert isinstance(loop.time(), float)


def test_zero_settles_without_moving(loop: quiesce.Loop) -> None:
    ran: List[float] = []
    loop.call_soon(lambda: ran.append(loop.time()))
    loop.call_later(0, lambda: ran.append(loop.time()))
    loop.call_later(1e-12, lambda: ran.append(loop.time()))
    loop.advance(0)
    assert ran == [0.0, 0.0]
    assert loop.time() == 0.0


def test_settles_ready_work_before_moving(loop: quiesce.Loop) -> None:
    seen: List[float] = []

    async def starter() -> None:
        seen.append(loop.time())
        await asyncio.sleep(1)
        seen.append(loop.time())

    loop.create_task(starter())
    loop.advance(1)
    assert seen == [0.0, 1.0]


def test_settles_at_each_instant(loop: quiesce.Loop) -> None:
    log: List[Tuple[str, float]] = []

    def at_one() -> None:
        log.append(("timer", loop.time()))
        loop.call_soon(lambda: log.append(("soon after timer", loop.time())))
        loop.call_later(0.5, lambda: log.append(("chained timer", loop.time())))

    loop.call_later(1, at_one)
    loop.call_later(1.2, lambda: log.append(("second timer", loop.time())))
    loop.advance(2)
    assert log == [
        ("timer", 1.0),
        ("soon after timer", 1.0),
        ("second timer", 1.2),
        ("chained timer", 1.5),
    ]


def test_periodic_task(loop: quiesce.Loop) -> None:
    ticks: List[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1)
            ticks.append(loop.time())

    task = loop.create_task(ticker())
    loop.advance(0.5)
    assert ticks == []
    loop.advance(5)
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]
    loop.advance(0.5)
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    task.cancel()
    loop.run_until_blocked()


def test_tasks_woken_by_timers_run_in_between(loop: quiesce.Loop) -> None:
    log: List[Tuple[str, float]] = []
    event = asyncio.Event()

    async def waiter() -> None:
        await event.wait()
        log.append(("waiter woke", loop.time()))
        await asyncio.sleep(1)
        log.append(("waiter slept", loop.time()))

    loop.create_task(waiter())
    loop.call_later(2, event.set)
    loop.call_later(2.5, lambda: log.append(("timer", loop.time())))
    loop.advance(4)
    assert log == [("waiter woke", 2.0), ("timer", 2.5), ("waiter slept", 3.0)]


def test_equal_deadlines_fire_in_scheduling_order(loop: quiesce.Loop) -> None:
    fired: List[int] = []
    for i in range(30):
        if i % 2:
            loop.call_later(1.0, fired.append, i)
        else:
            loop.call_at(1.0, fired.append, i)
    loop.advance(1)
    assert fired == list(range(30))


def test_timer_in_the_past_fires_at_the_current_instant(loop: quiesce.Loop) -> None:
    fired: List[float] = []

    def at_two() -> None:
        loop.call_at(0.5, lambda: fired.append(loop.time()))

    loop.call_later(2, at_two)
    loop.advance(3)
    assert fired == [2.0]
    assert loop.time() == 3.0


def test_wait_for_times_out_at_exactly_its_deadline(loop: quiesce.Loop) -> None:
    outcome: List[Tuple[str, float]] = []

    async def waiter() -> None:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
        except asyncio.TimeoutError:
            outcome.append(("timeout", loop.time()))

    loop.create_task(waiter())
    loop.advance(29.999)
    assert outcome == []
    loop.advance(0.001)
    assert outcome == [("timeout", 29.999 + 0.001)]


@pytest.mark.parametrize("seconds", [-1, -1e-9, -math.inf, math.nan, math.inf])
def test_invalid_durations_are_value_errors(loop: quiesce.Loop, seconds: float) -> None:
    loop.call_later(1, lambda: None)
    with pytest.raises(ValueError):
        loop.advance(seconds)
    assert loop.time() == 0.0
    assert len(loop._scheduled) == 1


@pytest.mark.parametrize("seconds", ["1", None, b"1", [1]])
def test_non_numbers_are_type_errors(loop: quiesce.Loop, seconds: object) -> None:
    with pytest.raises(TypeError):
        loop.advance(seconds)  # type: ignore[arg-type]
    assert loop.time() == 0.0


def test_real_clock_refuses(real_loop: quiesce.Loop) -> None:
    with pytest.raises(RuntimeError, match="virtual"):
        real_loop.advance(1)


def test_budget_applies(loop: quiesce.Loop) -> None:
    async def busy() -> None:
        await asyncio.sleep(1)
        while True:
            await asyncio.sleep(0)

    task = loop.create_task(busy())
    with pytest.raises(quiesce.BudgetExceeded):
        loop.advance(2, max_steps=100)
    assert loop.time() == 1.0
    task.cancel()
    loop.run_until_blocked()


def test_seeded_advance_still_fires_in_time_order(make_loop: Callable[..., quiesce.Loop]) -> None:
    seeded = make_loop(seed=3)
    woke: List[Tuple[int, float]] = []

    async def sleeper(i: int) -> None:
        await asyncio.sleep(i)
        woke.append((i, seeded.time()))

    for i in (5, 1, 4, 2, 3):
        seeded.create_task(sleeper(i))
    seeded.advance(10)
    assert woke == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
