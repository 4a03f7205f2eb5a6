"""``quiesce.Loop``: asyncio's selector loop with a Rust scheduling core.

The Rust ``CoreLoop`` comes first in the MRO and supplies scheduling: ``call_soon``,
``call_at``, ``call_later``, ``call_soon_threadsafe``, ``time`` and the turn (``_run_once``).
asyncio's ``SelectorEventLoop`` supplies everything else unchanged: ``run_forever`` and
``run_until_complete``, tasks and futures, sockets, transports, servers, subprocesses, signals
and executors. The methods here drive the loop from synchronous test code and answer the core's
hooks (``_q_*``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from asyncio import format_helpers
from typing import Any, Callable, Dict, List, Optional

from quiesce._core import CoreLoop
from quiesce._errors import BudgetExceeded, Deadlock
from quiesce._queue_views import ReadyView, ScheduledView

#: Default budget of ``run_until_blocked`` / ``step`` / ``advance``: enough for any sane
#: settle (several seconds of pure callbacks), small enough that a busy loop fails fast.
DEFAULT_MAX_STEPS = 10_000_000

#: How long the loop waits for other live threads (that could still call
#: ``call_soon_threadsafe``) before it reports a deadlock anyway.
THREAD_GRACE_SECONDS = 30.0

#: While waiting on other threads, how often to look again whether they are still alive.
_THREAD_POLL_SECONDS = 0.05

#: Stock asyncio's cap on one selector wait (base_events.MAXIMUM_SELECT_TIMEOUT).
_MAX_SELECT_TIMEOUT = 24 * 3600.0

_CLOCKS = ("virtual", "real")


def _check_seed(seed: object) -> Optional[int]:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in range(0, 2**64), got {seed}")
    return seed


class Loop(CoreLoop, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """A deterministic asyncio event loop for tests.

    ``seed=None`` runs callbacks first-in first-out, like stock asyncio. An integer seed picks
    among runnable tasks pseudo-randomly, identically on every run and every supported Python,
    while keeping the orders correct asyncio code relies on (see the README).

    ``clock="virtual"`` (the default) starts ``time()`` at 0.0 and moves it only when nothing
    can run before the next timer, or when a test calls :meth:`advance`. ``clock="real"``
    follows ``time.monotonic()`` like stock asyncio.
    """

    def __init__(self, *, seed: Optional[int] = None, clock: str = "virtual") -> None:
        seed = _check_seed(seed)
        if clock not in _CLOCKS:
            raise ValueError(f"clock must be 'virtual' or 'real', got {clock!r}")
        self._q_configure(seed, clock, time.get_clock_info("monotonic").resolution)
        self._q_seed = seed
        self._q_clock = clock
        self._q_executors: weakref.WeakSet[concurrent.futures.Executor] = weakref.WeakSet()
        self._q_threads_waiting_since: Optional[float] = None
        self._q_threads_waiting_ran = -1
        super().__init__()
        fd_map = getattr(self._selector, "_fd_to_key", None)
        if not isinstance(fd_map, dict):
            raise RuntimeError(
                f"quiesce needs a stdlib selector (got {type(self._selector).__name__}): "
                "it reads the selector's fd map to know which file descriptors are watched"
            )
        self._q_watch(fd_map, getattr(self, "_signal_handlers", None))

    # -- what this loop is -------------------------------------------------------------------

    @property
    def seed(self) -> Optional[int]:
        """The scheduling seed, or None for FIFO order."""
        return self._q_seed

    @property
    def clock(self) -> str:
        """``"virtual"`` or ``"real"``."""
        return self._q_clock

    def __repr__(self) -> str:
        clock = getattr(self, "_q_clock", "?")
        seed = getattr(self, "_q_seed", None)
        running = getattr(self, "_thread_id", None) is not None
        return (
            f"<quiesce.Loop clock={clock} seed={seed} running={running} "
            f"closed={self.is_closed()} time={self.time()!r}>"
        )

    # -- driving the loop from synchronous test code -----------------------------------------

    def run_until_blocked(self, *, max_steps: Optional[int] = DEFAULT_MAX_STEPS) -> None:
        """Runs everything that can run at the current instant, then returns.

        That is: ready callbacks (including chains of plain ``call_soon`` callbacks and the
        tasks they wake), timers already due, and I/O that is already ready (polled without
        waiting). Returns when nothing can run without time passing or something external
        happening. Never moves the clock.

        A ``loop.stop()`` from a callback ends it early, as it ends ``run_forever``.
        Raises :class:`BudgetExceeded` if more than ``max_steps`` callbacks run (``None``: no
        limit), ``RuntimeError`` if the loop is running or closed.
        """
        self._q_drive("run_until_blocked", "until_blocked", max_steps)

    def step(self) -> bool:
        """Runs exactly one callback (polling due timers and ready I/O first if nothing is
        queued). Returns whether a callback ran. Never moves the clock."""
        return self._q_drive("step", "step", None) > 0

    def advance(self, seconds: float, *, max_steps: Optional[int] = DEFAULT_MAX_STEPS) -> None:
        """Moves the virtual clock forward by ``seconds``, settling at every instant.

        Timers due in the window fire in deadline order, each with ``time()`` equal to its own
        deadline, and the loop runs until blocked after each instant. Ends at exactly the old
        ``time() + seconds``. ``max_steps`` bounds each settle, as in :meth:`run_until_blocked`.
        Needs ``clock="virtual"``.
        """
        self._q_check_drivable("advance")
        if self._q_clock != "virtual":
            raise RuntimeError(
                "advance() moves the virtual clock, but this loop has clock='real'; "
                "create it with quiesce.Loop(clock='virtual')"
            )
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
        seconds = self._q_validate_duration(float(seconds))
        target = self.time() + seconds
        self.run_until_blocked(max_steps=max_steps)
        while True:
            deadline = self._q_next_deadline()
            if deadline is None or deadline > target:
                break
            self._q_move_clock(deadline)
            self.run_until_blocked(max_steps=max_steps)
        self._q_move_clock(target)
        self.run_until_blocked(max_steps=max_steps)

    def _q_check_drivable(self, method: str) -> None:
        if self.is_closed():
            raise RuntimeError(f"{method}() on a closed loop: create a new quiesce.Loop")
        if self.is_running():
            raise RuntimeError(
                f"{method}() was called while the loop is running; it drives the loop from "
                "synchronous test code. Inside a coroutine, await something instead "
                "(for example asyncio.sleep(0) to let other tasks run)."
            )
        if asyncio._get_running_loop() is not None:
            raise RuntimeError(
                f"{method}() was called while another event loop is running in this thread"
            )

    def _q_drive(self, method: str, mode: str, max_steps: Optional[int]) -> int:
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
        if (
            self._thread_id is None
            and not self._closed
            and asyncio._get_running_loop() is None
            and self._q_settled()
        ):
            # Already blocked: answer in O(1) without entering run_forever.
            return 0
        self._q_check_drivable(method)
        self._q_set_mode(mode, max_steps)
        try:
            self.run_forever()
            return self._q_ran()
        finally:
            self._q_set_mode("forever", None)

    # -- stock internals that live in Rust ---------------------------------------------------

    @property
    def _ready(self) -> ReadyView:  # type: ignore[override]
        return ReadyView(self)

    @_ready.setter
    def _ready(self, value: Any) -> None:
        # BaseEventLoop.__init__ assigns an empty deque; the queue itself lives in Rust.
        if value:
            raise ValueError("quiesce.Loop._ready can only be reset to empty")

    @property
    def _scheduled(self) -> ScheduledView:  # type: ignore[override]
        return ScheduledView(self)

    @_scheduled.setter
    def _scheduled(self, value: Any) -> None:
        if value:
            raise ValueError("quiesce.Loop._scheduled can only be reset to empty")

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        """As asyncio's; the job counts as outside activity until its result is delivered, so
        the virtual clock does not jump past it and the loop waits for it instead of
        reporting a deadlock."""
        future = super().run_in_executor(executor, func, *args)
        self._q_executor_jobs(1)
        future.add_done_callback(self._q_executor_job_done)
        used = executor if executor is not None else self._default_executor
        if used is not None:
            self._q_executors.add(used)
        return future

    def _q_executor_job_done(self, _future: Any) -> None:
        self._q_executor_jobs(-1)

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        """As asyncio's; the joining thread counts as an executor job, so on the virtual clock
        its timeout (3.12+) does not fire before the executor had a chance to finish."""
        self._q_executor_jobs(1)
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self._q_executor_jobs(-1)

    # -- hooks called by the Rust core -------------------------------------------------------

    def _q_poll(self, timeout: float) -> None:
        self._process_events(self._selector.select(timeout))

    def _q_wait(self, timeout: Optional[float]) -> None:
        """Waits in real time for outside activity, at most ``timeout`` seconds (the delay to
        the next timer). The virtual clock holds still meanwhile; if the whole delay passes in
        real time with nothing arriving, it jumps to that timer, as a real clock would have."""
        limit = _MAX_SELECT_TIMEOUT if timeout is None else min(timeout, _MAX_SELECT_TIMEOUT)
        self._q_set_waiting(True)
        try:
            if self._q_has_ready():
                limit = 0.0  # queued by another thread before we marked ourselves waiting
            started = time.monotonic()
            events = self._selector.select(limit)
            waited = time.monotonic() - started
        finally:
            self._q_set_waiting(False)
        self._process_events(events)
        if self._q_clock == "virtual" and timeout is not None and waited >= timeout:
            if not events and not self._q_has_ready():
                deadline = self._q_next_deadline()
                if deadline is not None:
                    self._q_move_clock(deadline)

    def _q_live_threads(self) -> List[threading.Thread]:
        """Other live threads that could still call ``call_soon_threadsafe``: every thread but
        this one, minus idle workers of executors this loop used (no job in flight)."""
        idle_workers: set = set()
        if self._q_executor_jobs(0) == 0:
            for executor in list(self._q_executors):
                idle_workers.update(getattr(executor, "_threads", ()))
        current = threading.current_thread()
        return [
            thread
            for thread in threading.enumerate()
            if thread is not current and thread not in idle_workers and thread.is_alive()
        ]

    def _q_deadlock(self) -> None:
        """Nothing is runnable, no timer pending, nothing external in flight. If other threads
        are alive they might still call ``call_soon_threadsafe``: wait a little (up to a grace
        period without progress); otherwise raise :class:`Deadlock`."""
        threads = self._q_live_threads()
        if self._q_has_ready():
            # A thread queued work (call_soon_threadsafe) and maybe exited while we looked.
            return
        if threads:
            ran = self._q_stats()["total_ran"]
            now = time.monotonic()
            if ran != self._q_threads_waiting_ran or self._q_threads_waiting_since is None:
                self._q_threads_waiting_since = now
                self._q_threads_waiting_ran = ran
            if now - self._q_threads_waiting_since < THREAD_GRACE_SECONDS:
                self._q_wait(_THREAD_POLL_SECONDS)
                return
        self._q_threads_waiting_since = None
        raise self._q_deadlock_error(threads)

    def _q_deadlock_error(self, threads: List[threading.Thread]) -> Deadlock:
        from quiesce._tasks_report import describe_pending_tasks

        tasks = [task for task in asyncio.all_tasks(self) if not task.done()]
        if threads:
            names = ", ".join(repr(thread.name) for thread in threads)
            why = (
                f"nothing has run for {THREAD_GRACE_SECONDS:g} s of real time while waiting for "
                f"other live threads ({names}) that might call call_soon_threadsafe(); "
                "no callback is runnable and no timer, I/O or executor job is pending"
            )
        else:
            why = (
                "no callback is runnable, no timer is pending, and nothing outside the loop "
                "(I/O, signals, executor jobs, threads) can make one runnable"
            )
        header = f"Deadlock at loop time {self.time()!r}: {why}."
        if tasks:
            body = f"{len(tasks)} pending task(s), each waiting for something that cannot happen:"
        else:
            body = (
                "No task is pending: nothing can complete the awaited future or stop the loop, "
                "so it would wait forever."
            )
        return Deadlock(f"{header}\n{body}\n\n{describe_pending_tasks(tasks)}", tasks)

    def _q_budget_exceeded(self) -> None:
        from quiesce._tasks_report import describe_pending_tasks

        if all(handle._cancelled for handle in self._q_ready_handles()):
            # The budget ran out exactly: what is left would never run anyway.
            self._q_clear("ready")
            return

        ran = self._q_ran()
        tasks = [task for task in asyncio.all_tasks(self) if not task.done()]
        raise BudgetExceeded(
            f"the loop ran {ran} callbacks at loop time {self.time()!r} without becoming "
            "blocked: a task is probably busy-looping (for example "
            "'while True: await asyncio.sleep(0)'). Pass max_steps=None to lift the limit, "
            "or a larger max_steps if this much work is expected.\n\n"
            + describe_pending_tasks(tasks),
            tasks,
        )

    def _q_callback_error(self, handle: Any, exc: BaseException) -> None:
        source = format_helpers._format_callback_source(handle._callback, handle._args)
        context: Dict[str, Any] = {
            "message": f"Exception in callback {source}",
            "exception": exc,
            "handle": handle,
        }
        self.call_exception_handler(context)
