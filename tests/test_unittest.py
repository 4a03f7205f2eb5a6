"""``quiesce.TestCase``: ``unittest.IsolatedAsyncioTestCase`` on a quiesce.Loop.

Each test defines a small TestCase class and runs it with unittest's own loader and runner.
"""

from __future__ import annotations

import asyncio
import io
import re
import unittest
from typing import Any, List, Tuple, Type

import pytest

import quiesce
import quiesce._loop


def run_case(case: Type[unittest.TestCase]) -> Tuple[unittest.TestResult, str]:
    """Runs every test of ``case`` with unittest's runner; returns the result and its output."""
    suite = unittest.TestLoader().loadTestsFromTestCase(case)
    stream = io.StringIO()
    # warnings="error": a warning inside the tests fails them (the runner's default would
    # only print it).
    runner = unittest.TextTestRunner(stream=stream, verbosity=2, warnings="error")
    result = runner.run(suite)
    return result, stream.getvalue()


def assert_passed(result: unittest.TestResult, output: str, count: int) -> None:
    assert result.wasSuccessful(), output
    assert result.testsRun == count, output


def current_loop() -> Any:
    """The current event loop of this thread, or None (without making one or warning)."""
    return quiesce._loop._current_loop()


def test_is_an_isolated_asyncio_test_case() -> None:
    assert issubclass(quiesce.TestCase, unittest.IsolatedAsyncioTestCase)
    assert quiesce.TestCase.quiesce_seed is None
    assert quiesce.TestCase.quiesce_clock == "virtual"


def test_set_up_tear_down_and_cleanups_run_in_order_on_one_quiesce_loop() -> None:
    log: List[str] = []
    loops: List[Any] = []

    class Case(quiesce.TestCase):
        def setUp(self) -> None:
            log.append("setUp")
            loops.append(self.loop)
            loops.append(current_loop())

        async def asyncSetUp(self) -> None:
            log.append("asyncSetUp")
            loops.append(asyncio.get_running_loop())
            self.addAsyncCleanup(self.async_cleanup)
            self.addCleanup(log.append, "cleanup")

        async def test_it(self) -> None:
            log.append("test")
            loops.append(asyncio.get_running_loop())

        async def asyncTearDown(self) -> None:
            log.append("asyncTearDown")
            loops.append(asyncio.get_running_loop())

        def tearDown(self) -> None:
            log.append("tearDown")

        async def async_cleanup(self) -> None:
            log.append("async cleanup")
            loops.append(asyncio.get_running_loop())

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert log == [
        "setUp",
        "asyncSetUp",
        "test",
        "asyncTearDown",
        "tearDown",
        "cleanup",
        "async cleanup",
    ]
    loop = loops[0]
    assert isinstance(loop, quiesce.Loop)
    assert all(other is loop for other in loops)
    assert loop.is_closed()
    assert loop.get_debug()  # debug mode, as IsolatedAsyncioTestCase's loop
    assert current_loop() is None  # unset after the test


def test_sleeps_run_on_the_virtual_clock() -> None:
    times: List[float] = []

    class Case(quiesce.TestCase):
        async def asyncSetUp(self) -> None:
            await asyncio.sleep(5)
            times.append(self.loop.time())

        async def test_an_hour(self) -> None:
            for _ in range(60):
                await asyncio.sleep(60)
            times.append(self.loop.time())
            times.append(asyncio.get_running_loop().time())

        async def asyncTearDown(self) -> None:
            await asyncio.sleep(1)
            times.append(self.loop.time())

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert times == [5.0, 3605.0, 3605.0, 3606.0]


def test_each_test_gets_a_new_loop_starting_at_zero() -> None:
    seen: List[Tuple[int, float]] = []

    class Case(quiesce.TestCase):
        async def test_a(self) -> None:
            seen.append((id(self.loop), self.loop.time()))
            await asyncio.sleep(10)

        async def test_b(self) -> None:
            seen.append((id(self.loop), self.loop.time()))
            await asyncio.sleep(10)

    result, output = run_case(Case)
    assert_passed(result, output, 2)
    assert [when for _, when in seen] == [0.0, 0.0]


