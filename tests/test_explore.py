"""quiesce.explore / replay / check_determinism, policies, timer ties and fault points."""

from __future__ import annotations

import asyncio
import functools
import random
import re
import sys
import threading
from typing import Any, Dict, List

import pytest
from buggy_programs import (
    DEEP_PROGRAMS,
    PROGRAMS,
    buffer_overrun,
    fair_poller,
    hops,
    lost_update,
    missed_wakeup,
    stale_cache,
    starved_releaser,
    timeout_tie,
)

import quiesce

#: Failing schedules recorded once (by ``explore(program)`` with the defaults): the same
#: strings must replay the same failure on every supported Python.
RECORDED = {
    "lost update": ("q1-AAEAAQABAwE", AssertionError),
    "lock-order deadlock": ("q1-AAEAAQAB", quiesce.Deadlock),
    "double init": ("q1-AAEAAQABAwE", AssertionError),
    "missed wakeup": ("q1-AAEAAQAB", quiesce.Deadlock),
    "dirty cancel": ("q1-AgEAAQAB", AssertionError),
    "timeout tie": ("q1-AAEAAQAB", AssertionError),
}


def decisions_of(program, schedule: str) -> List[tuple]:
    """The decisions a replay of ``schedule`` makes (run on a loop we keep)."""
    loop = quiesce.Loop(schedule=schedule)
    try:
        task = loop.create_task(program())
        try:
            loop.run_until_complete(task)
        except (AssertionError, quiesce.Deadlock):
            pass
        return loop.decisions()
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_each_buggy_program_passes_in_stock_order(name: str) -> None:
    quiesce.replay(PROGRAMS[name], "q1-")
    result = quiesce.explore(PROGRAMS[name], policy="fifo")
    assert result.ok and result.runs == 1


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("policy", ["auto", "random", "pct", "dfs"])
def test_explore_finds_each_buggy_program(name: str, policy: str) -> None:
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(PROGRAMS[name], policy=policy, runs=200)
    failure = caught.value.failure
    assert failure.reproduced is True and failure.nondeterminism is None
    assert failure.deviations >= 1 and failure.schedule != "q1-"
    expected = RECORDED[name][1]
    assert isinstance(failure.error, expected)
    assert failure.replay_line() in str(caught.value)
    with pytest.raises(expected):
        quiesce.replay(PROGRAMS[name], failure.schedule)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_recorded_schedules_replay_exactly_on_this_python(name: str) -> None:
    schedule, expected = RECORDED[name]
    with pytest.raises(expected):
        quiesce.replay(PROGRAMS[name], schedule)
    first = decisions_of(PROGRAMS[name], schedule)
    assert first == decisions_of(PROGRAMS[name], schedule)
    deviations = [(index, chosen) for index, (_, _, chosen, _) in enumerate(first) if chosen]
    assert quiesce.Loop._q_encode_schedule(deviations) == schedule


def test_the_failure_message_tells_how_to_replay() -> None:
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(lost_update, seed=5)
    text = str(caught.value)
    assert f'quiesce.replay(lost_update, "{caught.value.schedule}")' in text
    assert "lost update: balance is 1" in text
    assert "Checked: two replays fail the same way" in text
    assert "_explore.py" not in text, "the traceback starts at the test's own frames"
    assert caught.value.seed == caught.value.failure.seed


def test_a_deadlock_found_by_exploration_carries_the_report() -> None:
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(missed_wakeup)
    error = caught.value.failure.error
    assert isinstance(error, quiesce.Deadlock)
    assert "Event.wait() on `ready` (Event, unset)" in str(caught.value)


def test_random_runs_use_consecutive_seeds_that_reproduce_alone() -> None:
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(lost_update, policy="random", seed=100)
    failure = caught.value.failure
    assert failure.seed == 100 + failure.run - 1
    with pytest.raises(quiesce.ExplorationFailed) as again:
        quiesce.explore(lost_update, policy="random", seed=failure.seed, runs=1)
    assert again.value.schedule == failure.schedule


