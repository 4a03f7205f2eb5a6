"""``quiesce.explore`` / ``quiesce.replay``: run an async test under many schedules, stop at
the first failure, and reproduce it exactly from a schedule string.

Every run happens on a fresh :class:`quiesce.Loop` whose policy makes the scheduling
decisions (which task goes next, which of the timers due at one instant fires first, whether a
fault point fires); the Rust core records each decision, and the schedule string encodes the
non-default ones, with a digest of all of them. Replaying a schedule makes the same decisions
again, so a deterministic test fails the same way on any machine; where the run no longer
matches the digest (the test changed, or another CPython's asyncio schedules it differently),
the replay says so instead of passing silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import sys
import threading
import traceback
import unittest
import warnings
from array import array
from dataclasses import dataclass, field
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Generator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from quiesce._core import MAX_PCT_DEPTH, CoreLoop
from quiesce._errors import BudgetExceeded, _StoppedWithReport
from quiesce._loop import (
    DEFAULT_MAX_TIME,
    DEFAULT_PCT_DEPTH,
    DEFAULT_WATCHDOG,
    Loop,
    _check_seconds,
    _check_seed,
    _current_loop,
    _set_current_loop,
)
from quiesce._teardown import cancel_and_shut_down
from quiesce._timeline import Timeline, TimelineRecorder, callback_and_task, coroutine_name
from quiesce._timeline import write as write_timeline

#: A test for :func:`explore`: a callable with no arguments returning a fresh coroutine.
TestFactory = Callable[[], Awaitable[Any]]

#: Exploration strategies :func:`explore` takes.
STRATEGIES = ("auto", "random", "pct", "dfs", "fifo")

#: Default number of runs of :func:`explore`.
DEFAULT_RUNS = 200

#: Default delay bound of the bounded exhaustive search (``policy="dfs"``).
DEFAULT_BOUND = 2

#: Default callback budget of each run of :func:`explore`, :func:`replay` and
#: :func:`check_determinism`: a run past it fails with :class:`quiesce.BudgetExceeded` (a
#: livelock, most likely). Far below the loop's own default because exploration runs small
#: tests many times, and a livelocked run costs the whole budget.
DEFAULT_EXPLORE_MAX_STEPS = 1_000_000

#: Runs :func:`explore` may spend shrinking a failing schedule.
SHRINK_RUNS = 200

#: Callbacks the determinism check records per run: a divergence shows up early, and the
#: millions of callbacks of a livelock would only cost memory.
TRACE_LIMIT = 100_000

#: What ``policy="auto"`` cycles through after its first run (stock order, measured).
#: ``"pct-far"`` is PCT that lets one task win up to ``FAR_AHEAD_STREAK`` decisions in a row
#: (``policy="pct"`` demotes it after 64): starvation bugs need one task far ahead, and the
#: other bugs of tests/buggy_programs.py are found as fast either way.
_PORTFOLIO: Tuple[Tuple[str, int], ...] = (
    ("random", 0),
    ("pct-far", 2),
    ("pct-far", 3),
    ("random", 0),
    ("pct-far", 1),
)

#: Decisions in a row a task may win under ``"pct-far"``: far more than a polling loop that
#: gives up after a few hundred tries, far fewer than a run's step budget, so a fair polling
#: loop still ends (no false livelock).
FAR_AHEAD_STREAK = 1024

Decision = Tuple[str, int, int, float]


class ExplorationFailed(AssertionError):
    """:func:`explore` found a failing schedule. ``failure`` describes it (the error, the
    seed, the schedule string and the line that replays it), ``result`` the whole exploration.
    """

    def __init__(self, result: ExploreResult) -> None:
        assert result.failure is not None
        super().__init__(str(result.failure))
        self.result = result
        self.failure: Failure = result.failure

    @property
    def schedule(self) -> str:
        """The failing run's schedule string."""
        return self.failure.schedule

    @property
    def seed(self) -> Optional[int]:
        """The failing run's seed (None for stock order and the bounded search)."""
        return self.failure.seed


class ReplayDiverged(AssertionError):
    """:func:`replay` could not follow the schedule: at some decision it recorded a choice
    that this run did not have (the test, or something it depends on, changed or is not
    deterministic), and the test passed."""


class ReplayDivergedWarning(UserWarning):
    """What ``quiesce.replay(..., strict=False)`` warns with instead of raising
    :class:`ReplayDiverged`."""


class NondeterminismError(AssertionError):
    """The same schedule, run twice, did not make the same decisions or run the same
    callbacks: something outside the loop's control steers the test. The message names the
    first difference and the likely cause."""