def test_seed_and_clock_come_from_class_attributes() -> None:
    settings: List[Any] = []

    class Seeded(quiesce.TestCase):
        quiesce_seed = 1234

        async def test_it(self) -> None:
            settings.append((self.loop.seed, self.loop.clock))

    class RealClock(quiesce.TestCase):
        quiesce_clock = "real"

        async def test_it(self) -> None:
            settings.append((self.loop.seed, self.loop.clock))

    class Grace(quiesce.TestCase):
        quiesce_io_grace = 0.5

        async def test_it(self) -> None:
            settings.append((self.loop.seed, self.loop.io_grace))

    class Watchdog(quiesce.TestCase):
        quiesce_watchdog = None

        async def test_it(self) -> None:
            settings.append((self.loop.seed, self.loop.watchdog))

    for case in (Seeded, RealClock, Grace, Watchdog):
        result, output = run_case(case)
        assert_passed(result, output, 1)
    assert settings == [(1234, "virtual"), (None, "real"), (None, 0.5), (None, None)]


def test_a_deadlocked_test_fails_with_the_report_and_teardown_still_runs() -> None:
    log: List[str] = []

    class Case(quiesce.TestCase):
        async def asyncSetUp(self) -> None:
            self.never_set = asyncio.Event()

        async def test_stuck_on_an_event(self) -> None:
            waiter = asyncio.get_running_loop().create_task(
                self.never_set.wait(), name="event-waiter"
            )
            await waiter

        async def asyncTearDown(self) -> None:
            log.append("asyncTearDown")
            await asyncio.sleep(1)
            log.append(f"slept until {self.loop.time()}")

        async def test_z_next_test_runs_normally(self) -> None:
            await asyncio.sleep(1)
            log.append("next test")

    result, output = run_case(Case)
    assert result.testsRun == 2
    assert not result.failures
    assert len(result.errors) == 1, output
    failed, text = result.errors[0]
    assert failed.id().endswith("test_stuck_on_an_event")
    assert "Deadlock" in text
    assert "Deadlock at loop time 0.0" in text
    assert "Task 'event-waiter'" in text  # the report names the stuck task
    assert "test_stuck_on_an_event" in text  # and where the test waits
    assert log == [
        "asyncTearDown",
        "slept until 1.0",
        "next test",
        "asyncTearDown",
        "slept until 2.0",
    ]


def test_a_deadlock_in_async_set_up_fails_the_test() -> None:
    ran: List[str] = []

    class Case(quiesce.TestCase):
        async def asyncSetUp(self) -> None:
            lock = asyncio.Lock()
            await lock.acquire()
            await lock.acquire()  # taken by this very task: never free again

        async def test_never_reached(self) -> None:
            ran.append("test")

        async def async_cleanup(self) -> None:
            ran.append("cleanup")

        def setUp(self) -> None:
            self.addAsyncCleanup(self.async_cleanup)

    result, output = run_case(Case)
    assert len(result.errors) == 1, output
    assert "Deadlock at loop time 0.0" in result.errors[0][1]
    assert "Lock" in result.errors[0][1]
    assert ran == ["cleanup"]


def test_a_synchronous_test_method_drives_the_loop() -> None:
    observed: List[Any] = []

    class Case(quiesce.TestCase):
        def test_drive(self) -> None:
            log: List[str] = []
            event = asyncio.Event()

            async def worker() -> None:
                log.append("waiting")
                await event.wait()
                await asyncio.sleep(30)
                log.append("done")

            task = self.loop.create_task(worker())
            self.loop.run_until_blocked()
            observed.append(list(log))
            event.set()
            self.loop.run_until_blocked()
            observed.append(self.loop.time())
            self.loop.advance(30)
            observed.append((list(log), task.done(), self.loop.time()))

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert observed == [["waiting"], 0.0, (["waiting", "done"], True, 30.0)]


def test_driving_methods_refuse_inside_an_async_test() -> None:
    messages: List[str] = []

    class Case(quiesce.TestCase):
        async def test_it(self) -> None:
            with self.assertRaises(RuntimeError) as raised:
                self.loop.run_until_blocked()
            messages.append(str(raised.exception))

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert "while the loop is running" in messages[0]


def test_wait_all_tasks_blocked_inside_an_async_test() -> None:
    observed: List[Any] = []

    class Case(quiesce.TestCase):
        async def test_it(self) -> None:
            log: List[str] = []
            queue: asyncio.Queue[int] = asyncio.Queue()

            async def consumer() -> None:
                while True:
                    log.append(f"got {await queue.get()}")

            task = asyncio.get_running_loop().create_task(consumer())
            queue.put_nowait(1)
            queue.put_nowait(2)
            await quiesce.wait_all_tasks_blocked()
            observed.append(list(log))
            task.cancel()

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert observed == [["got 1", "got 2"]]


