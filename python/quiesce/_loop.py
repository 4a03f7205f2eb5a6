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
import math
import selectors
import threading
import time
import warnings
import weakref
from asyncio import format_helpers
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from quiesce._core import MAX_PCT_DEPTH, PCT_MAX_STREAK, CoreLoop, OutsideFacts
from quiesce._errors import BudgetExceeded, Deadlock, time_text
from quiesce._outside import outside_facts
from quiesce._queue_views import ReadyView, ScheduledView

if TYPE_CHECKING:
    from quiesce._report import Report

#: Default budget of ``run_until_blocked`` / ``step`` / ``advance``: enough for any sane
#: settle (several seconds of pure callbacks), small enough that a busy loop fails fast.
DEFAULT_MAX_STEPS = 10_000_000

#: Default ``watchdog`` of a :class:`Loop`: how many seconds of real time the loop waits for
#: outside activity (an executor job, a watched file descriptor, another thread) with nothing
#: else to do and nothing running, before it raises a "potential deadlock".
DEFAULT_WATCHDOG = 60.0

#: Default ``max_time`` of :meth:`Loop.run_until_idle`: one virtual day.
DEFAULT_MAX_TIME = 24 * 3600.0

#: Default ``turn_time`` of a :class:`Loop`: virtual seconds one turn of a loop that never
#: blocks is worth. A real turn costs more than a microsecond, so a busy loop never reaches a
#: timer sooner than it would on a real clock.
DEFAULT_TURN_TIME = 1e-6

_CLOCKS = ("virtual", "real")

#: Scheduling policies a Loop takes (see :class:`Loop`).
POLICIES = ("fifo", "random", "pct", "replay")

#: Default PCT bug depth: finds bugs that need up to two forced preemptions.
DEFAULT_PCT_DEPTH = 3

#: Default PCT horizon (expected number of scheduling decisions in a run), used when nothing
#: better is known; ``quiesce.explore`` measures it instead.
DEFAULT_PCT_HORIZON = 100


def _check_policy(policy: Optional[str], seed: Optional[int], schedule: Optional[str]) -> str:
    if schedule is not None and seed is not None:
        raise ValueError(
            "a schedule replays recorded decisions, so a seed would have no effect: pass "
            "schedule='q1-...' or seed=<int>, not both"
        )
    if policy is None:
        if schedule is not None:
            return "replay"
        return "fifo" if seed is None else "random"
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(map(repr, POLICIES))}, got {policy!r}")
    if policy in ("random", "pct") and seed is None:
        raise ValueError(f"policy={policy!r} draws its choices from a seed: pass seed=<int>")
    if (policy == "replay") != (schedule is not None):
        raise ValueError(
            "schedule= and policy='replay' go together: pass schedule='q1-...' "
            "(the string a failure printed) and leave policy unset"
        )
    return policy