@dataclass(frozen=True)
class Failure:
    """One failing run found by :func:`explore`."""

    #: 1-based number of the run among those explored.
    run: int
    #: The strategy of that run, e.g. ``"random"``, ``"pct(depth=3)"``, ``"dfs(delays<=2)"``.
    policy: str
    #: The run's seed (None for stock order and the bounded search).
    seed: Optional[int]
    #: The schedule string: ``quiesce.replay(test, schedule)`` reproduces the run.
    schedule: str
    #: What the test raised (a :class:`quiesce.Deadlock` for a deadlock), or the first
    #: exception reported to the loop's exception handler.
    error: BaseException
    #: Virtual time when the run ended.
    time: float
    #: Scheduling decisions the run made, and how many of them differ from stock order.
    decisions: int
    deviations: int
    #: Fault and hold points that fired, as ``(name, virtual time)``.
    faults: Tuple[Tuple[str, float], ...]
    #: The ``__qualname__`` of the test, for the replay line.
    test_name: str
    #: Whether replaying the schedule failed the same way again (None: not checked).
    reproduced: Optional[bool] = None
    #: Deviations of the failing run before :func:`explore` shrank its schedule, and the runs
    #: that took (None: not shrunk).
    shrunk_from: Optional[int] = None
    shrink_runs: int = 0
    #: If the determinism check saw two replays differ: where and why (else None).
    nondeterminism: Optional[str] = None
    #: For a saved schedule replayed before the runs (a failure database's): where it came
    #: from; None for a run of the exploration.
    origin: Optional[str] = None
    #: What replays the run where ``quiesce.replay(test, schedule)`` does not apply (a
    #: :class:`quiesce.TestCase`'s class setting); None for the ``quiesce.replay`` line.
    replay_hint: Optional[str] = None

    def replay_line(self) -> str:
        """The line that replays this run: ``quiesce.replay(test, "q1-...")``."""
        if self.replay_hint is not None:
            return self.replay_hint
        return f'quiesce.replay({self.test_name}, "{self.schedule}")'

    def __str__(self) -> str:
        seed = "" if self.seed is None else f", seed {self.seed}"
        which = (
            f"run {self.run} failed ({self.policy}{seed})"
            if self.origin is None
            else f"{self.origin} failed again"
        )
        lines = [
            f"quiesce.explore: {which} at virtual time "
            f"{self.time!r}, after {self.decisions} scheduling decision(s), {self.deviations} "
            "of them different from stock asyncio order.",
            "Replay exactly:",
            f"    {self.replay_line()}",
        ]
        if self.shrunk_from is not None and self.shrunk_from != self.deviations:
            lines.append(
                f"Shrunk from {self.shrunk_from} to {self.deviations} deviation(s) from stock "
                f"order in {self.shrink_runs} run(s); the replay line reproduces the shrunk run."
            )
        if self.faults:
            fired = ", ".join(f"{name!r} at t={when!r}" for name, when in self.faults)
            lines.append(f"Fault points that fired: {fired}")
        if self.reproduced and not self.nondeterminism:
            lines.append("Checked: two replays fail the same way and make the same decisions.")
        elif self.reproduced:
            lines.append(
                "Warning: two replays failed the same way, but the test is not deterministic "
                "under quiesce, so the replay may not reproduce it elsewhere (see below)."
            )
        elif self.reproduced is False:
            lines.append(
                "Warning: replaying the schedule did NOT fail the same way; the test is not "
                "deterministic under quiesce (see below)."
            )
        if self.nondeterminism:
            lines.append(self.nondeterminism)
        lines.append("")
        lines.append(_describe_error(self.error))
        return "\n".join(lines)


@dataclass
class ExploreResult:
    """What :func:`explore` did: how many runs under which strategy, and the failure if one
    was found."""

    strategy: str
    seed: int
    runs: int = 0
    failure: Optional[Failure] = None
    #: For ``policy="dfs"``: every schedule within ``bound`` delays was run.
    exhausted: bool = False
    bound: Optional[int] = None
    #: Distinct schedules run.
    schedules: int = 0
    #: Most scheduling decisions in one run.
    max_decisions: int = 0
    #: ``(number, count)`` if only one shard's runs were made (see ``--quiesce-shard``).
    shard: Optional[Tuple[int, int]] = None
    #: Saved failing schedules replayed before the runs (counted in :attr:`runs`).
    saved_runs: int = 0
    #: With a shard sharing its progress: the index (0-based) of a lower failing run that
    #: another shard (its owner) reports; this shard then reports no failure of its own.
    failure_elsewhere: Optional[int] = None

    @property
    def ok(self) -> bool:
        """No failure found."""
        return self.failure is None

    def __str__(self) -> str:
        if self.failure is not None:
            return str(self.failure)
        shard = "" if self.shard is None else f", shard {self.shard[0]} of {self.shard[1]}"
        text = (
            f"quiesce.explore: {self.runs} run(s) passed ({self.strategy}, seed {self.seed}"
            f"{shard}); {self.schedules} distinct schedule(s), up to {self.max_decisions} "
            "decision(s) per run."
        )
        if self.saved_runs:
            text += f" {self.saved_runs} of the runs replayed saved failing schedules."
        if self.bound is not None:
            if self.exhausted:
                text += f" Every schedule with at most {self.bound} delay(s) was run."
            else:
                text += (
                    f" The run budget ended before every schedule with at most {self.bound} "
                    "delay(s) was run."
                )
        return text


@dataclass
class _Outcome:
    error: Optional[BaseException]
    schedule: str
    #: The first ``TRACE_LIMIT`` decisions, when tracing or when the run failed; else empty.
    decisions: List[Decision]
    #: (decisions, lane decisions, deviations from stock order).
    counts: Tuple[int, int, int]
    time: float
    faults: List[Tuple[str, float]]
    mismatch: Optional[Tuple[int, str, int, int]]
    #: For a replay of a tagged schedule: (recorded decisions, recorded interpreter, decisions
    #: made) if this run decided otherwise than the recorded one; else None.
    drift: Optional[Tuple[int, int, int]] = None
    trace: Optional[List[Tuple[str, float]]] = None
    evidence: Dict[str, bool] = field(default_factory=dict)
    #: For the bounded search: every decision's options (compact), and the chosen indices up
    #: to the last non-zero one.
    choices: Optional[Tuple[Sequence[int], List[int]]] = None
    #: The run's timeline, when one was recorded.
    timeline: Optional[Timeline] = None


def describe_entry(entry: Any) -> str:
    """A stable description of a ready-queue entry for the determinism check: what it will
    run, without addresses or per-process counters."""
    callback, task = callback_and_task(entry)
    what = getattr(callback, "__name__", type(callback).__name__)
    if task is not None:
        return f"task {coroutine_name(task)}: {what}"
    return getattr(callback, "__qualname__", what)


def _describe_error(error: BaseException) -> str:
    if isinstance(error, _StoppedWithReport):
        return f"quiesce.{type(error).__qualname__}: {error}"
    tb = error.__traceback__
    # Start at the test's own frames, not at the runners' around it (quiesce's, re-raising
    # its result or setting up the pytest plugin's fixtures; unittest's and asyncio's, for a
    # quiesce.TestCase).
    while tb is not None and _is_runner_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb)).rstrip()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_RUNNER_DIRS = (
    _PACKAGE_DIR,
    os.path.dirname(os.path.abspath(unittest.__file__)) + os.sep,
    os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep,
)


def _is_runner_file(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_RUNNER_DIRS)


def _test_name(test: object) -> str:
    """How the replay line names ``test``: its qualified name (a partial's function's)."""
    while isinstance(test, functools.partial):
        test = test.func
    return getattr(test, "__qualname__", None) or getattr(test, "__name__", None) or "test"