def test_the_loop_is_the_current_event_loop_from_set_up() -> None:
    observed: List[Any] = []

    class Case(quiesce.TestCase):
        def setUp(self) -> None:
            # On 3.9 an Event binds to the current loop when made: it must be the test's.
            self.event = asyncio.Event()
            observed.append(current_loop() is self.loop)

        async def test_it(self) -> None:
            asyncio.get_running_loop().call_later(7, self.event.set)
            await self.event.wait()
            observed.append(self.loop.time())

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert observed == [True, 7.0]


def test_leftover_tasks_are_cancelled_when_the_test_ends() -> None:
    log: List[str] = []

    class Case(quiesce.TestCase):
        async def test_leaves_a_task(self) -> None:
            async def forever() -> None:
                try:
                    await asyncio.sleep(10**6)
                except asyncio.CancelledError:
                    log.append(f"cancelled at {asyncio.get_running_loop().time()}")
                    raise

            asyncio.get_running_loop().create_task(forever())
            await asyncio.sleep(2)

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert log == ["cancelled at 2.0"]


def test_failures_are_reported_as_usual() -> None:
    class Case(quiesce.TestCase):
        async def test_fails(self) -> None:
            await asyncio.sleep(1)
            self.assertEqual(self.loop.time(), 2.0)

    result, output = run_case(Case)
    assert len(result.failures) == 1, output
    assert "AssertionError: 1.0 != 2.0" in result.failures[0][1]


def test_loop_exists_only_while_the_test_runs() -> None:
    class Case(quiesce.TestCase):
        async def test_it(self) -> None:
            pass

    case = Case("test_it")
    with pytest.raises(RuntimeError, match="only while the test runs"):
        case.loop  # noqa: B018
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful()
    with pytest.raises(RuntimeError, match="only while the test runs"):
        case.loop  # noqa: B018


def test_assigning_the_running_loop_to_self_loop_is_allowed() -> None:
    errors: List[str] = []

    class Case(quiesce.TestCase):
        async def asyncSetUp(self) -> None:
            self.loop = asyncio.get_running_loop()  # a common idiom; the same loop
            try:
                self.loop = object()  # type: ignore[assignment]
            except AttributeError as error:
                errors.append(str(error))

        async def test_it(self) -> None:
            self.assertIsInstance(self.loop, quiesce.Loop)

    result, output = run_case(Case)
    assert_passed(result, output, 1)
    assert len(errors) == 1 and "cannot be replaced" in errors[0]


def test_debug_runs_the_test_without_a_result() -> None:
    log: List[float] = []

    class Case(quiesce.TestCase):
        async def test_it(self) -> None:
            await asyncio.sleep(42)
            log.append(self.loop.time())

    Case("test_it").debug()
    assert log == [42.0]
    assert current_loop() is None


@pytest.mark.parametrize(
    ("attribute", "value", "error", "message"),
    [
        ("quiesce_clock", "wall", ValueError, "Bad.quiesce_clock must be 'virtual' or 'real'"),
        ("quiesce_seed", -1, ValueError, "Bad.quiesce_seed must be in range(0, 2**64)"),
        ("quiesce_seed", "7", TypeError, "Bad.quiesce_seed must be an int or None"),
        ("quiesce_io_grace", -1, ValueError, "Bad.quiesce_io_grace must be a finite number"),
        ("quiesce_watchdog", 0, ValueError, "Bad.quiesce_watchdog must be > 0 seconds"),
        ("quiesce_watchdog", "1", TypeError, "Bad.quiesce_watchdog must be"),
        ("quiesce_runs", 0, ValueError, "Bad.quiesce_runs must be a positive int or None"),
        ("quiesce_runs", True, ValueError, "Bad.quiesce_runs must be a positive int or None"),
        ("quiesce_policy", "lucky", ValueError, "Bad.quiesce_policy must be one of 'auto'"),
        ("quiesce_policy", "dfs", ValueError, "use quiesce.explore for it"),
        ("quiesce_policy", "pct", ValueError, "Bad.quiesce_policy explores the tests, and needs"),
        ("quiesce_replay", 7, TypeError, "Bad.quiesce_replay must be a schedule string"),
    ],
)
def test_bad_class_settings_fail_when_the_class_is_defined(
    attribute: str, value: Any, error: Type[Exception], message: str
) -> None:
    # Not later, inside the run: on 3.9 and 3.10 that would abort the whole unittest run.
    with pytest.raises(error, match=re.escape(message)):
        type("Bad", (quiesce.TestCase,), {attribute: value})