def test_bounded_search_of_a_correct_program_is_exhaustive() -> None:
    async def correct() -> None:
        lock = asyncio.Lock()
        total = {"value": 0}

        async def add() -> None:
            async with lock:
                current = total["value"]
                await hops(1)
                total["value"] = current + 1

        await asyncio.gather(add(), add(), add())
        assert total["value"] == 3

    result = quiesce.explore(correct, policy="dfs", bound=2, runs=10_000)
    assert result.ok and result.exhausted and result.bound == 2
    assert result.runs == result.schedules > 1
    assert "Every schedule with at most 2 delay(s) was run" in str(result)
    small = quiesce.explore(correct, policy="dfs", bound=2, runs=2)
    assert small.ok and not small.exhausted and "run budget ended" in str(small)


def test_raise_on_failure_false_returns_the_result() -> None:
    result = quiesce.explore(lost_update, raise_on_failure=False, check_determinism=False)
    assert not result.ok and result.failure is not None
    assert result.failure.reproduced is None
    assert str(result) == str(result.failure)


def test_an_exception_only_the_loop_saw_is_a_failure() -> None:
    async def fire_and_forget() -> None:
        async def crash() -> None:
            raise ValueError("background job failed")

        task = asyncio.ensure_future(crash())
        await hops(2)
        del task  # never awaited: asyncio only logs "Task exception was never retrieved"

    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(fire_and_forget, policy="fifo")
    assert isinstance(caught.value.failure.error, ValueError)


def test_a_livelock_under_some_schedule_is_a_budget_failure_not_a_hang() -> None:
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(spin, policy="fifo", max_steps=1000)
    assert isinstance(caught.value.failure.error, quiesce.BudgetExceeded)


@pytest.mark.parametrize("name", sorted(DEEP_PROGRAMS))
def test_the_default_portfolio_finds_each_deep_program(name: str) -> None:
    quiesce.replay(DEEP_PROGRAMS[name], "q1-")  # passes in stock order
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(DEEP_PROGRAMS[name], runs=200)
    assert caught.value.failure.reproduced is True
    with pytest.raises(AssertionError):
        quiesce.replay(DEEP_PROGRAMS[name], caught.value.schedule)


@pytest.mark.parametrize("seed", [0, 1000, 2000, 3000])
def test_the_default_portfolio_finds_a_starvation_bug_within_500_runs(seed: int) -> None:
    quiesce.replay(starved_releaser, "q1-")  # passes in stock order
    result = quiesce.explore(starved_releaser, runs=500, seed=seed, raise_on_failure=False)
    assert result.failure is not None and "releaser was starved" in str(result.failure.error)
    assert "streak<=1024" in result.failure.policy
    with pytest.raises(AssertionError, match="releaser was starved"):
        quiesce.replay(starved_releaser, result.failure.schedule)
    # Plain PCT demotes the waiter after 64 polls: it never starves the releaser.
    assert quiesce.explore(starved_releaser, policy="pct", pct_depth=1, runs=100, seed=seed).ok


def test_a_fair_polling_loop_is_never_reported() -> None:
    # The portfolio member that lets one task run far ahead still demotes it after 1,024
    # wins in a row: a poller that waits as long as it takes is not a livelock.
    result = quiesce.explore(fair_poller, runs=2000)
    assert result.ok and result.runs == 2000
    assert result.max_decisions < 2 * 1024


def test_pct_finds_what_random_scheduling_rarely_hits() -> None:
    # The consumer must fall eight writes behind: one PCT run starves it, random needs luck.
    pct = quiesce.explore(buffer_overrun, policy="pct", runs=5, raise_on_failure=False)
    assert pct.failure is not None and pct.runs <= 2
    random_runs = quiesce.explore(buffer_overrun, policy="random", runs=5, raise_on_failure=False)
    assert random_runs.failure is None
    # And PCT at depth 1 (priorities only, no preemption) cannot find a two-preemption bug.
    assert quiesce.explore(stale_cache, policy="pct", pct_depth=1, runs=50).ok