def _check_test(test: object, caller: str) -> TestFactory:
    if asyncio.iscoroutine(test):
        test.close()
        raise TypeError(
            f"{caller}() got a coroutine object; pass the async function itself "
            f"({caller}(test), not {caller}(test())): every run needs a fresh coroutine"
        )
    if not callable(test):
        raise TypeError(
            f"{caller}() needs a callable returning a fresh coroutine (an async def function "
            f"with no arguments), got {type(test).__name__}"
        )
    return test  # type: ignore[return-value]


def _check_count(name: str, value: object, minimum: int, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _check_run_budgets(
    max_time: object, max_steps: object, watchdog: object
) -> Tuple[Optional[float], Optional[int], Optional[float]]:
    """The per-run budgets, checked as :class:`quiesce.Loop` checks them."""
    checked_time = _check_seconds("max_time", max_time)
    checked_steps = None if max_steps is None else _check_count("max_steps", max_steps, 1)
    checked_watchdog = _check_seconds("watchdog", watchdog)
    if checked_watchdog == 0:
        raise ValueError("watchdog must be > 0 seconds, or None to wait forever")
    return checked_time, checked_steps, checked_watchdog


def _dispose(loop: Loop) -> None:
    """Cancels what is left (within a bounded grace period: a task that refuses to die must
    neither hang the exploration nor hide the run's own outcome), shuts down, closes."""
    try:
        cancel_and_shut_down(loop)
    finally:
        loop.close()
        # A loop is freed by the cycle collector, which does not count native memory: drop
        # the (possibly long) record of decisions now rather than with the loop.
        loop._q_clear("log")


def _run_once(
    test: TestFactory,
    loop_options: Dict[str, Any],
    *,
    trace: bool = False,
    decisions: bool = False,
    timeline: Optional[TimelineRecorder] = None,
    max_time: Optional[float],
    max_steps: Optional[int],
    watchdog: Optional[float] = DEFAULT_WATCHDOG,
    io_grace: Optional[float] = None,
) -> _Outcome:
    """One run of ``test`` on a fresh loop: the coroutine runs as the main task until it
    finishes; a deadlock, a budget overrun, the test's exception or an exception reported to
    the loop's handler is the run's error. With ``decisions`` the run's choices are kept
    compactly for the bounded search; the first ``TRACE_LIMIT`` decisions are copied out when
    tracing or when it failed."""
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "quiesce.explore()/replay() run their own event loops; call them from synchronous "
            "code, not from inside a running loop"
        )
    loop = Loop(watchdog=watchdog, io_grace=io_grace, **loop_options)
    reported: List[Dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    if trace:
        loop._q_trace_log = []
        loop._q_set_trace(True)
    if timeline is not None:
        timeline.install(loop)
        loop._q_timeline = timeline
        loop._q_set_trace(True)
    threads_before = set(threading.enumerate())
    previous = _current_loop()
    _set_current_loop(loop)
    error: Optional[BaseException] = None
    evidence: Dict[str, bool] = {}
    try:
        coro = test()
        if not asyncio.iscoroutine(coro):
            raise TypeError(
                "the test must return a fresh coroutine each time it is called (an async def "
                f"function with no arguments), but it returned {type(coro).__name__}"
            )
        main = loop.create_task(coro)
        try:
            loop._q_run_until_done(
                main, "explore", max_time if loop.clock == "virtual" else None, max_steps
            )
            main.result()
        except (Exception, asyncio.CancelledError) as exc:
            error = exc
        if error is None:
            for context in reported:
                exception = context.get("exception")
                if isinstance(exception, asyncio.CancelledError):
                    continue
                error = exception or RuntimeError(context.get("message", "unhandled error"))
                break
        evidence = {
            "threads": bool(set(threading.enumerate()) - threads_before)
            or getattr(loop, "_default_executor", None) is not None,
            "io": len(loop._selector.get_map()) > 1,
            "real clock": loop.clock == "real",
        }
        return _Outcome(
            error=error,
            schedule=loop.schedule,
            decisions=loop._q_decisions(TRACE_LIMIT) if trace or error is not None else [],
            counts=loop._q_decision_counts(),
            time=loop.time(),
            faults=list(loop._q_faults_fired),
            mismatch=loop._q_mismatch(),
            drift=loop._q_drift(),
            trace=loop._q_trace_log,
            evidence=evidence,
            choices=_compact_choices(loop) if decisions else None,
            timeline=None if timeline is None else timeline.finish(loop, _ending(error)),
        )
    finally:
        loop._q_set_trace(False)
        _dispose(loop)
        _set_current_loop(previous)


def _ending(error: Optional[BaseException]) -> str:
    if error is None:
        return "passed"
    first = str(error).splitlines()[0] if str(error) else ""
    return (
        f"failed: {type(error).__name__}: {first}" if first else f"failed: {type(error).__name__}"
    )


def _compact_choices(loop: Loop) -> Tuple[Sequence[int], List[int]]:
    options, chosen = loop._q_decision_choices()
    return array("I", options), chosen


def _first_difference(first: _Outcome, second: _Outcome) -> Optional[str]:
    """Where two runs of one schedule differ, and the likely cause; None if they do not."""
    trace_a, trace_b = first.trace or [], second.trace or []
    index = next(
        (i for i, (a, b) in enumerate(zip(trace_a, trace_b)) if a != b),
        None if len(trace_a) == len(trace_b) else min(len(trace_a), len(trace_b)),
    )
    decision = next(
        (i for i, (a, b) in enumerate(zip(first.decisions, second.decisions)) if a != b),
        None
        if len(first.decisions) == len(second.decisions)
        else min(len(first.decisions), len(second.decisions)),
    )
    beyond = decision is None and (first.schedule, first.counts) != (second.schedule, second.counts)
    if index is None and decision is None and not beyond:
        return None
    lines = ["Determinism check: two replays of this schedule differ."]
    causes: List[str] = []
    if index is not None:
        a = trace_a[index] if index < len(trace_a) else ("(nothing: the run ended)", first.time)
        b = trace_b[index] if index < len(trace_b) else ("(nothing: the run ended)", second.time)
        lines.append(f"First differing callback: #{index + 1}")
        lines.append(f"    first run:  {a[0]} at t={a[1]!r}")
        lines.append(f"    second run: {b[0]} at t={b[1]!r}")
        later_a = {label for label, _ in trace_a[index:]}
        later_b = {label for label, _ in trace_b[index:]}
        if a[0] == b[0] and a[1] != b[1]:
            causes.append(
                "the same work ran at a different virtual time: a wall-clock read "
                "(time.time(), time.monotonic(), datetime.now()) or real I/O decided a delay"
            )
        elif a[0] in later_b or b[0] in later_a:
            causes.append(
                "the same work was queued in a different order: iteration over a set, or a "
                "dict keyed by objects (asyncio.all_tasks() is a set; so is a set of tasks or "
                "connections); sort it by something stable (a name) before iterating"
            )
    if beyond:
        lines.append(
            f"The first {len(first.decisions):,} scheduling decisions match; later ones differ "
            f"({first.counts[0]:,} decisions in the first run, {second.counts[0]:,} in the second)."
        )
    if decision is not None:
        lines.append(f"First differing scheduling decision: #{decision + 1}")
        for label, run in (("first run", first), ("second run", second)):
            if decision < len(run.decisions):
                kind, options, chosen, when = run.decisions[decision]
                lines.append(
                    f"    {label + ':':<12}{kind}, choice {chosen} of {options} options, t={when!r}"
                )
            else:
                lines.append(f"    {label + ':':<12}(no decision: the run ended)")
    if first.evidence.get("threads") or second.evidence.get("threads"):
        causes.append(
            "threads or executor jobs (run_in_executor, asyncio.to_thread) finish at "
            "real-time instants"
        )
    if first.evidence.get("io") or second.evidence.get("io"):
        causes.append("real I/O (sockets, pipes, subprocesses) completes at real-time instants")
    if first.evidence.get("real clock"):
        causes.append("the loop runs on the real clock: use clock='virtual'")
    causes.append(
        "state kept between runs (module globals, caches, class attributes) or unseeded "
        "randomness (random, uuid.uuid4(), os.urandom())"
    )
    lines.append("Likely cause, most likely first: " + "; or ".join(causes) + ".")
    return "\n".join(lines)


def _same_failure(original: BaseException, again: Optional[BaseException]) -> bool:
    """Whether ``again`` is the failure ``original`` is: the same exception type raised from
    the same place (file and line of the innermost frame), as Hypothesis checks against
    slipping to another bug. A test with two assertions fails with two different bugs."""
    return (
        again is not None
        and type(again) is type(original)
        and _raising_place(again) == _raising_place(original)
    )


def _raising_place(error: BaseException) -> Optional[Tuple[str, int]]:
    """Where ``error`` was raised (None for quiesce's own verdicts, which carry a report, not
    a traceback: a deadlock, a budget overrun)."""
    if isinstance(error, _StoppedWithReport):
        return None
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def explore(
    test: TestFactory,
    *,
    runs: int = DEFAULT_RUNS,
    policy: str = "auto",
    seed: int = 0,
    pct_depth: int = DEFAULT_PCT_DEPTH,
    bound: int = DEFAULT_BOUND,
    clock: str = "virtual",
    max_time: Optional[float] = DEFAULT_MAX_TIME,
    max_steps: Optional[int] = DEFAULT_EXPLORE_MAX_STEPS,
    watchdog: Optional[float] = DEFAULT_WATCHDOG,
    io_grace: Optional[float] = None,
    check_determinism: bool = True,
    shrink: bool = True,
    raise_on_failure: bool = True,
) -> ExploreResult:
    """Runs ``test`` (an async function with no arguments, or any callable returning a fresh
    coroutine) under up to ``runs`` schedules, each on a fresh :class:`quiesce.Loop`, and
    stops at the first failure: an exception from the test, a :class:`quiesce.Deadlock`, a
    :class:`quiesce.BudgetExceeded` (a run past ``max_time`` virtual seconds or ``max_steps``
    callbacks), or an exception reported to the loop's handler (a task's exception never
    retrieved, a failing callback).

    ``policy``:

    * ``"auto"`` (default): the stock order first, then random, PCT at depth 2, PCT at depth
      3, random, PCT at depth 1, in turn; its PCT lets one task win up to 1,024 decisions in a
      row (for starvation bugs) where ``policy="pct"`` allows 64. A good first choice.
    * ``"random"``: every decision uniformly at random, run *i* with seed ``seed + i``.
    * ``"pct"``: probabilistic concurrency testing with bug depth ``pct_depth``: finds, with
      a guaranteed probability per run, bugs that need up to ``pct_depth - 1`` forced
      preemptions. The first run is stock order; its scheduling decisions are the horizon
      PCT spreads its priority changes over.
    * ``"dfs"``: bounded exhaustive search: every schedule that strays at most ``bound``
      steps from stock order, fewest first; ``result.exhausted`` says whether all were run.
    * ``"fifo"``: stock order only (one run).

    On failure it raises :class:`ExplorationFailed` (an ``AssertionError``), whose message
    names the seed, the schedule string and the line that replays it; with
    ``raise_on_failure=False`` it returns the :class:`ExploreResult` instead. With ``shrink``
    (default) a failing random or PCT schedule is first shrunk: up to 200 more runs look for
    the fewest deviations from stock order that still fail the same way (the same exception
    type from the same line; another failure is another bug), so
    the schedule to read and replay is as short as it can be. With ``check_determinism``
    (default) the failing schedule is then replayed twice, and the failure says whether it
    reproduced, or where two replays diverged and why.

    Each run may run ``max_steps`` callbacks (default one million) and ``max_time`` virtual
    seconds before it fails with :class:`quiesce.BudgetExceeded`; ``watchdog`` and ``io_grace``
    are each run's loop's (see :class:`quiesce.Loop`).
    """
    test = _check_test(test, "explore")
    settings = _checked_settings(
        runs=runs,
        policy=policy,
        seed=seed,
        pct_depth=pct_depth,
        bound=bound,
        clock=clock,
        max_time=max_time,
        max_steps=max_steps,
        watchdog=watchdog,
        io_grace=io_grace,
        check_determinism=check_determinism,
        shrink=shrink,
    )
    result = _explore(test, settings)
    if result.failure is not None and raise_on_failure:
        raise ExplorationFailed(result)
    return result


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of one exploration."""

    runs: int
    policy: str
    seed: int
    pct_depth: int
    bound: int
    clock: str
    run_options: Dict[str, Any]
    check_determinism: bool = True
    shrink: bool = True


def _checked_settings(
    *,
    runs: int = DEFAULT_RUNS,
    policy: str = "auto",
    seed: int = 0,
    pct_depth: int = DEFAULT_PCT_DEPTH,
    bound: int = DEFAULT_BOUND,
    clock: str = "virtual",
    max_time: Optional[float] = DEFAULT_MAX_TIME,
    max_steps: Optional[int] = DEFAULT_EXPLORE_MAX_STEPS,
    watchdog: Optional[float] = DEFAULT_WATCHDOG,
    io_grace: Optional[float] = None,
    check_determinism: bool = True,
    shrink: bool = True,
) -> _Settings:
    """:func:`explore`'s keyword arguments, checked (a clear ``TypeError`` or ``ValueError``
    for a bad one)."""
    return _Settings(
        runs=_check_count("runs", runs, 1),
        policy=_check_policy(policy),
        seed=_check_explore_seed(seed),
        pct_depth=_check_count("pct_depth", pct_depth, 1, MAX_PCT_DEPTH),
        bound=_check_count("bound", bound, 0),
        clock=clock,
        run_options=_run_options(max_time, max_steps, watchdog, io_grace),
        check_determinism=check_determinism,
        shrink=shrink,
    )


def _check_policy(policy: object) -> str:
    if policy not in STRATEGIES:
        raise ValueError(
            f"policy must be one of {', '.join(map(repr, STRATEGIES))}, got {policy!r}"
        )
    return str(policy)


def _check_explore_seed(seed: object) -> int:
    checked = _check_seed(seed)
    if checked is None:
        raise TypeError("seed must be an int, got None")
    return checked


def _run_options(
    max_time: Optional[float],
    max_steps: Optional[int],
    watchdog: Optional[float],
    io_grace: Optional[float],
) -> Dict[str, Any]:
    max_time, max_steps, watchdog = _check_run_budgets(max_time, max_steps, watchdog)
    return {
        "max_time": max_time,
        "max_steps": max_steps,
        "watchdog": watchdog,
        "io_grace": _check_seconds("io_grace", io_grace),
    }


@dataclass
class SavedSchedule:
    """A failing schedule found before (by a failure database), replayed before the runs of
    an exploration; ``origin`` says where it came from, for the failure's message."""

    schedule: str
    origin: str
    #: After the replay: ``"failed"``, ``"passed"``, or ``"stale"`` (the schedule no longer
    #: fits the test); None if it was not replayed (an earlier one failed).
    verdict: Optional[str] = None


