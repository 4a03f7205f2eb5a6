"""``quiesce.TestCase``: ``unittest.IsolatedAsyncioTestCase`` on a :class:`quiesce.Loop`.

Each test gets a fresh loop, as with the stock class; the loop is made at the point each
CPython version makes it (the least private hook there is):

- 3.13+: the public ``loop_factory`` attribute, given to ``asyncio.Runner``;
- 3.11, 3.12: ``_setupAsyncioRunner``, which makes the ``asyncio.Runner``;
- 3.9, 3.10: ``_setupAsyncioLoop``, which makes the loop and the task that runs the test's
  coroutines; and ``_callAsync``/``_callMaybeAsync``, so that after a deadlock that task is
  free again for ``asyncTearDown`` and the cleanups.

On every version the loop is in debug mode (as the stock class does) and is the current event
loop while the test runs (``asyncio.get_event_loop()`` in ``setUp`` returns it, and on 3.9
``asyncio.Event()`` made there binds to it); the current event loop is unset afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import unittest
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Optional, Tuple, Type

from quiesce._errors import Deadlock
from quiesce._loop import _CLOCKS, DEFAULT_WATCHDOG, Loop, _check_seconds, _check_seed


class TestCase(unittest.IsolatedAsyncioTestCase):
    """An ``IsolatedAsyncioTestCase`` whose event loop is a :class:`quiesce.Loop`.

    Each test runs on its own loop, on the virtual clock by default: ``await
    asyncio.sleep(3600)`` returns at once with ``self.loop.time()`` one hour later. A test whose
    coroutine waits for something that can never happen fails with :class:`quiesce.Deadlock`
    and the report of what every task waits for, instead of hanging.

    Configure the loop with class attributes: ``quiesce_seed`` (``None``: first in, first
    out; an int: a reproducible pseudo-random interleaving), ``quiesce_clock``
    (``"virtual"`` or ``"real"``), ``quiesce_io_grace`` (seconds after which a quiet socket
    to another process stops holding the virtual clock; ``None``, the default, never) and
    ``quiesce_watchdog`` (seconds of real time with nothing run and only outside activity
    pending before the test fails with a "potential deadlock"; default 60, ``None`` waits
    forever).

    ``self.loop`` is the test's loop, from ``setUp`` to the last cleanup. Inside an ``async``
    test method the loop is running, so the synchronous driving methods
    (``run_until_blocked()``, ``advance()``, ``step()``, ``run_until_idle()``) raise
    ``RuntimeError`` there; await instead: ``await asyncio.sleep(seconds)`` moves the virtual
    clock and ``await quiesce.wait_all_tasks_blocked()`` lets every other task run until it
    is blocked. A plain ``def`` test method (or a synchronous helper it calls) may drive the
    loop: ``self.loop.create_task(...)``, ``self.loop.run_until_blocked()``,
    ``self.loop.advance(60)``.

    After a deadlock, ``asyncTearDown`` and the cleanups still run. The deadlocked test's
    coroutine is cancelled when the loop is shut down after the cleanups (3.11+), or at once,
    before ``asyncTearDown`` (3.9 and 3.10, where one task runs all of the test's coroutines).
    """

    if TYPE_CHECKING:
        # Set by IsolatedAsyncioTestCase on 3.9 and 3.10 (typeshed does not declare them).
        _asyncioTestLoop: Optional[Loop]
        _asyncioLoopRunner: Callable[[asyncio.Future[Any]], Any]
        _asyncioCallsQueue: Any

    #: Scheduling seed of each test's loop: None for first in, first out, or an int.
    quiesce_seed: ClassVar[Optional[int]] = None
    #: Clock of each test's loop: "virtual" or "real".
    quiesce_clock: ClassVar[str] = "virtual"
    #: I/O grace of each test's loop (see quiesce.Loop): None, or seconds.
    quiesce_io_grace: ClassVar[Optional[float]] = None
    #: Watchdog of each test's loop (see quiesce.Loop): seconds > 0, or None to wait forever.
    quiesce_watchdog: ClassVar[Optional[float]] = DEFAULT_WATCHDOG
    #: Explore each test: run it (setUp to the last cleanup) under up to this many schedules,
    #: each on a fresh loop, and fail at the first failing run (None: run it once).
    quiesce_runs: ClassVar[Optional[int]] = None
    #: How those runs pick schedules, as in quiesce.explore: "auto" (the default), "random",
    #: "pct" or "fifo"; quiesce_seed is the exploration's seed.
    quiesce_policy: ClassVar[Optional[str]] = None
    #: Run each test once on this recorded schedule (the one a failing exploration printed).
    quiesce_replay: ClassVar[Optional[str]] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Checked when the class is defined: a bad value must fail loudly, not (on 3.9 and
        # 3.10, where the loop is made outside the per-test error handling) abort the run.
        super().__init_subclass__(**kwargs)
        try:
            _check_seed(cls.quiesce_seed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{cls.__qualname__}.quiesce_{exc}") from None
        if cls.quiesce_clock not in _CLOCKS:
            raise ValueError(
                f"{cls.__qualname__}.quiesce_clock must be 'virtual' or 'real', got "
                f"{cls.quiesce_clock!r}"
            )
        for name in ("io_grace", "watchdog"):
            try:
                seconds = _check_seconds(name, getattr(cls, f"quiesce_{name}"))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{cls.__qualname__}.quiesce_{exc}") from None
            if name == "watchdog" and seconds == 0:
                raise ValueError(
                    f"{cls.__qualname__}.quiesce_watchdog must be > 0 seconds, or None to wait "
                    "forever; got 0"
                )
        _check_exploration(cls)

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)
        self._quiesce_loop: Optional[Loop] = None
        #: The scheduling arguments of the next run's loop (an exploration's run sets them).
        self._quiesce_loop_options: Dict[str, Any] = {}
        #: The last run's loop: its schedule, decision counts and final time.
        self._quiesce_last_run: Tuple[str, Tuple[int, int, int], float] = ("q1-", (0, 0, 0), 0.0)

    @property
    def loop(self) -> Loop:
        """The :class:`quiesce.Loop` the test runs on, from ``setUp`` to the last cleanup."""
        loop = self._quiesce_loop
        if loop is None:
            raise RuntimeError(
                f"{type(self).__name__}.loop exists only while the test runs (from setUp to "
                "the last cleanup): each test gets a new quiesce.Loop"
            )
        return loop

    @loop.setter
    def loop(self, value: Loop) -> None:
        # Lets the common ``self.loop = asyncio.get_running_loop()`` in asyncSetUp stand.
        if value is not self._quiesce_loop:
            raise AttributeError(
                f"{type(self).__name__}.loop is the test's quiesce.Loop and cannot be "
                f"replaced (got {value!r})"
            )

    def _quiesce_new_loop(self) -> Loop:
        """Makes the test's loop and sets it as the current event loop."""
        options: Dict[str, Any] = {"seed": self.quiesce_seed, "clock": self.quiesce_clock}
        if "schedule" in self._quiesce_loop_options:
            del options["seed"]  # a recorded schedule makes every decision itself
        options.update(self._quiesce_loop_options)
        loop = Loop(io_grace=self.quiesce_io_grace, watchdog=self.quiesce_watchdog, **options)
        self._quiesce_loop = loop
        asyncio.set_event_loop(loop)
        return loop

    def _quiesce_forget_loop(self) -> None:
        """After the run: unsets the current event loop and drops the (closed) loop."""
        loop = self._quiesce_loop
        if loop is not None:
            self._quiesce_last_run = (loop.schedule, loop._q_decision_counts(), loop.time())
            self._quiesce_loop = None
            asyncio.set_event_loop(None)

    def run(self, result: Optional[unittest.TestResult] = None) -> Optional[unittest.TestResult]:
        """Runs the test on a new :class:`quiesce.Loop`, as ``IsolatedAsyncioTestCase.run``;
        with ``quiesce_runs``, under up to that many schedules (see the class settings), and
        with ``quiesce_replay`` once, on that schedule."""
        if self.quiesce_replay is not None:
            self._quiesce_loop_options = {"schedule": self.quiesce_replay}
        elif self.quiesce_runs is not None:
            from quiesce._unittest_explore import explore_test_case

            if result is None:
                result = self.defaultTestResult()
                result.startTestRun()
                try:
                    explore_test_case(self, result)
                finally:
                    result.stopTestRun()
                return result
            explore_test_case(self, result)
            return result
        return self._quiesce_run_once(result)

    def _quiesce_run_once(
        self, result: Optional[unittest.TestResult]
    ) -> Optional[unittest.TestResult]:
        """One run of the test, ``IsolatedAsyncioTestCase.run`` on a new loop."""
        if getattr(self, "_asyncioRunner", None) is not None:
            # 3.11+: the last run's (closed) runner; a case is made to run once, an
            # exploration runs it again.
            self._asyncioRunner = None
        try:
            return super().run(result)
        finally:
            self._quiesce_forget_loop()

    def debug(self) -> None:
        """Runs the test without collecting the result, as ``IsolatedAsyncioTestCase.debug``."""
        super().debug()
        self._quiesce_forget_loop()

    if sys.version_info >= (3, 13):

        def loop_factory(self) -> Loop:
            """Makes each test's loop (``asyncio.Runner`` calls ``self.loop_factory()``)."""
            return self._quiesce_new_loop()

    elif sys.version_info >= (3, 11):

        def _setupAsyncioRunner(self) -> None:
            assert getattr(self, "_asyncioRunner", None) is None, "asyncio runner is already set"
            runner = asyncio.Runner(debug=True, loop_factory=self._quiesce_new_loop)
            self._asyncioRunner = runner

    else:

        def _setupAsyncioLoop(self) -> None:
            assert self._asyncioTestLoop is None, "asyncio test loop already initialized"
            loop = self._quiesce_new_loop()
            loop.set_debug(True)
            self._asyncioTestLoop = loop
            fut = loop.create_future()
            self._asyncioCallsTask = loop.create_task(self._asyncioLoopRunner(fut))
            loop.run_until_complete(fut)

        def _callAsync(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            assert self._asyncioTestLoop is not None, "asyncio test loop is not initialized"
            ret = func(*args, **kwargs)
            assert inspect.isawaitable(ret), f"{func!r} returned non-awaitable"
            return self._quiesce_await(ret)

        def _callMaybeAsync(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            assert self._asyncioTestLoop is not None, "asyncio test loop is not initialized"
            ret = func(*args, **kwargs)
            if inspect.isawaitable(ret):
                return self._quiesce_await(ret)
            return ret

        def _quiesce_await(self, awaitable: Any) -> Any:
            """Has the runner task await ``awaitable`` and waits for the result. If that
            deadlocks, the runner task is stuck awaiting it: cancels it there (the runner
            task itself carries on) so that it can run asyncTearDown and the cleanups."""
            loop = self._asyncioTestLoop
            assert loop is not None, "asyncio test loop is not initialized"
            fut = loop.create_future()
            self._asyncioCallsQueue.put_nowait((fut, awaitable))
            try:
                return loop.run_until_complete(fut)
            except Deadlock:
                fut.cancel()
                runner = self._asyncioCallsTask
                if not runner.done() and not loop.is_closed():
                    runner.cancel()
                    loop.run_until_blocked()
                raise


def _check_exploration(cls: Type[TestCase]) -> None:
    """Checks a :class:`TestCase` subclass's ``quiesce_runs``, ``quiesce_policy`` and
    ``quiesce_replay`` (raising ``TypeError`` or ``ValueError`` naming the setting)."""
    from quiesce._unittest_explore import TEST_CASE_POLICIES

    name = cls.__qualname__
    runs = cls.quiesce_runs
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
        raise ValueError(f"{name}.quiesce_runs must be a positive int or None; got {runs!r}")
    policy = cls.quiesce_policy
    if policy is not None and policy not in TEST_CASE_POLICIES:
        why = (
            " (the bounded search steers each run from the last one's choices: use "
            "quiesce.explore for it)"
            if policy == "dfs"
            else ""
        )
        raise ValueError(
            f"{name}.quiesce_policy must be one of {', '.join(map(repr, TEST_CASE_POLICIES))} "
            f"or None; got {policy!r}{why}"
        )
    if policy is not None and runs is None:
        raise ValueError(
            f"{name}.quiesce_policy explores the tests, and needs quiesce_runs (how many "
            "schedules to try), e.g. quiesce_runs = 100"
        )
    replay = cls.quiesce_replay
    if replay is not None and not isinstance(replay, str):
        raise TypeError(
            f"{name}.quiesce_replay must be a schedule string like 'q1-AwI', or None; got "
            f"{type(replay).__name__}"
        )