def test_pct_does_not_livelock_a_task_that_polls_for_another() -> None:
    # Strict priorities would run the poller forever and never the task it waits for; PCT
    # demotes a task that wins too many decisions in a row, so every run ends, and fast.
    async def poll_for_flag() -> None:
        flag = {"set": False}

        async def poller() -> None:
            while not flag["set"]:
                await asyncio.sleep(0)

        async def setter() -> None:
            await asyncio.sleep(0)
            flag["set"] = True

        await asyncio.gather(poller(), setter())

    for depth in (1, 2, 3):
        result = quiesce.explore(poll_for_flag, policy="pct", pct_depth=depth, runs=30)
        assert result.ok and result.max_decisions < 1000


@pytest.mark.parametrize("name", sorted({**PROGRAMS, **DEEP_PROGRAMS}))
def test_a_failing_schedule_is_shrunk_and_still_replays(name: str) -> None:
    program = {**PROGRAMS, **DEEP_PROGRAMS}[name]
    raw = quiesce.explore(program, policy="random", seed=7, shrink=False, raise_on_failure=False)
    shrunk = quiesce.explore(program, policy="random", seed=7, raise_on_failure=False)
    assert raw.failure is not None and shrunk.failure is not None
    assert raw.failure.shrunk_from is None
    assert shrunk.failure.run == raw.failure.run and shrunk.failure.seed == raw.failure.seed
    assert shrunk.failure.shrunk_from == raw.failure.deviations
    assert 1 <= shrunk.failure.deviations <= raw.failure.deviations
    assert shrunk.failure.reproduced is True
    assert type(shrunk.failure.error) is type(raw.failure.error)
    with pytest.raises(type(raw.failure.error)):
        quiesce.replay(program, shrunk.failure.schedule)


def test_shrinking_finds_the_two_deviations_a_lost_update_needs() -> None:
    failure = quiesce.explore(lost_update, policy="random", raise_on_failure=False).failure
    assert failure is not None and failure.deviations == 2
    if failure.shrunk_from != failure.deviations:
        assert f"Shrunk from {failure.shrunk_from} to 2 deviation(s)" in str(failure)


def test_a_livelock_in_stock_order_shrinks_to_stock_order() -> None:
    async def spin_both() -> None:
        async def spin() -> None:
            while True:
                await asyncio.sleep(0)

        await asyncio.gather(spin(), spin())

    failure = quiesce.explore(
        spin_both, policy="random", max_steps=2000, raise_on_failure=False
    ).failure
    assert failure is not None and isinstance(failure.error, quiesce.BudgetExceeded)
    assert failure.schedule.split(".")[0] == "q1-" and failure.shrink_runs == 1


def test_each_run_has_a_budget_of_a_million_callbacks_by_default() -> None:
    assert quiesce.explore.__kwdefaults__["max_steps"] == 1_000_000
    counted = {"steps": 0}

    async def long_but_finite() -> None:
        for _ in range(200_000):  # two hundred thousand callbacks: within the budget
            await asyncio.sleep(0)
            counted["steps"] += 1

    assert quiesce.explore(long_but_finite, policy="fifo").ok
    assert counted["steps"] == 200_000


def test_time_is_virtual_in_every_run() -> None:
    async def slow() -> None:
        await asyncio.sleep(3600)
        assert asyncio.get_running_loop().time() == 3600.0

    assert quiesce.explore(slow, runs=20).ok