class ShardProgress:
    """What the other shards of one exploration have done, for :func:`_explore` with a
    shard: shards that share one (pytest-xdist workers) stop early and skip runs another
    shard has made. The default shares nothing."""

    #: Whether other shards see this one's progress (then only the shard owning the first
    #: failing run reports it).
    shared = False

    def record(self, passed_through: int, failed: Optional[int]) -> None:
        """This shard's own runs below ``passed_through`` passed; ``failed`` is the lowest
        failing run index it knows (None: none)."""

    def lowest_failure(self) -> Optional[int]:
        """The lowest failing run index another shard has recorded, or None."""
        return None

    def refresh(self) -> None:
        """The next question sees the other shards' latest records (answers may be a little
        stale otherwise, which costs runs, never correctness)."""

    def passed_elsewhere(self, index: int) -> bool:
        """Whether the shard owning run ``index`` recorded that it passed."""
        return False


@dataclass(frozen=True)
class Shard:
    """The runs of one exploration that one process makes: run indices (0-based) ``i`` with
    ``i % count == number - 1``. Every shard, whatever the count, makes the same run ``i``
    (its plan depends only on ``i``), so together they make exactly the runs of the whole
    exploration; a shard that finds a failure makes the lower runs no other shard has
    recorded as passed, so the failure it reports is the one with the lowest index."""

    number: int
    count: int
    progress: ShardProgress = field(default_factory=ShardProgress)

    def owns(self, index: int) -> bool:
        """Whether run ``index`` is one of this shard's own."""
        return self.owner(index) == self.number

    def owner(self, index: int) -> int:
        """The number of the shard owning run ``index`` (-1, the saved schedules replayed
        before the runs: shard 1)."""
        return 1 if index < 0 else index % self.count + 1


