"""The virtual clock: starts at 0.0, jumps to the next timer when nothing can run, and moves
for no other reason than a jump or ``advance()``."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List, Tuple

import pytest

import quiesce


def test_starts_at_zero_and_stands_still(loop: quiesce.Loop) -> None:
    assert loop.time() == 0.0
    sum(range(100_000))  # real time passes
    assert loop.time() == 0.0
    loop.run_until_blocked()
    assert loop.time() == 0.0


def test_run_until_complete_jumps_over_sleeps(loop: quiesce.Loop) -> None:
    async def long_sleeps() -> float:
        for _ in range(1000):
            await asyncio.sleep(3600)
        return loop.time()

    started = time.monotonic()
    assert loop.run_until_complete(long_sleeps()) == 3600.0 * 1000
    assert time.monotonic() - started < 5  # a thousand hours at CPU speed


def test_jumps_exactly_to_each_deadline(loop: quiesce.Loop) -> None:
    seen: List[float] = []

    async def sleeper() -> None:
        for delay in (0.1, 0.2, 1.5):
            await asyncio.sleep(delay)
            seen.append(loop.time())

    loop.run_until_complete(sleeper())
    assert seen == [0.1, 0.1 + 0.2, 0.1 + 0.2 + 1.5]


def test_timer_callbacks_see_their_deadline(loop: quiesce.Loop) -> None:
    seen: List[Tuple[int, float]] = []
    for delay in (3, 1, 2):
        loop.call_later(delay, lambda delay=delay: seen.append((delay, loop.time())))
    done = loop.create_future()
    loop.call_later(4, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert loop.time() == 4.0


def test_does_not_jump_while_something_can_run(loop: quiesce.Loop) -> None:
    times: List[float] = []
    timer_fired_at: List[int] = []

    async def busy_for_a_while() -> None:
        for _ in range(200):
            times.append(loop.time())
            await asyncio.sleep(0)

    loop.call_later(5, lambda: timer_fired_at.append(len(times)))
    task = loop.create_task(busy_for_a_while())
    loop.run_until_complete(task)
    assert times == [0.0] * 200
    assert timer_fired_at == []
    loop.run_until_complete(asyncio.sleep(10))
    assert timer_fired_at == [200]
    assert loop.time() == 10.0


def test_wait_for_timeout_is_exact(loop: quiesce.Loop) -> None:
    async def main() -> Tuple[str, float]:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=90)
        except asyncio.TimeoutError:
            return "timeout", loop.time()
        return "no timeout", loop.time()

    assert loop.run_until_complete(main()) == ("timeout", 90.0)


def test_wait_for_result_beats_timeout(loop: quiesce.Loop) -> None:
    async def main() -> Tuple[str, float]:
        result = await asyncio.wait_for(asyncio.sleep(5, "slept"), timeout=6)
        return result, loop.time()

    assert loop.run_until_complete(main()) == ("slept", 5.0)


def test_run_forever_until_stop_timer(loop: quiesce.Loop) -> None:
    loop.call_later(42, loop.stop)
    loop.run_forever()
    assert loop.time() == 42.0


def test_call_later_equals_call_at_now_plus_delay(loop: quiesce.Loop) -> None:
    loop.advance(0.1)
    for delay in (0.2, 1 / 3, 1e-7, 1e6, 0):
        later = loop.call_later(delay, lambda: None)
        at = loop.call_at(loop.time() + delay, lambda: None)
        assert later.when() == at.when() == loop.time() + delay
        later.cancel()
        at.cancel()


def test_clock_never_goes_back(loop: quiesce.Loop) -> None:
    loop.advance(10)
    fired: List[float] = []
    loop.call_at(1.0, lambda: fired.append(loop.time()))
    loop.run_until_complete(asyncio.sleep(0))
    assert fired == [10.0]
    assert loop.time() == 10.0


def test_ready_callbacks_run_before_the_jump(loop: quiesce.Loop) -> None:
    log: List[Tuple[str, float]] = []
    loop.call_later(1, lambda: log.append(("timer", loop.time())))
    loop.call_soon(lambda: log.append(("soon", loop.time())))
    loop.run_until_complete(asyncio.sleep(2))
    assert log == [("soon", 0.0), ("timer", 1.0)]


def test_seeded_loops_jump_too(make_loop: Callable[..., quiesce.Loop]) -> None:
    seeded = make_loop(seed=11)
    assert seeded.run_until_complete(asyncio.sleep(7.5, "r")) == "r"
    assert seeded.time() == 7.5


def test_clock_follows_real_time_while_waiting_for_an_executor_job(loop: quiesce.Loop) -> None:
    """Spec: while outside work is in flight, the virtual clock follows real time up to the next
    timer (the work may take that long on a real clock); it never jumps over the work."""
    import threading

    go = threading.Event()

    def job() -> int:
        go.wait()
        return 42

    async def main() -> int:
        fut = loop.run_in_executor(None, job)
        loop.call_soon(go.set)  # the job finishes only after the loop has gone idle
        # A timeout far longer than the job: it must not fire, as it would after a jump.
        return await asyncio.wait_for(fut, 60)

    assert loop.run_until_complete(main()) == 42
    assert 0.0 <= loop.time() < 1.0


def test_clock_follows_real_time_while_waiting_for_a_thread(loop: quiesce.Loop) -> None:
    import threading

    go = threading.Event()

    async def main() -> int:
        fut = loop.create_future()

        def worker() -> None:
            go.wait()
            loop.call_soon_threadsafe(fut.set_result, 7)

        thread = threading.Thread(target=worker)
        thread.start()
        loop.call_soon(go.set)
        try:
            return await asyncio.wait_for(fut, 60)
        finally:
            thread.join()

    assert loop.run_until_complete(main()) == 7
    assert 0.0 <= loop.time() < 1.0


@pytest.mark.parametrize("delay", [float("nan")])
def test_nan_timers_are_refused(loop: quiesce.Loop, delay: float) -> None:
    with pytest.raises(ValueError):
        loop.call_later(delay, lambda: None)
    with pytest.raises(ValueError):
        loop.call_at(delay, lambda: None)
    assert len(loop._scheduled) == 0