def test_bad_arguments_get_clear_errors() -> None:
    coro = lost_update()
    with pytest.raises(TypeError, match=r"explore\(test\), not explore\(test\(\)\)"):
        quiesce.explore(coro)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable returning a fresh coroutine"):
        quiesce.explore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy must be one of"):
        quiesce.explore(lost_update, policy="bfs")
    with pytest.raises(ValueError, match="runs must be >= 1"):
        quiesce.explore(lost_update, runs=0)
    with pytest.raises(ValueError, match="not a quiesce schedule string"):
        quiesce.replay(lost_update, "q2-xyz")
    with pytest.raises(ValueError, match="not a quiesce schedule string"):
        quiesce.replay(lost_update, "q1-***")
    with pytest.raises(TypeError, match="must return a fresh coroutine"):
        quiesce.replay(lambda: 42, "q1-")  # type: ignore[arg-type,return-value]


def test_explore_refuses_to_run_inside_a_running_loop() -> None:
    async def outer() -> None:
        with pytest.raises(RuntimeError, match="from synchronous code"):
            quiesce.explore(lost_update)

    asyncio.run(outer())


def test_replay_of_a_schedule_that_does_not_fit_says_so() -> None:
    async def straight() -> None:
        await asyncio.sleep(0)

    with pytest.raises(quiesce.ReplayDiverged, match="does not fit this run"):
        quiesce.replay(straight, "q1-AAU")  # choice 5 at decision 1: there is none


def test_determinism_check_names_state_kept_between_runs() -> None:
    runs = {"count": 0}

    async def remembers() -> None:
        runs["count"] += 1
        tasks = [asyncio.ensure_future(hops(1)) for _ in range(runs["count"])]
        await asyncio.gather(*tasks)

    with pytest.raises(quiesce.NondeterminismError) as caught:
        quiesce.check_determinism(remembers)
    text = str(caught.value)
    assert "First differing scheduling decision: #1" in text
    assert "state kept between runs" in text


def test_determinism_check_names_iteration_over_a_set() -> None:
    def make_job(name: str):  # type: ignore[no-untyped-def]
        def job() -> None:
            pass

        job.__qualname__ = f"job_{name}"
        return job

    kept: List[object] = []

    async def set_order() -> None:
        # A set of fresh objects iterates in address order, which differs between runs
        # (the previous run's objects are kept alive, so the addresses are new).
        jobs = {make_job(name) for name in ("alpha", "beta", "gamma", "delta", "epsilon")}
        kept.append(jobs)
        for job in jobs:
            asyncio.get_running_loop().call_soon(job)
        await hops(1)

    for _ in range(10):
        try:
            quiesce.check_determinism(set_order)
        except quiesce.NondeterminismError as error:
            assert "iteration over a set" in str(error)
            assert "job_" in str(error)
            return
    pytest.fail("ten pairs of runs iterated a set of fresh objects in the same order")


def test_a_deterministic_test_passes_the_check() -> None:
    for program in PROGRAMS.values():
        try:
            quiesce.check_determinism(program, policy="pct", seed=3)
        except quiesce.NondeterminismError:  # pragma: no cover - the failure we test against
            raise
        except (AssertionError, quiesce.Deadlock):
            pytest.fail("check_determinism should not raise the test's own failure")


def test_timers_due_at_one_instant_fire_in_every_order_under_seeds() -> None:
    orders = set()
    for seed in range(40):
        loop = quiesce.Loop(seed=seed)
        fired: List[str] = []
        for name in "abc":
            loop.call_later(1.0, fired.append, name)
        loop.call_later(2.0, fired.append, "later")
        loop.advance(2.0)
        loop.close()
        assert fired[-1] == "later", "a later deadline never fires first"
        orders.add(tuple(fired[:3]))
    assert len(orders) == 6


def test_timer_ties_keep_their_order_in_stock_order() -> None:
    loop = quiesce.Loop()
    fired: List[str] = []
    for name in "abcdef":
        loop.call_later(1.0, fired.append, name)
    loop.advance(1.0)
    loop.close()
    assert fired == list("abcdef")


def test_exploration_can_make_a_timeout_win_a_tie() -> None:
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        quiesce.explore(timeout_tie, policy="random")
    assert "timed out although the reply was due" in str(caught.value)
    assert caught.value.failure.time == 1.0