class _RunPlan:
    """What run ``index`` of an exploration under ``random``, ``pct``, ``auto`` or ``fifo``
    is: its strategy and seed depend only on the index. PCT's horizon (the lane decisions it
    spreads its priority changes over) is that of the stock-order run, run 0 under ``pct``
    and ``auto``."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings

    @property
    def total(self) -> int:
        """How many runs the exploration makes at most."""
        return 1 if self.settings.policy == "fifo" else self.settings.runs

    def strategy(self, index: int) -> Tuple[str, int]:
        """Run ``index``'s strategy (``"replay"``: stock order) and PCT depth."""
        policy = self.settings.policy
        if policy == "auto" or policy == "pct":
            if index == 0:
                return "replay", 0
            if policy == "pct":
                return "pct", self.settings.pct_depth
            return _PORTFOLIO[(index - 1) % len(_PORTFOLIO)]
        if policy == "fifo":
            return "replay", 0
        return policy, self.settings.pct_depth

    def label(self, index: int) -> Tuple[str, Optional[int]]:
        """The strategy label and seed of run ``index``, as a failure names them."""
        strategy, depth = self.strategy(index)
        if strategy == "replay":
            return "fifo", None
        seed = (self.settings.seed + index) % 2**64
        if strategy == "pct-far":
            return f"pct(depth={depth}, streak<={FAR_AHEAD_STREAK})", seed
        return (f"pct(depth={depth})" if strategy == "pct" else strategy), seed

    def needs_horizon(self, index: int) -> bool:
        """Whether run ``index`` needs the stock-order run's horizon."""
        return self.strategy(index)[0] in ("pct", "pct-far")

    def is_stock_order(self, index: int) -> bool:
        """Whether run ``index`` is the stock-order run that measures the horizon."""
        return index == 0 and self.strategy(index)[0] == "replay"

    def loop_options(self, index: int, horizon: Optional[int]) -> Dict[str, Any]:
        """The :class:`quiesce.Loop` arguments of run ``index`` (``horizon``: the stock-order
        run's lane decisions, if measured), clock included."""
        strategy, depth = self.strategy(index)
        _, seed = self.label(index)
        options = _loop_options(strategy, seed, depth, max(horizon or 1, 1))
        options["clock"] = self.settings.clock
        return options


