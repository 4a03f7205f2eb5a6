"""``quiesce.Loop(clock="real")``: follows ``time.monotonic()`` like stock asyncio."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List, Tuple

import pytest

import quiesce


def test_follows_monotonic(real_loop: quiesce.Loop) -> None:
    assert real_loop.clock == "real"
    before = time.monotonic()
    now = real_loop.time()
    after = time.monotonic()
    assert before <= now <= after


def test_sleep_takes_real_time(real_loop: quiesce.Loop) -> None:
    async def main() -> Tuple[float, float]:
        loop_start = real_loop.time()
        wall_start = time.monotonic()
        await asyncio.sleep(0.02)
        return real_loop.time() - loop_start, time.monotonic() - wall_start

    loop_elapsed, wall_elapsed = real_loop.run_until_complete(main())
    assert loop_elapsed >= 0.02
    assert wall_elapsed >= 0.02
    assert wall_elapsed < 5


def test_timers_fire_in_deadline_order(real_loop: quiesce.Loop) -> None:
    fired: List[str] = []
    now = real_loop.time()
    real_loop.call_at(now + 0.02, fired.append, "b")
    real_loop.call_at(now + 0.01, fired.append, "a")
    real_loop.call_at(now + 0.02, fired.append, "c")
    real_loop.call_at(now + 0.03, real_loop.stop)
    real_loop.run_forever()
    assert fired == ["a", "b", "c"]


def test_timer_does_not_fire_early(real_loop: quiesce.Loop) -> None:
    seen: List[float] = []
    handle = real_loop.call_later(0.02, lambda: seen.append(real_loop.time()))
    real_loop.run_until_complete(asyncio.sleep(0.03))
    assert len(seen) == 1
    assert seen[0] >= handle.when() - time.get_clock_info("monotonic").resolution


def test_wait_for_timeout(real_loop: quiesce.Loop) -> None:
    async def main() -> str:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=0.01)
        except asyncio.TimeoutError:
            return "timeout"
        return "no timeout"

    started = time.monotonic()
    assert real_loop.run_until_complete(main()) == "timeout"
    assert time.monotonic() - started >= 0.01


def test_run_until_blocked_runs_only_due_timers(real_loop: quiesce.Loop) -> None:
    fired: List[str] = []
    real_loop.call_later(0, fired.append, "zero")
    real_loop.call_at(real_loop.time() - 10, fired.append, "past")
    real_loop.call_later(60, fired.append, "future")
    real_loop.run_until_blocked()
    assert fired == ["past", "zero"]
    assert len(real_loop._scheduled) == 1


def test_step_on_the_real_clock(real_loop: quiesce.Loop) -> None:
    fired: List[str] = []
    real_loop.call_soon(fired.append, "a")
    real_loop.call_soon(fired.append, "b")
    assert real_loop.step() is True
    assert fired == ["a"]


def test_advance_is_refused(real_loop: quiesce.Loop) -> None:
    with pytest.raises(RuntimeError):
        real_loop.advance(0)
    with pytest.raises(RuntimeError):
        real_loop.advance(1)


def test_deadlock_is_detected_on_the_real_clock(real_loop: quiesce.Loop) -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(quiesce.Deadlock):
        real_loop.run_until_complete(stuck())
    assert time.monotonic() - started < 5


def test_seeded_real_clock(make_loop: Callable[..., quiesce.Loop]) -> None:
    seeded = make_loop(seed=5, clock="real")
    results: List[int] = []

    async def worker(i: int) -> None:
        await asyncio.sleep(0)
        results.append(i)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(5)))

    seeded.run_until_complete(main())
    assert sorted(results) == [0, 1, 2, 3, 4]