@pytest.mark.parametrize("policy", ["random", "pct"])
def test_orderings_asyncio_guarantees_hold_under_every_policy(policy: str) -> None:
    async def program() -> List[str]:
        loop = asyncio.get_running_loop()
        log: List[str] = []
        fut = loop.create_future()
        for name in ("cb1", "cb2", "cb3"):
            fut.add_done_callback(lambda _f, name=name: log.append(name))
        for name in ("soon1", "soon2", "soon3"):
            loop.call_soon(log.append, name)
        fut.set_result(None)

        async def steps(tag: str) -> None:
            for i in range(3):
                log.append(f"{tag}{i}")
                await asyncio.sleep(0)

        await asyncio.gather(steps("x"), steps("y"))
        return log

    for seed in range(30):
        loop = quiesce.Loop(seed=seed, policy=policy)
        log = loop.run_until_complete(program())
        loop.run_until_blocked()  # the done-callbacks may still be queued when main returns
        loop.close()
        for group in (["cb1", "cb2", "cb3"], ["soon1", "soon2", "soon3"], ["x0", "x1", "x2"]):
            assert [entry for entry in log if entry in group] == group


def test_loop_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="draws its choices from a seed"):
        quiesce.Loop(policy="pct")
    with pytest.raises(ValueError, match="policy must be one of"):
        quiesce.Loop(seed=1, policy="chaos")
    with pytest.raises(ValueError, match="schedule= and policy='replay' go together"):
        quiesce.Loop(policy="replay")
    with pytest.raises(ValueError, match="not a quiesce schedule string"):
        quiesce.Loop(schedule="nope")
    with pytest.raises(ValueError, match="pct_depth must be >= 1"):
        quiesce.Loop(seed=1, policy="pct", pct_depth=0)
    loop = quiesce.Loop(seed=1, policy="pct")
    assert (loop.policy, loop.seed, loop.schedule) == ("pct", 1, "q1-")
    loop.close()
    loop = quiesce.Loop()
    assert loop.policy == "fifo" and loop.decisions() == []
    loop.close()


class TestFaultPoints:
    def test_buggify_is_false_outside_quiesce_and_in_stock_order(self) -> None:
        assert quiesce.buggify("anything", 1.0) is False

        async def probe() -> bool:
            return quiesce.buggify("anything", 1.0)

        assert asyncio.run(probe()) is False
        loop = quiesce.Loop()
        assert loop.run_until_complete(probe()) is False
        loop.close()

    def test_buggify_fires_with_its_probability_and_replays(self) -> None:
        async def draws() -> List[bool]:
            return [quiesce.buggify("coin", 0.3) for _ in range(2000)]

        loop = quiesce.Loop(seed=11)
        fired = loop.run_until_complete(draws())
        schedule = loop.schedule
        assert loop._q_faults_fired[0][0] == "coin"
        loop.close()
        assert 450 < sum(fired) < 750
        again = quiesce.Loop(schedule=schedule)
        assert again.run_until_complete(draws()) == fired
        again.close()

    def test_exploration_finds_a_bug_behind_a_fault_point(self) -> None:
        async def client() -> None:
            delivered: List[str] = []

            async def send(message: str) -> None:
                await hops(1)
                if quiesce.buggify("drop", 0.1):
                    return  # the network lost it
                delivered.append(message)

            await asyncio.gather(send("a"), send("b"))
            assert delivered == ["a", "b"] or sorted(delivered) == ["a", "b"], delivered

        with pytest.raises(quiesce.ExplorationFailed) as caught:
            quiesce.explore(client, runs=500)
        assert "Fault points that fired: 'drop'" in str(caught.value)
        with pytest.raises(AssertionError):
            quiesce.replay(client, caught.value.schedule)

    def test_hold_returns_at_once_outside_exploration(self) -> None:
        async def probe() -> List[str]:
            log: List[str] = []

            async def other() -> None:
                log.append("other")

            task = asyncio.ensure_future(other())
            await quiesce.hold("here", 1.0)
            log.append("after hold")
            await task
            return log

        assert asyncio.run(probe()) == ["after hold", "other"]

    def test_hold_makes_the_task_arrive_last(self) -> None:
        async def probe() -> List[str]:
            log: List[str] = []

            async def other() -> None:
                await hops(5)
                log.append("other done")

            task = asyncio.ensure_future(other())
            await quiesce.hold("here", 1.0)
            log.append("after hold")
            await task
            return log

        loop = quiesce.Loop(seed=2)
        assert loop.run_until_complete(probe()) == ["other done", "after hold"]
        loop.close()

    def test_fault_points_check_their_arguments(self) -> None:
        with pytest.raises(ValueError, match="between 0 and 1"):
            quiesce.buggify("x", 1.5)
        with pytest.raises(TypeError, match="non-empty str name"):
            quiesce.buggify("", 0.5)
        with pytest.raises(TypeError, match="probability must be a number"):
            quiesce.buggify("x", "often")  # type: ignore[arg-type]


