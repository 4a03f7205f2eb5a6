"""Exploration for :class:`quiesce.TestCase`: each test method, setUp to the last cleanup,
run under up to ``quiesce_runs`` schedules, each on a fresh loop, stopping at the first failure.

Run *i* is the run *i* of ``quiesce.explore`` with the same settings (the same strategy, seed
and PCT horizon), so a schedule string from here replays with ``quiesce_replay``. Unlike
``quiesce.explore`` the failing schedule is not shrunk: a unittest run cannot be restarted
halfway, and each candidate would cost a whole setUp-to-cleanup run.
"""

from __future__ import annotations

import sys
import unittest
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from quiesce._explore import (
    DEFAULT_RUNS,
    ExplorationFailed,
    ExploreResult,
    Failure,
    _checked_settings,
    _RunPlan,
)

if TYPE_CHECKING:
    from quiesce._unittest import TestCase

#: ``sys.exc_info()`` of what a run raised.
ExcInfo = Tuple[Any, Any, Any]

#: Policies a TestCase explores with (the bounded search needs to steer each run from the
#: last one's choices, which a whole unittest run does not hand back).
TEST_CASE_POLICIES = ("auto", "random", "pct", "fifo")


class _RunResult(unittest.TestResult):
    """The outcome of one run of a test, with what it raised kept as exceptions (not text)."""

    def __init__(self) -> None:
        super().__init__()
        self.raised: List[ExcInfo] = []

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self.raised.append(err)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self.raised.append(err)

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.raised.append(err)


def explore_test_case(case: TestCase, result: unittest.TestResult) -> None:
    """Runs ``case`` under the schedules of its class's exploration settings and reports one
    outcome to ``result``: the first failing run (as :class:`quiesce.ExplorationFailed`,
    naming the run, its seed and the ``quiesce_replay`` setting that reruns it), a skip, an
    expected failure, or a success."""
    cls = type(case)
    settings = _checked_settings(
        runs=cls.quiesce_runs or DEFAULT_RUNS,
        policy=cls.quiesce_policy or "auto",
        seed=cls.quiesce_seed or 0,
        clock=cls.quiesce_clock,
        watchdog=cls.quiesce_watchdog,
        io_grace=cls.quiesce_io_grace,
    )
    plan = _RunPlan(settings)
    horizon: Optional[int] = None
    schedules = set()
    for index in range(plan.total):
        case._quiesce_loop_options = plan.loop_options(index, horizon)
        run = _RunResult()
        case._quiesce_run_once(run)
        schedule, counts, time = case._quiesce_last_run
        schedules.add(schedule)
        if plan.is_stock_order(index):
            horizon = max(counts[1], 1)
        if run.skipped:
            _report(result, case, result.addSkip, run.skipped[0][1])
            return
        if run.expectedFailures:
            _report(result, case, result.addExpectedFailure, run.raised[0])
            return
        if run.raised:
            label, seed = plan.label(index)
            failure = Failure(
                run=index + 1,
                policy=label,
                seed=seed,
                schedule=schedule,
                error=run.raised[0][1],
                time=time,
                decisions=counts[0],
                deviations=counts[2],
                faults=(),
                test_name=case.id(),
                replay_hint=(
                    f'quiesce_replay = "{schedule}"  (a class setting of {cls.__qualname__}: '
                    "each test runs once, on that schedule)"
                ),
            )
            explored = ExploreResult(
                strategy=settings.policy,
                seed=settings.seed,
                runs=index + 1,
                failure=failure,
                schedules=len(schedules),
            )
            _report(result, case, result.addFailure, _raised(explored))
            return
        if run.unexpectedSuccesses:
            _report(result, case, result.addUnexpectedSuccess)
            return
    _report(result, case, result.addSuccess)


def _raised(explored: ExploreResult) -> ExcInfo:
    """``sys.exc_info()`` of an :class:`ExplorationFailed` (a real traceback: test runners
    such as pytest's unittest support expect one)."""
    __tracebackhide__ = True
    try:
        raise ExplorationFailed(explored) from None
    except ExplorationFailed:
        return sys.exc_info()


def _report(result: unittest.TestResult, case: unittest.TestCase, add: Any, *details: Any) -> None:
    """Reports ``case`` to ``result`` as run once, with the outcome method ``add``."""
    result.startTest(case)
    try:
        add(case, *details)
    finally:
        result.stopTest(case)
