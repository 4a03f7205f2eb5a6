"""``advance_to_next_timer``, ``run_until_idle``, ``background`` and
``wait_all_tasks_blocked``."""

from __future__ import annotations

import asyncio
from typing import Callable, List

import pytest

import quiesce


async def heartbeat(beats: List[float], period: float = 1.0) -> None:
    while True:
        await asyncio.sleep(period)
        beats.append(asyncio.get_running_loop().time())


# -- advance_to_next_timer -------------------------------------------------------------------


def test_advance_to_next_timer_moves_to_each_deadline(loop: quiesce.Loop) -> None:
    fired: List[float] = []
    for delay in (5.0, 2.0, 2.0):
        loop.call_later(delay, lambda: fired.append(loop.time()))
    assert loop.advance_to_next_timer() == 2.0
    assert fired == [2.0, 2.0]  # both timers of that instant
    assert loop.advance_to_next_timer() == 5.0
    assert fired == [2.0, 2.0, 5.0]
    assert loop.advance_to_next_timer() is None
    assert loop.time() == 5.0


def test_advance_to_next_timer_settles_first(loop: quiesce.Loop) -> None:
    async def sleeper() -> None:
        await asyncio.sleep(7)

    task = loop.create_task(sleeper())
    assert loop.advance_to_next_timer() == 7.0  # the task ran, made its timer, woke at 7
    assert task.done()


def test_advance_to_next_timer_ignores_infinite_timers(loop: quiesce.Loop) -> None:
    loop.call_later(float("inf"), lambda: None)
    assert loop.advance_to_next_timer() is None
    assert loop.time() == 0.0


def test_advance_to_next_timer_refuses_the_real_clock(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    with pytest.raises(RuntimeError, match="clock='real'"):
        make_loop(clock="real").advance_to_next_timer()


# -- run_until_idle --------------------------------------------------------------------------


def test_run_until_idle_runs_every_sleep(loop: quiesce.Loop) -> None:
    done: List[float] = []

    async def worker(delay: float) -> None:
        for _ in range(3):
            await asyncio.sleep(delay)
        done.append(asyncio.get_running_loop().time())

    for delay in (10.0, 20.0):
        loop.create_task(worker(delay))
    loop.run_until_idle()
    assert done == [30.0, 60.0]
    assert loop.time() == 60.0
    assert loop.report().tasks == () and loop.report().timers == ()


def test_run_until_idle_on_an_idle_loop_returns_at_once(loop: quiesce.Loop) -> None:
    loop.run_until_idle()
    assert loop.time() == 0.0


def test_periodic_timer_exceeds_max_time_with_a_guess(loop: quiesce.Loop) -> None:
    beats: List[float] = []
    loop.create_task(heartbeat(beats, period=60.0), name="heartbeat")
    with pytest.raises(quiesce.BudgetExceeded) as excinfo:
        loop.run_until_idle(max_time=600)
    message = str(excinfo.value)
    assert message.startswith(
        "run_until_idle() would move the virtual clock to t=660.0, past its max_time (t=600.0)."
        " Likely cause: a timer keeps being rescheduled (a periodic task or a retry loop). "
        "Tasks sleeping on the next timers: 'heartbeat'."
    )
    assert "quiesce.background(task)" in message
    assert beats[-1] == 600.0 and loop.time() == 600.0
    assert excinfo.value.report is not None


def test_busy_loop_exceeds_max_steps_with_a_guess(loop: quiesce.Loop) -> None:
    async def spinner() -> None:
        while True:
            await asyncio.sleep(0)

    loop.create_task(spinner(), name="spinner")
    with pytest.raises(quiesce.BudgetExceeded) as excinfo:
        loop.run_until_idle(max_steps=1000)
    message = str(excinfo.value)
    assert "Likely cause: a task never waits on anything durable, for example " in message
    assert "Tasks runnable when it stopped: 'spinner'." in message


def test_background_timers_do_not_keep_run_until_idle_going(loop: quiesce.Loop) -> None:
    beats: List[float] = []
    quiesce.background(loop.create_task(heartbeat(beats), name="heartbeat"))

    async def job() -> None:
        await asyncio.sleep(2.5)

    task = loop.create_task(job())
    loop.run_until_idle()
    assert task.done()
    assert loop.time() == 2.5
    assert beats == [1.0, 2.0]
    assert "[waiting, background]" in str(loop.report())


def test_run_until_idle_waits_for_an_executor_job_instead_of_jumping(loop: quiesce.Loop) -> None:
    order: List[str] = []

    async def main() -> None:
        loop.call_later(10, order.append, "timer at 10")
        await loop.run_in_executor(None, order.append, "executor job")
        order.append(f"job result at t={loop.time()}")

    loop.create_task(main())
    loop.run_until_idle()
    assert order == ["executor job", "job result at t=0.0", "timer at 10"]


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)]
)
def test_bad_max_time(loop: quiesce.Loop, value: object, error: type) -> None:
    with pytest.raises(error, match="max_time"):
        loop.run_until_idle(max_time=value)  # type: ignore[arg-type]