def test_exploration_does_not_touch_the_global_random_state() -> None:
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    quiesce.explore(lambda: hops(3), runs=10)
    assert random.random() == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_steps": 0}, ValueError, "max_steps must be >= 1, got 0"),
        ({"max_steps": "x"}, TypeError, "max_steps must be an int, got str"),
        ({"max_steps": True}, TypeError, "max_steps must be an int, got bool"),
        ({"pct_depth": 2**33, "policy": "pct"}, ValueError, "pct_depth must be <= 1024"),
        ({"watchdog": 0}, ValueError, "watchdog must be > 0 seconds"),
        ({"watchdog": "1"}, TypeError, "watchdog must be a number of seconds or None"),
    ],
)
def test_run_budgets_are_checked_before_any_run(
    kwargs: Dict[str, Any], error: type, message: str
) -> None:
    ran: List[int] = []

    async def counted() -> None:
        ran.append(1)

    with pytest.raises(error, match=re.escape(message)):
        quiesce.explore(counted, **kwargs)
    for function in (quiesce.replay, quiesce.check_determinism):
        if "pct_depth" in kwargs:
            continue
        call_kwargs = {"schedule": "q1-"} if function is quiesce.check_determinism else {}
        args = (counted, "q1-") if function is quiesce.replay else (counted,)
        with pytest.raises(error, match=re.escape(message)):
            function(*args, **kwargs, **call_kwargs)  # type: ignore[operator]
    assert ran == []


def test_a_seed_with_a_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("pass schedule='q1-...' or seed=<int>, not")):
        quiesce.Loop(schedule="q1-", seed=1)


def test_the_bounded_search_knows_when_its_last_run_was_the_last_schedule() -> None:
    async def two_steps() -> None:
        await asyncio.gather(hops(2), hops(2))

    everything = quiesce.explore(two_steps, policy="dfs", bound=1, runs=1000)
    assert everything.exhausted
    exact = quiesce.explore(two_steps, policy="dfs", bound=1, runs=everything.runs)
    assert exact.exhausted and exact.runs == everything.runs
    short = quiesce.explore(two_steps, policy="dfs", bound=1, runs=everything.runs - 1)
    assert not short.exhausted


def test_explore_runs_on_the_real_clock_too() -> None:
    async def tiny_sleeps() -> None:
        await asyncio.gather(asyncio.sleep(0.001), asyncio.sleep(0.001))
        assert asyncio.get_running_loop().clock == "real"

    assert quiesce.explore(tiny_sleeps, runs=3, clock="real").ok


def test_tasks_that_refuse_to_die_do_not_hang_the_exploration() -> None:
    async def leaves_stubborn_tasks() -> None:
        async def swallows_cancellation() -> None:
            while True:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    pass

        async def busy_cleanup() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                while True:
                    await asyncio.sleep(0)

        left = [
            asyncio.ensure_future(swallows_cancellation()),
            asyncio.ensure_future(busy_cleanup()),
        ]
        await asyncio.sleep(0)
        assert not any(task.done() for task in left)

    assert quiesce.explore(leaves_stubborn_tasks, runs=3).ok