class _NumberedRuns:
    """Makes the runs of a :class:`_RunPlan`, in any order and subset; the stock-order run
    is made once (first when it is wanted, or when a PCT run needs its horizon)."""

    def __init__(self, test: TestFactory, settings: _Settings) -> None:
        self.test = test
        self.settings = settings
        self.plan = _RunPlan(settings)
        self.horizon: Optional[int] = None
        self.stock_outcome: Optional[_Outcome] = None

    def run(self, index: int) -> _Outcome:
        if self.plan.is_stock_order(index):
            return self.stock_order()
        if self.plan.needs_horizon(index) and self.horizon is None:
            self.stock_order()
        options = self.plan.loop_options(index, self.horizon)
        return _run_once(self.test, options, **self.settings.run_options)

    def stock_order(self) -> _Outcome:
        """Run 0 (stock order), made once: it measures PCT's horizon."""
        if self.stock_outcome is None:
            options = {"schedule": "q1-", "clock": self.settings.clock}
            outcome = _run_once(self.test, options, **self.settings.run_options)
            self.stock_outcome = outcome
            self.horizon = max(outcome.counts[1], 1)
        return self.stock_outcome


def _explore(
    test: TestFactory,
    settings: _Settings,
    *,
    shard: Optional[Shard] = None,
    saved: Sequence[SavedSchedule] = (),
) -> ExploreResult:
    """:func:`explore` with checked ``settings``: first the ``saved`` schedules, then the
    runs (only ``shard``'s own, if given)."""
    policy = settings.policy
    result = ExploreResult(
        strategy=policy,
        seed=settings.seed,
        bound=settings.bound if policy == "dfs" else None,
        shard=None if shard is None else (shard.number, shard.count),
    )
    seen: set = set()
    if shard is None or shard.number == 1:
        found = _replay_saved(test, settings, result, seen, saved)
        if found is not None:
            if shard is not None:
                # Index -1: before every run, so the other shards stop and name this one.
                shard.progress.record(0, -1)
            result.failure = _saved_failure(test, settings, *found)
            result.schedules = len(seen)
            return result
        saved = ()
    if policy == "dfs":
        _explore_bounded(test, settings, result, seen)
    else:
        _explore_numbered(test, settings, result, seen, shard or Shard(1, 1), saved)
    result.schedules = len(seen)
    return result


def _replay_saved(
    test: TestFactory,
    settings: _Settings,
    result: ExploreResult,
    seen: set,
    saved: Sequence[SavedSchedule],
) -> Optional[Tuple[SavedSchedule, _Outcome]]:
    """Replays the ``saved`` schedules in turn (setting their verdicts) up to the first that
    fails again, returned with its run."""
    for entry in saved:
        outcome = _run_once(
            test, {"schedule": entry.schedule, "clock": settings.clock}, **settings.run_options
        )
        result.runs += 1
        result.saved_runs += 1
        seen.add(outcome.schedule)
        entry.verdict = (
            "stale"
            if outcome.mismatch is not None or outcome.drift is not None
            else "passed"
            if outcome.error is None
            else "failed"
        )
        if entry.verdict == "failed":
            return entry, outcome
    return None


def _saved_failure(
    test: TestFactory, settings: _Settings, entry: SavedSchedule, outcome: _Outcome
) -> Failure:
    failure = _failure(test, outcome, 0, "saved", None, settings)
    return dataclasses.replace(failure, origin=entry.origin)


def _explore_numbered(
    test: TestFactory,
    settings: _Settings,
    result: ExploreResult,
    seen: set,
    shard: Shard,
    saved: Sequence[SavedSchedule] = (),
) -> None:
    """The runs of ``shard``; ``saved``: the saved schedules shard 1 replays first (run
    index -1), which another shard replays too once it has found a failure of its own."""
    runs = _NumberedRuns(test, settings)
    total = runs.plan.total
    progress = shard.progress

    def made(outcome: _Outcome) -> None:
        result.runs += 1
        seen.add(outcome.schedule)
        result.max_decisions = max(result.max_decisions, outcome.counts[0])

    failed: Optional[Tuple[int, _Outcome]] = None
    passed_through = 0
    for index in range(shard.number - 1, total, shard.count):
        lowest = progress.lowest_failure()
        if lowest is not None and index > lowest:
            break  # a lower run failed elsewhere: nothing here can be the first failure
        outcome = runs.run(index)
        made(outcome)
        if outcome.error is not None:
            failed = (index, outcome)
            break
        passed_through = index + 1
        if result.runs % 16 == 0:
            progress.record(passed_through, None)
    saved_failure: Optional[Tuple[SavedSchedule, _Outcome]] = None
    if failed is not None and saved:
        saved_failure = _replay_saved(test, settings, result, seen, saved)
        if saved_failure is not None:
            failed = (-1, saved_failure[1])
    if failed is not None and shard.count > 1:
        # The first failure is the lowest failing index: make the lower runs of the other
        # shards that are not known to have passed.
        for index in range(failed[0]):
            if shard.owns(index) or progress.passed_elsewhere(index):
                continue
            lowest = progress.lowest_failure()
            if lowest is not None and index > lowest:
                break
            outcome = runs.run(index)
            made(outcome)
            if outcome.error is not None:
                failed = (index, outcome)
                break
    progress.record(passed_through, None if failed is None else failed[0])
    progress.refresh()
    lowest = progress.lowest_failure()
    if lowest is not None and (failed is None or lowest < failed[0]):
        failed = None
        result.failure_elsewhere = lowest
    elif failed is not None and progress.shared and not shard.owns(failed[0]):
        # Its owner makes that run too (it stops only past the lowest recorded failure),
        # and reports it: this shard only names it.
        result.failure_elsewhere = failed[0]
        failed = None
    if failed is None:
        return
    index, outcome = failed
    if saved_failure is not None and index == -1:
        result.failure = _saved_failure(test, settings, *saved_failure)
        return
    label, seed = runs.plan.label(index)
    shrunk_from, shrink_runs = None, 0
    if settings.shrink:
        shrunk_from = outcome.counts[2]
        outcome, shrink_runs = _shrink(test, outcome, settings.clock, settings.run_options)
    failure = _failure(test, outcome, index + 1, label, seed, settings)
    result.failure = dataclasses.replace(failure, shrunk_from=shrunk_from, shrink_runs=shrink_runs)