def test_run_until_idle_refuses_the_real_clock(make_loop: Callable[..., quiesce.Loop]) -> None:
    with pytest.raises(RuntimeError, match="clock='real'"):
        make_loop(clock="real").run_until_idle()


# -- background ------------------------------------------------------------------------------


def test_background_only_timers_end_in_a_deadlock(loop: quiesce.Loop) -> None:
    beats: List[float] = []
    quiesce.background(loop.create_task(heartbeat(beats), name="heartbeat"))
    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(asyncio.Event().wait())
    assert "the only pending timers belong to background tasks" in str(excinfo.value)
    assert beats == []  # the clock did not jump for them


def test_close_cancels_background_tasks_and_runs_their_cleanup() -> None:
    loop = quiesce.Loop()
    cleaned: List[str] = []

    async def service() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("cleaned up")

    task = quiesce.background(loop.create_task(service()))
    loop.run_until_blocked()
    loop.close()
    assert task.cancelled()
    assert cleaned == ["cleaned up"]


def test_background_returns_its_task(loop: quiesce.Loop) -> None:
    async def nothing() -> None:
        pass

    task = loop.create_task(nothing())
    assert quiesce.background(task) is task
    loop.run_until_blocked()


def test_background_rejects_other_things() -> None:
    with pytest.raises(TypeError, match=r"asyncio\.Task"):
        quiesce.background("not a task")  # type: ignore[type-var]
    stock = asyncio.new_event_loop()
    try:

        async def nothing() -> None:
            pass

        task = stock.create_task(nothing())
        with pytest.raises(TypeError, match=r"needs a task of a quiesce\.Loop"):
            quiesce.background(task)
        stock.run_until_complete(task)
    finally:
        stock.close()


# -- wait_all_tasks_blocked ------------------------------------------------------------------


def test_wait_all_tasks_blocked_resumes_once_the_others_are_blocked(loop: quiesce.Loop) -> None:
    log: List[str] = []
    queue: asyncio.Queue = asyncio.Queue()

    async def relay() -> None:
        for hop in range(5):
            await asyncio.sleep(0)
            log.append(f"hop {hop}")
        await queue.get()

    async def test_body() -> List[str]:
        relaying = asyncio.create_task(relay())
        await quiesce.wait_all_tasks_blocked()
        seen = list(log)
        queue.put_nowait("go")
        await relaying
        return seen

    assert loop.run_until_complete(test_body()) == [f"hop {hop}" for hop in range(5)]
    assert loop.time() == 0.0


def test_two_waiters_resume_together(loop: quiesce.Loop) -> None:
    resumed: List[str] = []

    async def waiter(name: str) -> None:
        await quiesce.wait_all_tasks_blocked()
        resumed.append(name)

    loop.create_task(waiter("a"))
    loop.create_task(waiter("b"))
    loop.run_until_blocked()
    assert sorted(resumed) == ["a", "b"]


def test_wait_all_tasks_blocked_does_not_wait_for_timers(loop: quiesce.Loop) -> None:
    async def body() -> float:
        sleeping = asyncio.create_task(asyncio.sleep(100))
        await quiesce.wait_all_tasks_blocked()
        now = asyncio.get_running_loop().time()
        sleeping.cancel()
        return now

    assert loop.run_until_complete(body()) == 0.0


def test_wait_all_tasks_blocked_needs_a_quiesce_loop() -> None:
    async def body() -> None:
        await quiesce.wait_all_tasks_blocked()

    with pytest.raises(RuntimeError, match=r"needs a running quiesce\.Loop"):
        asyncio.run(body())