def test_a_plain_thread_delivering_the_result_is_waited_for_not_a_deadlock() -> None:
    async def result_from_a_thread() -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        release = threading.Event()

        def deliver() -> None:
            release.wait(5)
            loop.call_soon_threadsafe(future.set_result, 42)

        thread = threading.Thread(target=deliver)
        thread.start()
        loop.call_soon(release.set)
        assert await future == 42
        thread.join()

    assert quiesce.explore(result_from_a_thread, runs=3, check_determinism=False).ok


def test_a_plain_callback_runs_before_what_its_step_scheduled_after_it() -> None:
    # `loop.call_soon(f)` then `await asyncio.sleep(0)`: f has run when the task resumes, in
    # every schedule, as in stock asyncio (no real run can order them otherwise).
    async def call_soon_then_yield() -> None:
        loop = asyncio.get_running_loop()
        ran: List[str] = []
        others = [asyncio.ensure_future(hops(3)) for _ in range(3)]
        loop.call_soon(ran.append, "callback")
        await asyncio.sleep(0)
        assert ran == ["callback"]
        await asyncio.gather(*others)

    result = quiesce.explore(call_soon_then_yield, policy="random", runs=200)
    assert result.ok and result.schedules > 10


@pytest.mark.parametrize("policy", ["random", "pct"])
def test_subprocess_pipes_work_under_every_schedule(policy: str) -> None:
    # asyncio's subprocess transport schedules protocol.connection_made (a plain callback)
    # and then completes the future its creator awaits; the creator must find the pipes.
    async def echo() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write(sys.stdin.read().upper())",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(b"hi")
        assert out == b"HI", out

    result = quiesce.explore(echo, policy=policy, runs=8, check_determinism=False)
    assert result.ok and result.schedules > 1


def test_a_pasted_schedule_may_carry_blanks_and_padding() -> None:
    schedule, expected = RECORDED["lost update"]
    for pasted in (f"  {schedule}\n", f"{schedule}==", f" {schedule}=\t"):
        with pytest.raises(expected):
            quiesce.replay(lost_update, pasted)
    loop = quiesce.Loop(schedule=f" {schedule}= ")
    try:
        assert loop.policy == "replay" and loop.schedule == "q1-"  # nothing decided yet
    finally:
        loop.close()


def test_the_replay_line_names_the_function_behind_a_partial() -> None:
    async def deposit_twice(amount: int) -> None:
        await lost_update()

    failure = quiesce.explore(
        functools.partial(deposit_twice, 1), policy="random", raise_on_failure=False
    ).failure
    assert failure is not None
    assert failure.replay_line().startswith(
        "quiesce.replay(test_the_replay_line_names_the_function_behind_a_partial.<locals>"
        ".deposit_twice, "
    )


async def two_assertions() -> None:
    """Two bugs in one test: a shallow one (one deviation: b overtakes a) and a deep one (the
    two slow workers both overtake the fast ones), each its own assertion."""
    log: List[str] = []

    async def worker(name: str, steps: int) -> None:
        for _ in range(steps):
            await asyncio.sleep(0)
        log.append(name)

    await asyncio.gather(worker("a", 1), worker("b", 1), worker("c", 3), worker("d", 3))
    assert log[0] != "b", "shallow: b overtook a"
    assert log[:2] != ["d", "c"], "deep: the slow workers finished first"