def _explore_bounded(
    test: TestFactory, settings: _Settings, result: ExploreResult, seen: set
) -> None:
    bound = settings.bound
    plans = _dfs_plans(bound)
    last_choices: Tuple[Sequence[int], List[int]] = ((), [])
    for index in range(settings.runs):
        choices = next(plans) if index == 0 else plans.send(last_choices)
        if choices is None:
            result.exhausted = True
            return
        options: Dict[str, Any] = {
            "schedule": CoreLoop._q_encode_schedule(_deviations(choices)),
            "clock": settings.clock,
        }
        outcome = _run_once(test, options, decisions=True, **settings.run_options)
        result.runs += 1
        seen.add(outcome.schedule)
        result.max_decisions = max(result.max_decisions, outcome.counts[0])
        if outcome.choices is not None:
            last_choices = outcome.choices
        if outcome.error is not None:
            result.failure = _failure(
                test, outcome, index + 1, f"dfs(delays<={bound})", None, settings
            )
            return
    # The run budget is spent: the search is exhausted if no schedule is left.
    if result.runs and plans.send(last_choices) is None:
        result.exhausted = True


def _loop_options(strategy: str, seed: Optional[int], depth: int, horizon: int) -> Dict[str, Any]:
    if strategy == "replay":
        # Stock order, but with decisions counted (the PCT horizon is measured from it).
        return {"schedule": "q1-"}
    if strategy in ("pct", "pct-far"):
        options = {"seed": seed, "policy": "pct", "pct_depth": depth, "pct_horizon": horizon}
        if strategy == "pct-far":
            options["pct_max_streak"] = FAR_AHEAD_STREAK
        return options
    return {"seed": seed, "policy": "random"}


def _dfs_plans(
    bound: int,
) -> Generator[Optional[List[int]], Tuple[Sequence[int], List[int]], None]:
    """A generator of choice prefixes for the bounded search: send each run's choices (see
    :func:`_compact_choices`), receive the next prefix (None when done). Bounds grow from 0
    so that the schedules closest to stock order come first; runs already made at a smaller
    bound are not repeated, their recorded choices are reused."""
    known: Dict[Tuple[int, ...], Tuple[Sequence[int], List[int]]] = {}
    for current in range(bound + 1):
        prefix: List[int] = []
        while True:
            key = tuple(prefix)
            made = known.get(key)
            if made is None:
                made = yield prefix
                known[key] = made
            following = CoreLoop._q_next_bounded(made[0], made[1], current)
            if following is None:
                break
            prefix = following
    yield None


def _deviations(choices: Sequence[int]) -> List[Tuple[int, int]]:
    """The non-zero choices of a run, as ``(decision index, chosen index)`` pairs."""
    return [(index, chosen) for index, chosen in enumerate(choices) if chosen]