# -- exploration: quiesce_runs, quiesce_policy, quiesce_replay ----------------------------------


def race_case(**settings: Any) -> Tuple[Type[quiesce.TestCase], List[str]]:
    """A TestCase whose test_order fails when five workers finish in reverse order, and
    whose test_fine always passes; with ``settings`` as class attributes. The list records
    each setUp and each cleanup."""
    log: List[str] = []

    class Race(quiesce.TestCase):
        def setUp(self) -> None:
            self.order: List[str] = []
            log.append("setUp")
            self.addCleanup(log.append, "cleanup")

        async def test_order(self) -> None:
            async def worker(name: str) -> None:
                await asyncio.sleep(0)
                self.order.append(name)

            await asyncio.gather(*(worker(name) for name in "abcde"))
            self.assertNotEqual(self.order, list("edcba"))

        async def test_fine(self) -> None:
            await asyncio.sleep(5)
            self.assertEqual(self.loop.time(), 5)

    for name, value in settings.items():
        setattr(Race, name, value)
    return Race, log


def run_one(case: Type[unittest.TestCase], name: str) -> Tuple[unittest.TestResult, str]:
    stream = io.StringIO()
    runner = unittest.TextTestRunner(stream=stream, verbosity=2, warnings="error")
    result = runner.run(case(name))
    return result, stream.getvalue()


def test_quiesce_runs_explores_each_test_until_its_first_failure() -> None:
    case, log = race_case(quiesce_runs=400, quiesce_policy="random")
    result, output = run_one(case, "test_order")
    assert result.testsRun == 1 and len(result.failures) == 1, output
    found = re.search(r"quiesce.explore: run (\d+) failed \(random, seed (\d+)\)", output)
    assert found is not None, output
    run = int(found.group(1))
    assert 1 < run < 400 and int(found.group(2)) == run - 1
    # Every run is a whole one: setUp to the last cleanup, on a fresh loop.
    assert log == ["setUp", "cleanup"] * run
    assert "self.assertNotEqual(self.order" in output
    assert "unittest/case.py" not in output.split("Replay exactly")[1]
    schedule = re.search(r'quiesce_replay = "(q1-[^"]+)"', output)
    assert schedule is not None, output

    # The printed setting reruns exactly that run, once.
    replayed, log = race_case(quiesce_replay=schedule.group(1))
    result, output = run_one(replayed, "test_order")
    assert len(result.failures) == 1 and "['e', 'd', 'c', 'b', 'a']" in output, output
    assert log == ["setUp", "cleanup"]


def test_a_passing_exploration_makes_every_run_and_reports_one_success() -> None:
    case, log = race_case(quiesce_runs=25)
    result, output = run_one(case, "test_fine")
    assert result.wasSuccessful() and result.testsRun == 1, output
    assert log == ["setUp", "cleanup"] * 25
    fifo, log = race_case(quiesce_runs=25, quiesce_policy="fifo")
    result, output = run_one(fifo, "test_order")
    assert result.wasSuccessful(), output
    assert log == ["setUp", "cleanup"]  # stock order is one schedule


def test_exploration_runs_the_schedules_quiesce_explore_runs() -> None:
    """Run i of a TestCase's exploration is run i of quiesce.explore with the same settings:
    the same strategy and seed (PCT's horizon from the stock-order run)."""
    seen: List[Tuple[Any, Any]] = []

    class Case(quiesce.TestCase):
        quiesce_runs = 8
        quiesce_policy = "pct"
        quiesce_seed = 11

        async def test_it(self) -> None:
            seen.append((self.loop.policy, self.loop.seed))

    result, output = run_one(Case, "test_it")
    assert result.wasSuccessful(), output
    assert seen == [("replay", None)] + [("pct", 11 + index) for index in range(1, 8)]


def test_a_skip_inside_an_explored_test_is_reported_once() -> None:
    class Case(quiesce.TestCase):
        quiesce_runs = 50

        async def test_it(self) -> None:
            self.skipTest("not here")

    result, _ = run_one(Case, "test_it")
    assert result.testsRun == 1 and result.skipped == [(result.skipped[0][0], "not here")]