def test_shrinking_keeps_the_bug_it_found() -> None:
    # Seeds whose single random run fails at the deep assertion (rare: most runs that fail
    # fail the shallow one, which is also what most shrinking candidates hit).
    deep = [
        seed
        for seed in range(300)
        if "deep"
        in str(
            quiesce.explore(
                two_assertions,
                policy="random",
                seed=seed,
                runs=1,
                shrink=False,
                check_determinism=False,
                raise_on_failure=False,
            ).failure
        )
    ]
    assert deep, "no seed in 300 finds the deep assertion first"
    for seed in deep:
        result = quiesce.explore(
            two_assertions, policy="random", seed=seed, runs=1, raise_on_failure=False
        )
        failure = result.failure
        assert failure is not None
        # The same exception type from another line is another bug: the shrunk schedule
        # still fails at the deep assertion, and replays there.
        assert "deep" in str(failure.error), (seed, failure.error)
        assert failure.shrunk_from is not None and failure.deviations <= failure.shrunk_from
        with pytest.raises(AssertionError, match="deep"):
            quiesce.replay(two_assertions, failure.schedule)


# -- replays that notice drift -------------------------------------------------------------------

#: How the program below awaits its timeout: toggled to stand for two asyncio versions that
#: schedule the same code differently (as asyncio.wait_for does from 3.12 on).
FLAVOUR = {"extra_step": False}


async def flavoured() -> None:
    async def step(log: List[str], name: str) -> None:
        await asyncio.sleep(0)
        if FLAVOUR["extra_step"] and name == "c":
            await asyncio.sleep(0)  # the other version's internals take one more turn
        log.append(name)

    log: List[str] = []
    await asyncio.gather(step(log, "a"), step(log, "b"), step(log, "c"))
    assert log != ["c", "b", "a"], log


def _retag(schedule: str, flavour: int) -> str:
    """``schedule`` with its tag's interpreter replaced (as if recorded on ``flavour``)."""
    import base64

    body, tag = schedule.split(".")
    raw = bytearray(base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)))
    position = 0
    while raw[position] & 0x80:  # skip the decision count
        position += 1
    position += 1
    end = position
    while raw[end] & 0x80:
        end += 1
    encoded = bytearray()
    value = flavour
    while value >= 0x80:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    raw[position : end + 1] = encoded
    return body + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_schedule_replayed_under_another_asyncio_behaviour_raises() -> None:
    FLAVOUR["extra_step"] = False
    failure = quiesce.explore(flavoured, policy="random", raise_on_failure=False).failure
    assert failure is not None and "." in failure.schedule
    with pytest.raises(AssertionError, match="'c', 'b', 'a'"):
        quiesce.replay(flavoured, failure.schedule)
    try:
        FLAVOUR["extra_step"] = True
        # The recorded choices still fit the other behaviour's decisions, but pick other work:
        # without the digest this replay passed silently.
        with pytest.raises(quiesce.ReplayDiverged, match=r"first \d+ scheduling decision"):
            quiesce.replay(flavoured, failure.schedule)
        recorded_elsewhere = _retag(failure.schedule, 311)
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        message = (
            f"recorded on CPython 3.11, and this is CPython {here}"
            if here != "3.11"
            else "not the recorded run"
        )
        with pytest.raises(quiesce.ReplayDiverged, match=re.escape(message)):
            quiesce.replay(flavoured, recorded_elsewhere)
        with pytest.warns(quiesce.ReplayDivergedWarning, match="scheduling decision"):
            quiesce.replay(flavoured, failure.schedule, strict=False)
        # An untagged string (as written before tags) replays unchecked: it passes silently.
        assert quiesce.replay(flavoured, failure.schedule.split(".")[0]) is None
    finally:
        FLAVOUR["extra_step"] = False


def test_a_replay_that_stops_short_of_the_recorded_decisions_raises() -> None:
    async def gather(count: int) -> None:
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(count)))

    loop = quiesce.Loop(seed=3)
    try:
        loop.run_until_complete(gather(6))
        schedule = loop.schedule
    finally:
        loop.close()
    quiesce.replay(functools.partial(gather, 6), schedule)
    with pytest.raises(quiesce.ReplayDiverged, match=r"this run made \d+ scheduling decision"):
        quiesce.replay(functools.partial(gather, 2), schedule)