def _shrink(
    test: TestFactory, outcome: _Outcome, clock: str, run_options: Dict[str, Any]
) -> Tuple[_Outcome, int]:
    """A failing run with as few deviations from stock order as ``SHRINK_RUNS`` runs find,
    failing the same way as ``outcome`` (:func:`_same_failure`); and the runs spent. (For a run over
    its budget, only stock order is tried.)

    First the shortest prefix of the recorded choices that still fails (stock order after
    it; found by bisection on the number of deviations kept), then blocks of the remaining
    deviations set back to stock order. A candidate run counts by what it actually chose
    (its own schedule), so a choice that no longer fits costs nothing."""
    best, runs = outcome, 0
    original = outcome.error
    assert original is not None

    def attempt(kept: List[Tuple[int, int]]) -> Optional[_Outcome]:
        nonlocal runs
        runs += 1
        options = {"schedule": CoreLoop._q_encode_schedule(kept), "clock": clock}
        candidate = _run_once(test, options, **run_options)
        if _same_failure(original, candidate.error) and candidate.counts[2] < (best.counts[2]):
            return candidate
        return None

    if isinstance(outcome.error, BudgetExceeded):
        # Each run of a livelock costs the whole budget: only ask whether stock order has it.
        return attempt([]) or best, runs
    deviations = CoreLoop._q_decode_schedule(best.schedule)
    low, high = 0, len(deviations)  # keeping `high` deviations fails; find the fewest
    while low < high and runs < SHRINK_RUNS:
        keep = (low + high) // 2
        found = attempt(deviations[:keep])
        if found is not None:
            best, high = found, min(keep, found.counts[2])
        else:
            low = keep + 1
    # Then set blocks of deviations back to stock order, halving the block size when no
    # block can go (delta debugging): irrelevant deviations often come in runs that only
    # matter together, such as one task let ahead and then held back again.
    block = max(1, best.counts[2] // 2)
    while block >= 1 and runs < SHRINK_RUNS and best.counts[2] > 1:
        deviations = CoreLoop._q_decode_schedule(best.schedule)
        start, shrunk = 0, False
        while start < len(deviations) and runs < SHRINK_RUNS:
            found = attempt(deviations[:start] + deviations[start + block :])
            if found is None:
                start += block
                continue
            best, shrunk = found, True
            deviations = CoreLoop._q_decode_schedule(best.schedule)
        if not shrunk:
            block //= 2
    return best, runs


def _failure(
    test: TestFactory,
    outcome: _Outcome,
    run: int,
    label: str,
    seed: Optional[int],
    settings: _Settings,
) -> Failure:
    assert outcome.error is not None
    reproduced: Optional[bool] = None
    nondeterminism: Optional[str] = None
    run_options = settings.run_options
    if settings.check_determinism:
        options = {"schedule": outcome.schedule, "clock": settings.clock}
        first = _run_once(test, options, trace=True, **run_options)
        second = _run_once(test, options, trace=True, **run_options)
        nondeterminism = _first_difference(first, second)
        reproduced = _same_failure(outcome.error, first.error) and _same_failure(
            outcome.error, second.error
        )
        if nondeterminism is None and (
            not reproduced
            or (first.decisions, first.schedule) != (outcome.decisions, outcome.schedule)
        ):
            nondeterminism = _first_difference(
                dataclasses.replace(outcome, mismatch=None, trace=[]), first
            )
    return Failure(
        run=run,
        policy=label,
        seed=seed,
        schedule=outcome.schedule,
        error=outcome.error,
        time=outcome.time,
        decisions=outcome.counts[0],
        deviations=outcome.counts[2],
        faults=tuple(outcome.faults),
        test_name=_test_name(test),
        reproduced=reproduced,
        nondeterminism=nondeterminism,
    )


def replay(
    test: TestFactory,
    schedule: str,
    *,
    clock: str = "virtual",
    max_time: Optional[float] = DEFAULT_MAX_TIME,
    max_steps: Optional[int] = DEFAULT_EXPLORE_MAX_STEPS,
    watchdog: Optional[float] = DEFAULT_WATCHDOG,
    io_grace: Optional[float] = None,
    strict: bool = True,
    trace: Optional[Union[str, os.PathLike[str]]] = None,
) -> None:
    """Runs ``test`` once, on a fresh :class:`quiesce.Loop`, making exactly the scheduling
    decisions recorded in ``schedule`` (the ``q1-...`` string a failure printed). Raises what
    the run raised (the test's exception, a :class:`quiesce.Deadlock`, ...), or returns None
    if it passed.

    Raises :class:`ReplayDiverged` if the test passed but the run was not the recorded one: a
    recorded choice this run did not have, or (schedules carry a digest of the recorded run's
    decisions) other decisions than the recorded run made, even where every recorded choice
    fit. That happens when the test or what it depends on changed, when it is not
    deterministic, or on another CPython version whose asyncio schedules the test
    differently. With ``strict=False`` it warns (:class:`ReplayDivergedWarning`) instead.

    With ``trace=PATH`` it also writes the run's timeline there, whatever the outcome: a
    Chrome Trace Event file (JSON; Perfetto and ``chrome://tracing`` open it), or, for a path
    ending in ``.html``, a self-contained page drawing it. One track per task (plus plain
    callbacks and timers), a slice per step with its virtual time and decision index, arrows
    from waker to woken, and the steps chosen by a decision that left stock order in red, with
    what else could have run.
    """
    test = _check_test(test, "replay")
    if not isinstance(schedule, str):
        raise TypeError(f"schedule must be a str like 'q1-AwI', got {type(schedule).__name__}")
    schedule = schedule.strip().rstrip("=")
    CoreLoop._q_decode_schedule(schedule)  # a clear ValueError for a mangled string
    recorder = (
        None
        if trace is None
        else TimelineRecorder(f"quiesce.replay({_test_name(test)}, {schedule!r})")
    )
    outcome = _run_once(
        test,
        {"schedule": schedule, "clock": clock},
        timeline=recorder,
        **_run_options(max_time, max_steps, watchdog, io_grace),
    )
    if trace is not None and outcome.timeline is not None:
        write_timeline(outcome.timeline, trace)
    if outcome.error is not None:
        raise outcome.error
    problem = _divergence(outcome)
    if problem is None:
        return
    if strict:
        raise ReplayDiverged(problem)
    warnings.warn(problem, ReplayDivergedWarning, stacklevel=2)


def _divergence(outcome: _Outcome) -> Optional[str]:
    """Why a passing replay was not the recorded run, or None if it was."""
    if outcome.drift is not None:
        decisions, flavour, made = outcome.drift
        recorded_on = f"{flavour // 100}.{flavour % 100}"
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        what = (
            f"this run made {made} scheduling decision(s), the recorded run {decisions}"
            if made < decisions
            else f"this run's first {decisions} scheduling decision(s) differ from the "
            "recorded run's"
        )
        if recorded_on != here:
            return (
                f"the schedule was recorded on CPython {recorded_on}, and this is CPython "
                f"{here}, whose asyncio schedules this test differently: {what}, so the "
                "recorded choices picked other work; the test passed. A schedule replays "
                f"exactly on the CPython version it was recorded on: replay it on "
                f"{recorded_on}, or explore again here for this version's schedule."
            )
        return (
            f"the replay is not the recorded run: {what}; the test passed. The test or what "
            "it depends on changed since the schedule was recorded, or it is not "
            "deterministic (quiesce.check_determinism(test) tells which)."
        )
    if outcome.mismatch is not None:
        index, kind, recorded, options = outcome.mismatch
        where = (
            f"it records choice {recorded} at decision #{index + 1} or later, but this run "
            f"made only {index} decision(s)"
            if options == 0
            else f"at decision #{index + 1} ({kind}) it records choice {recorded}, but this "
            f"run had only {options} option(s)"
        )
        return (
            f"the schedule does not fit this run: {where}; the test passed. The test or what "
            "it depends on changed since the schedule was recorded, or it is not "
            "deterministic (quiesce.check_determinism(test) tells which)."
        )
    return None


def check_determinism(
    test: TestFactory,
    *,
    schedule: Optional[str] = None,
    seed: int = 0,
    policy: str = "random",
    clock: str = "virtual",
    max_time: Optional[float] = DEFAULT_MAX_TIME,
    max_steps: Optional[int] = DEFAULT_EXPLORE_MAX_STEPS,
    watchdog: Optional[float] = DEFAULT_WATCHDOG,
    io_grace: Optional[float] = None,
) -> None:
    """Runs ``test`` twice under the same schedule (``schedule``, or the one ``policy`` and
    ``seed`` produce) and compares every scheduling decision, every callback run and the
    virtual time of each. Raises :class:`NondeterminismError` naming the first difference and
    its likely cause (threads, real I/O, wall-clock reads, iteration over sets, state kept
    between runs); returns None if the runs match."""
    test = _check_test(test, "check_determinism")
    if policy not in ("random", "pct", "fifo"):
        raise ValueError(f"policy must be 'random', 'pct' or 'fifo', got {policy!r}")
    options: Dict[str, Any] = (
        {"schedule": schedule}
        if schedule is not None
        else _loop_options("replay" if policy == "fifo" else policy, seed, DEFAULT_PCT_DEPTH, 100)
    )
    options["clock"] = clock
    run_options = _run_options(max_time, max_steps, watchdog, io_grace)
    first = _run_once(test, options, trace=True, **run_options)
    if schedule is None:
        options = {"schedule": first.schedule, "clock": clock}
    second = _run_once(test, options, trace=True, **run_options)
    difference = _first_difference(first, second)
    if difference is not None:
        raise NondeterminismError(difference)
