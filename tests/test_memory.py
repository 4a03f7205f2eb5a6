"""Nothing grows across repeated runs: Python allocations (tracemalloc) and the native timer
heap stay bounded however many loops, runs and cancelled timers come and go."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from typing import Any, Callable, Dict

import pytest

import quiesce

#: Allowed net growth of traced Python memory over many repetitions (caches, interned names).
GROWTH_LIMIT = 64 * 1024


async def _workload() -> None:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(200)]
    await asyncio.sleep(0)
    event.set()
    await asyncio.gather(*waiters)
    timers = [loop.call_later(i * 0.001, lambda: None) for i in range(200)]
    for timer in timers[::2]:
        timer.cancel()
    queue: asyncio.Queue = asyncio.Queue()
    await asyncio.gather(*(queue.put(i) for i in range(100)))
    assert sorted([await queue.get() for _ in range(100)]) == list(range(100))
    await asyncio.sleep(1)


def _traced_growth(repeat: Callable[[], None], times: int) -> int:
    """The smaller net growth of two measured batches of ``times`` repetitions: a leak grows
    in both, while a one-off resize of some global table (asyncio's set of all tasks, after
    earlier tests) lands in at most one."""
    for _ in range(3):  # warm caches before measuring
        repeat()
    growths = []
    for _ in range(2):
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(times):
                repeat()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growths.append(sum(stat.size_diff for stat in after.compare_to(before, "filename")))
    return min(growths)


@pytest.mark.parametrize(
    "options",
    [{}, {"seed": 3}, {"seed": 3, "policy": "random"}, {"seed": 3, "policy": "pct"}],
    ids=["fifo", "seeded", "random", "pct"],
)
def test_fresh_loops_leave_nothing_behind(options: Dict[str, Any]) -> None:
    def one_loop() -> None:
        loop = quiesce.Loop(**options)
        try:
            loop.run_until_complete(_workload())
        finally:
            loop.close()

    assert _traced_growth(one_loop, 30) < GROWTH_LIMIT


def _live_loops() -> int:
    return sum(isinstance(o, quiesce.Loop) for o in gc.get_objects())


@pytest.mark.parametrize("policy", ["random", "pct", "dfs", "auto"])
def test_a_closed_loop_and_its_tasks_are_freed_under_every_policy(policy: str) -> None:
    # The loop keeps per-task scheduling state (PCT priorities): it must neither outlive
    # the loop nor hide a loop -> task -> loop cycle from the garbage collector.
    loop = quiesce.Loop(seed=1, policy=policy) if policy in ("random", "pct") else None
    if loop is None:
        gc.collect()
        before = _live_loops()
        result = quiesce.explore(_workload, runs=3, policy=policy)
        assert result.ok
        gc.collect()
        assert _live_loops() == before
        return
    task = loop.create_task(_workload())
    loop.run_until_complete(task)
    loop.close()
    task_ref, loop_ref = weakref.ref(task), weakref.ref(loop)
    del task, loop
    gc.collect()
    assert loop_ref() is None and task_ref() is None


def test_repeated_runs_on_one_loop_leave_nothing_behind() -> None:
    loop = quiesce.Loop()
    try:
        growth = _traced_growth(lambda: loop.run_until_complete(_workload()), 30)
        assert growth < GROWTH_LIMIT
        assert loop._q_stats()["timers"] == 0
    finally:
        loop.close()


def test_seeded_driving_leaves_nothing_behind() -> None:
    def drive() -> None:
        loop = quiesce.Loop(seed=7)
        try:
            task = loop.create_task(_workload())
            loop.run_until_blocked()
            loop.advance(2)
            assert task.done()
        finally:
            loop.close()

    assert _traced_growth(drive, 30) < GROWTH_LIMIT


def test_cancelled_timers_do_not_accumulate_in_the_heap() -> None:
    loop = quiesce.Loop()
    try:
        for _ in range(10):
            handles = [loop.call_later(3600 + i, lambda: None) for i in range(1_000)]
            for handle in handles:
                handle.cancel()
        stats = loop._q_stats()
        assert stats["timers"] == 0
        # Stale heap entries are swept once they outnumber live ones (plus a small floor).
        assert stats["timer_heap"] <= 64
    finally:
        loop.close()