def _check_positive_int(name: str, value: object, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _check_seed(seed: object) -> Optional[int]:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in range(0, 2**64), got {seed}")
    return seed


def _check_seconds(name: str, value: object) -> Optional[float]:
    """``None`` or a finite number >= 0, as a float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0 or None, got {value!r}")
    return float(value)


def _event_loop_policy() -> Optional[Any]:
    """asyncio's current event loop policy, without the deprecation warning of 3.14+; None
    where policies no longer exist (their removal is planned for 3.16)."""
    private = getattr(asyncio.events, "_get_event_loop_policy", None)
    if private is not None:  # 3.14+: what get_event_loop_policy() calls, minus the warning
        return private()
    public = getattr(asyncio, "get_event_loop_policy", None)
    if public is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return public()


def _current_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The loop set as current in this thread, without creating one (as
    ``asyncio.get_event_loop()`` does before 3.12) or warning."""
    policy = _event_loop_policy()
    if policy is None:
        # No policies: get_event_loop() only returns the loop set (or running), never makes one.
        try:
            return asyncio.get_event_loop()
        except RuntimeError:
            return None
    local = getattr(policy, "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def _set_current_loop(loop: Optional[asyncio.AbstractEventLoop]) -> None:
    """``asyncio.set_event_loop(loop)``, without the deprecation warning of 3.14+."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop(loop)


class Loop(CoreLoop, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """A deterministic asyncio event loop for tests.

    ``seed=None`` runs callbacks first-in first-out, like stock asyncio. An integer seed picks
    among runnable tasks pseudo-randomly, identically on every run and every supported Python,
    while keeping the orders correct asyncio code relies on (see the README); timers due at the
    same instant fire in a seeded order too.

    ``policy`` chooses how: ``"fifo"`` (stock order), ``"random"`` (uniform, the default when a
    seed is given), ``"pct"`` (probabilistic concurrency testing: seeded task priorities with
    ``pct_depth - 1`` priority drops spread over ``pct_horizon`` decisions; a task that wins
    ``pct_max_streak`` decisions in a row, default 64, drops below the others, so a polling
    loop cannot livelock), or ``"replay"``
    with ``schedule="q1-..."``: exactly the decisions a previous run recorded (see
    :attr:`schedule`).

    ``clock="virtual"`` (the default) starts ``time()`` at 0.0 and moves it only when nothing
    can run before the next timer, or when a test calls :meth:`advance`. ``clock="real"``
    follows ``time.monotonic()`` like stock asyncio.

    ``watchdog`` is how many seconds of real time the loop waits for outside activity alone
    (executor jobs, external sockets, other threads) with nothing running and no timer pending
    before it raises :class:`Deadlock` with ``kind="potential deadlock"``; ``None`` waits
    forever, as stock asyncio does.

    While outside work is in flight (an executor job, a running child process or thread, a
    socket whose peer is another process), the virtual clock follows real time up to the next
    timer. ``io_grace`` (seconds, default ``None``) lets external sockets go once they have been
    quiet that long: the clock then jumps as if they were idle (for suites that do not care
    about an external peer's clock). ``turn_time`` (default 1 µs) is what one turn of a loop
    that never blocks is worth on the virtual clock, so a busy ``sleep(0)`` loop waiting for a
    timer reaches it, as on a real clock; ``None`` turns that off.
    """

    if TYPE_CHECKING:
        # asyncio's private state that this class reads (typeshed does not declare it).
        _selector: selectors.BaseSelector
        _thread_id: Optional[int]
        _default_executor: Optional[concurrent.futures.ThreadPoolExecutor]

        def _process_events(self, event_list: List[Any]) -> None: ...

    def __init__(
        self,
        *,
        seed: Optional[int] = None,
        clock: str = "virtual",
        watchdog: Optional[float] = DEFAULT_WATCHDOG,
        policy: Optional[str] = None,
        schedule: Optional[str] = None,
        pct_depth: int = DEFAULT_PCT_DEPTH,
        pct_horizon: int = DEFAULT_PCT_HORIZON,
        pct_max_streak: int = PCT_MAX_STREAK,
        io_grace: Optional[float] = None,
        turn_time: Optional[float] = DEFAULT_TURN_TIME,
    ) -> None:
        seed = _check_seed(seed)
        if clock not in _CLOCKS:
            raise ValueError(f"clock must be 'virtual' or 'real', got {clock!r}")
        watchdog = _check_seconds("watchdog", watchdog)
        if watchdog == 0:
            raise ValueError("watchdog must be > 0 seconds, or None to wait forever")
        io_grace = _check_seconds("io_grace", io_grace)
        turn_time = _check_seconds("turn_time", turn_time)
        if turn_time == 0:
            raise ValueError("turn_time must be > 0 seconds, or None to turn busy turns off")
        if schedule is not None and not isinstance(schedule, str):
            raise TypeError(f"schedule must be a str like 'q1-AwI', got {type(schedule).__name__}")
        if schedule is not None:
            # As pasted from a report: surrounding blanks, or base64 padding, do no harm.
            schedule = schedule.strip().rstrip("=")
        policy = _check_policy(policy, seed, schedule)
        pct_depth = _check_positive_int("pct_depth", pct_depth, MAX_PCT_DEPTH)
        pct_horizon = _check_positive_int("pct_horizon", pct_horizon)
        pct_max_streak = _check_positive_int("pct_max_streak", pct_max_streak, 2**32 - 1)
        self._q_configure(
            policy,
            seed,
            pct_depth,
            pct_horizon,
            pct_max_streak,
            schedule,
            clock,
            time.get_clock_info("monotonic").resolution,
            watchdog,
            io_grace,
            turn_time,
        )
        self._q_policy = policy
        self._q_trace_log: Optional[List[Tuple[str, float]]] = None
        #: While a replay records its timeline: the recorder (see quiesce._timeline).
        self._q_timeline: Any = None
        self._q_faults_fired: List[Tuple[str, float]] = []
        self._q_seed = seed
        self._q_clock = clock
        self._q_watchdog = watchdog
        self._q_io_grace = io_grace
        self._q_turn_time = turn_time
        # Executors this loop ran jobs on (their idle workers are not threads to wait for).
        self._q_executors: weakref.WeakSet[concurrent.futures.Executor] = weakref.WeakSet()
        # quiesce.background() tasks and threads: they never count.
        self._q_background: weakref.WeakSet[asyncio.Task] = weakref.WeakSet()
        self._q_background_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        # Running child processes (each also counted as an executor job in the core).
        self._q_children: weakref.WeakSet[asyncio.SubprocessTransport] = weakref.WeakSet()
        self._q_idle_waiters: List[asyncio.Future] = []
        # What _outside.watched_descriptors learnt of each fd (kept while the file is the same).
        self._q_fd_cache: Dict[int, Any] = {}
        # The driving method and its time limit, for messages (the core enforces the limit).
        self._q_method = "run_until_complete"
        self._q_time_limit: Optional[float] = None
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
    def policy(self) -> str:
        """``"fifo"``, ``"random"``, ``"pct"`` or ``"replay"``."""
        return self._q_policy

    @property
    def schedule(self) -> str:
        """The schedule string of the scheduling decisions made so far (``"q1-"`` for stock
        order). ``quiesce.Loop(schedule=...)`` or ``quiesce.replay`` repeats them exactly."""
        return self._q_schedule()

    def decisions(self) -> List[tuple]:
        """Every scheduling decision made so far, as ``(kind, options, chosen, time)``:
        ``kind`` is ``"lane"`` (which task or callback runs next), ``"timer-tie"`` (which of
        the timers due at one instant fires next) or ``"fault"`` (a fault point);
        ``chosen`` 0 is what stock asyncio would do; ``time`` is the virtual time."""
        return self._q_decisions()

    @property
    def clock(self) -> str:
        """``"virtual"`` or ``"real"``."""
        return self._q_clock

    @property
    def watchdog(self) -> Optional[float]:
        """Seconds of real time to wait for outside activity alone (None: forever)."""
        return self._q_watchdog

    @property
    def io_grace(self) -> Optional[float]:
        """Seconds of quiet after which external sockets stop holding the virtual clock (None:
        they always hold it)."""
        return self._q_io_grace

    @property
    def turn_time(self) -> Optional[float]:
        """Virtual seconds a turn of a loop that never blocks is worth (None: nothing)."""
        return self._q_turn_time

    def report(self) -> Report:
        """A snapshot of what every task is doing and why: each task's state and await chain
        with ``file:line``, what it awaits in user terms, the locks it holds, the pending
        timers, the external activity in flight, and cycles of tasks waiting on each other.
        ``str()`` of it is the text :class:`Deadlock` shows."""
        from quiesce._report import build_report

        return build_report(self)

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
        self._q_require_virtual("advance")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
        seconds = self._q_validate_duration(float(seconds))
        self._q_drive("advance", "advance", max_steps, False, target=self.time() + seconds)

    def advance_to_next_timer(
        self, *, max_steps: Optional[int] = DEFAULT_MAX_STEPS
    ) -> Optional[float]:
        """Settles, then moves the virtual clock to the next pending timer, fires it (and any
        other timer due at that instant) and settles again. Returns the new ``time()``, or
        None (clock unmoved) if no timer is pending. Needs ``clock="virtual"``."""
        self._q_require_virtual("advance_to_next_timer")
        self.run_until_blocked(max_steps=max_steps)
        deadline = self._q_next_deadline()
        if deadline is None or math.isinf(deadline):
            return None
        self._q_drive("advance_to_next_timer", "advance", max_steps, False, target=deadline)
        return self.time()

    def run_until_idle(
        self,
        *,
        max_time: Optional[float] = DEFAULT_MAX_TIME,
        max_steps: Optional[int] = DEFAULT_MAX_STEPS,
    ) -> None:
        """Runs until nothing at all is scheduled: settles, jumps the virtual clock to the next
        timer, settles, and so on; waits in real time for outside activity in flight (executor
        jobs, watched file descriptors) rather than jumping past it. Timers of background tasks
        (:func:`quiesce.background`) do not keep it running.

        Raises :class:`BudgetExceeded` if the clock would move more than ``max_time`` virtual
        seconds (typically a periodic timer) or more than ``max_steps`` callbacks run in all
        (typically a busy loop); the message guesses the cause and shows :meth:`report`.
        ``None`` lifts a limit. Needs ``clock="virtual"``.
        """
        self._q_require_virtual("run_until_idle")
        self._q_run_idle("run_until_idle", max_time, max_steps)

    def _q_run_until_done(
        self,
        main: asyncio.Future[Any],
        method: str,
        max_time: Optional[float],
        max_steps: Optional[int],
    ) -> None:
        """Runs until ``main`` is done, as ``run_until_complete`` does, within ``max_time``
        seconds of virtual time and ``max_steps`` callbacks in all (``BudgetExceeded`` past
        either). Raises :class:`Deadlock` if ``main`` can never finish."""

        def stop(_done: asyncio.Future[Any]) -> None:
            self.stop()

        max_time = _check_seconds("max_time", max_time)
        started_time, started_ran = self.time(), self._q_stats()["total_ran"]
        limit = None if max_time is None else started_time + max_time
        main.add_done_callback(stop)
        try:
            # A callback's loop.stop() ends one drive early; keep going until main is done.
            while not main.done():
                steps_left = None
                if max_steps is not None:
                    steps_left = max(1, max_steps - (self._q_stats()["total_ran"] - started_ran))
                self._q_drive(method, "forever", steps_left, fast_path=False, time_limit=limit)
        finally:
            main.remove_done_callback(stop)

    def _q_run_idle(self, method: str, max_time: Optional[float], max_steps: Optional[int]) -> None:
        """``run_until_idle`` (on the real clock ``max_time`` never trips). A callback may stop
        it early, as ``run_forever``."""
        max_time = _check_seconds("max_time", max_time)
        limit = None if max_time is None else self.time() + max_time
        self._q_drive(method, "until_idle", max_steps, fast_path=False, time_limit=limit)

    def _q_require_virtual(self, method: str) -> None:
        self._q_check_drivable(method)
        if self._q_clock != "virtual":
            raise RuntimeError(
                f"{method}() moves the virtual clock, but this loop has clock='real'; "
                "create it with quiesce.Loop(clock='virtual')"
            )

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

    def _q_drive(
        self,
        method: str,
        mode: str,
        max_steps: Optional[int],
        fast_path: bool = True,
        *,
        target: Optional[float] = None,
        time_limit: Optional[float] = None,
    ) -> int:
        """Runs the loop in the core's run ``mode`` (see ``_core.CoreLoop._q_set_mode``) until
        the core says to return (or a callback stops it); returns how many callbacks ran."""
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}")
        if (
            fast_path
            and self._thread_id is None
            and not self._closed
            and asyncio._get_running_loop() is None
            and self._q_settled()
        ):
            # Already blocked: answer in O(1) without entering run_forever.
            return 0
        self._q_check_drivable(method)
        if self._q_clock != "virtual":
            time_limit = None
        self._q_method, self._q_time_limit = method, time_limit
        self._q_set_mode(mode, max_steps, target, time_limit)
        try:
            self.run_forever()
            return self._q_ran()
        finally:
            self._q_method, self._q_time_limit = "run_until_complete", None
            self._q_set_mode("forever", None)

    def close(self) -> None:
        """As asyncio's; first cancels the background tasks (:func:`quiesce.background`) still
        pending and lets them run their cleanup (settling at the current instant)."""
        pending = [task for task in list(self._q_background) if not task.done()]
        if pending and not self.is_running() and not self.is_closed():
            for task in pending:
                task.cancel()
            if asyncio._get_running_loop() is None:
                self.run_until_blocked()
        super().close()
        if self.is_closed():
            self._q_clear("owners")

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

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> Any:
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

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        """As asyncio's; the child counts as outside activity (like an executor job) until
        its exit is delivered, so the virtual clock does not jump past a process that is
        still running (its exit is watched by a thread, or from 3.14 on Linux by a pidfd
        reader, neither of which tells the loop the child may still call back)."""
        transport = await super()._make_subprocess_transport(  # type: ignore[misc]
            *args, **kwargs
        )
        # A list up to 3.13, a set from 3.14 on; either way asyncio resolves every waiter in it
        # once the child's exit has been delivered.
        exit_waiters = getattr(transport, "_exit_waiters", None)
        if transport.get_returncode() is None and isinstance(exit_waiters, (list, set)):
            self._q_executor_jobs(1)
            self._q_children.add(transport)
            exited = self.create_future()
            exited.add_done_callback(lambda _future: self._q_child_done(transport))
            if isinstance(exit_waiters, set):
                exit_waiters.add(exited)
            else:
                exit_waiters.append(exited)
        return transport

    def _q_child_done(self, transport: Any) -> None:
        if transport in self._q_children:
            self._q_children.discard(transport)
            self._q_executor_jobs(-1)

    # -- hooks called by the Rust core -------------------------------------------------------

    def _q_select(self, timeout: float) -> None:
        """Polls (``timeout`` 0) or waits up to ``timeout`` real seconds in the selector, and
        queues the I/O callbacks of what became ready. The core measures the time waited."""
        if timeout > 0:
            self._q_set_waiting(True)
            try:
                if self._q_has_ready():
                    timeout = 0.0  # queued by another thread before we marked ourselves waiting
                events = self._selector.select(timeout)
            finally:
                self._q_set_waiting(False)
        else:
            events = self._selector.select(0)
        self._process_events(events)

    def _q_outside(self) -> OutsideFacts:
        """What is in flight outside the loop, for the core's clock decision (see
        :mod:`quiesce._outside`)."""
        return outside_facts(self)

    def _q_fail(self, kind: str, when: Optional[float]) -> None:
        """The core decided the run cannot go on: raise what says why."""
        if kind == "over_time":
            limit = self._q_time_limit
            raise self._q_budget_error(
                f"{self._q_method}() would move the virtual clock to t={when!r}, past "
                f"its max_time (t={limit!r})",
                "a timer keeps being rescheduled (a periodic task or a retry loop)",
                periodic=True,
            )
        if kind == "background":
            raise self._q_deadlock_error(
                why=(
                    "the only pending timers belong to background tasks (quiesce.background), "
                    "which never count: nothing else can run"
                ),
            )
        raise self._q_deadlock_error(potential=kind == "potential")

    def _q_next_foreground_deadline(self) -> Optional[float]:
        """The earliest pending timer that does not wake a background task."""
        from quiesce._report import sleepers_of, timer_owner

        sleepers = sleepers_of(self._q_background)
        for handle in self._q_timer_handles():
            if not handle.cancelled() and timer_owner(handle, sleepers) is None:
                return float(handle.when())
        return None

    def _q_deadlock_error(self, *, potential: bool = False, why: str = "") -> Deadlock:
        report = self.report()
        if potential:
            waited_for = report.external.summary()
            why = why or (
                f"nothing has run for {self._q_watchdog:g} s of real time (the loop's watchdog), "
                "no timer is pending, and the only thing that could wake the loop is outside it "
                f"({waited_for}); it has not arrived. Raise the watchdog (watchdog=... of "
                "quiesce.Loop, quiesce.explore or @pytest.mark.quiesce; None waits forever) if "
                "that activity is just slow"
            )
        elif not why:
            why = (
                "no callback is runnable, no timer is pending, and nothing outside the loop "
                "(external I/O, signals, executor jobs, running threads) can make one runnable"
            )
            if report.external.idle_in_process:
                why += (
                    "; in-process sockets and parked threads (listed below) can only be woken "
                    "by this loop"
                )
        kind = "potential deadlock" if potential else "deadlock"
        header = f"{kind.capitalize()} at loop time {time_text(self.time())}: {why}."
        pending = [task.task for task in report.pending_tasks if task.task is not None]
        if not pending:
            header += (
                "\nNo task is pending: nothing can complete the awaited future or stop the "
                "loop, so it would wait forever."
            )
        return Deadlock(f"{header}\n\n{report}", pending, report=report, kind=kind)

    def _q_wake_idle_waiters(self) -> None:
        """Every other task is blocked: resume the ``wait_all_tasks_blocked()`` callers."""
        waiters, self._q_idle_waiters = self._q_idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _q_budget_exceeded(self) -> None:
        if all(handle._cancelled for handle in self._q_ready_handles()):
            # The budget ran out exactly: what is left would never run anyway.
            self._q_clear("ready")
            return
        ran = self._q_ran()
        raise self._q_budget_error(
            f"the loop ran {ran} callbacks at loop time {time_text(self.time())} without becoming "
            "blocked (its max_steps)",
            "a task never waits on anything durable, for example "
            "'while True: await asyncio.sleep(0)'",
            periodic=False,
        )

    def _q_budget_error(self, what: str, cause: str, *, periodic: bool) -> BudgetExceeded:
        report = self.report()
        if periodic:
            suspects = sorted({timer.task for timer in report.timers if timer.task})
            where = "Tasks sleeping on the next timers: " + ", ".join(map(repr, suspects))
            if not suspects and report.timers:
                where = f"Next timer: {report.timers[0]}"
            fix = "Pass a larger max_time (None: no limit), or mark the periodic task with "
            fix += "quiesce.background(task) so that it does not count."
        else:
            suspects = sorted(
                task.name for task in report.pending_tasks if task.state == "runnable"
            )
            where = "Tasks runnable when it stopped: " + ", ".join(map(repr, suspects))
            fix = "Pass max_steps=None to lift the limit, or a larger one if this much work is "
            fix += "expected."
        message = f"{what}. Likely cause: {cause}. {where}. {fix}\n\n{report}"
        pending = [task.task for task in report.pending_tasks if task.task is not None]
        return BudgetExceeded(message, pending, report=report)

    def _q_trace(self, entry: Any) -> None:
        """Called before each callback runs while tracing: the determinism self-check's log
        and a replay's timeline. Tracing stops once both are full."""
        from quiesce._explore import TRACE_LIMIT, describe_entry

        wanted = False
        log = self._q_trace_log
        if log is not None and len(log) < TRACE_LIMIT:
            log.append((describe_entry(entry), self.time()))
            wanted = len(log) < TRACE_LIMIT
        timeline = self._q_timeline
        if timeline is not None and timeline.entry(entry):
            wanted = True
        if not wanted:
            self._q_set_trace(False)

    def _q_callback_error(self, handle: Any, exc: BaseException) -> None:
        source = format_helpers._format_callback_source(handle._callback, handle._args)
        context: Dict[str, Any] = {
            "message": f"Exception in callback {source}",
            "exception": exc,
            "handle": handle,
        }
        self.call_exception_handler(context)
