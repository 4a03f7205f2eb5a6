"""quiesce: a deterministic asyncio event loop for tests.

Run the loop until every task is blocked, assert, poke, resume; move a virtual clock instead
of sleeping; get a report instead of a hung test when tasks deadlock.

    loop = quiesce.Loop()
    task = loop.create_task(worker())
    loop.run_until_blocked()   # everything that can run has run
    loop.advance(60)           # an hour of sleeps costs nothing
"""

from __future__ import annotations

from quiesce._background import background
from quiesce._core import Handle, TimerHandle
from quiesce._errors import BudgetExceeded, Deadlock
from quiesce._explore import (
    ExplorationFailed,
    ExploreResult,
    Failure,
    NondeterminismError,
    ReplayDiverged,
    ReplayDivergedWarning,
    check_determinism,
    explore,
    replay,
)
from quiesce._faults import buggify, hold
from quiesce._idle import wait_all_tasks_blocked
from quiesce._loop import DEFAULT_MAX_STEPS, DEFAULT_MAX_TIME, DEFAULT_WATCHDOG, Loop
from quiesce._policy import EventLoopPolicy
from quiesce._report import ExternalActivity, Report, TaskReport, TimerReport
from quiesce._run import run
from quiesce._unittest import TestCase

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MAX_TIME",
    "DEFAULT_WATCHDOG",
    "BudgetExceeded",
    "Deadlock",
    "EventLoopPolicy",
    "ExplorationFailed",
    "ExploreResult",
    "ExternalActivity",
    "Failure",
    "Handle",
    "Loop",
    "NondeterminismError",
    "ReplayDiverged",
    "ReplayDivergedWarning",
    "Report",
    "TaskReport",
    "TestCase",
    "TimerHandle",
    "TimerReport",
    "background",
    "buggify",
    "check_determinism",
    "explore",
    "hold",
    "replay",
    "run",
    "wait_all_tasks_blocked",
]

__version__ = "0.1.0"


def _present_as_public() -> None:
    # Tracebacks, reprs and pytest's summaries name quiesce.Deadlock, not
    # quiesce._errors.Deadlock. (The native Handle classes keep quiesce._core.)
    for name in __all__:
        value = globals()[name]
        if getattr(value, "__module__", "").startswith("quiesce._") and name not in (
            "Handle",
            "TimerHandle",
        ):
            try:
                value.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - a native type
                pass


_present_as_public()
