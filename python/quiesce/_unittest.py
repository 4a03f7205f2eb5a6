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
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

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

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)
        self._quiesce_loop: Optional[Loop] = None

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
        loop = Loop(
            seed=self.quiesce_seed,
            clock=self.quiesce_clock,
            io_grace=self.quiesce_io_grace,
            watchdog=self.quiesce_watchdog,
        )
        self._quiesce_loop = loop
        asyncio.set_event_loop(loop)
        return loop

    def _quiesce_forget_loop(self) -> None:
        """After the run: unsets the current event loop and drops the (closed) loop."""
        if self._quiesce_loop is not None:
            self._quiesce_loop = None
            asyncio.set_event_loop(None)

    def run(self, result: Optional[unittest.TestResult] = None) -> Optional[unittest.TestResult]:
        """Runs the test on a new :class:`quiesce.Loop`, as ``IsolatedAsyncioTestCase.run``."""
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
