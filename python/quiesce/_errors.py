"""Exceptions quiesce raises instead of hanging."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterable, Optional, Tuple

if TYPE_CHECKING:
    from quiesce._report import Report


def time_text(when: float) -> str:
    """A loop time for a message: exact on the virtual clock's round figures, to the
    microsecond once the clock has followed real time (0.200336, not 0.20033565700001077)."""
    return repr(round(when, 6))


class _StoppedWithReport(RuntimeError):
    """A run stopped instead of hanging or spinning: ``tasks`` holds the tasks still pending,
    ``report`` the loop's :class:`quiesce.Report` at that moment (also in the message)."""

    tasks: Tuple[asyncio.Task, ...]
    report: Optional[Report]

    def __init__(
        self,
        message: str,
        tasks: Iterable[asyncio.Task] = (),
        *,
        report: Optional[Report] = None,
    ) -> None:
        super().__init__(message)
        self.tasks = tuple(tasks)
        self.report = report

    def while_doing(self, what: str) -> _StoppedWithReport:
        """The same error, its message prefixed with where it happened (``what``)."""
        again = type(self).__new__(type(self))
        again.__dict__.update(self.__dict__)
        RuntimeError.__init__(again, f"{what}: {self}")
        return again


class Deadlock(_StoppedWithReport):
    """The awaited result can never arrive (``kind="deadlock"``), or only outside activity
    could bring it and none has arrived within the loop's watchdog (``kind="potential
    deadlock"``).

    Raised by ``run_until_complete`` / ``run_forever`` on a :class:`quiesce.Loop` instead of
    hanging. ``tasks`` holds the tasks that were still pending; ``report`` is the loop's
    :class:`quiesce.Report` at that moment (also in the message): what each task waits for,
    pending timers, external activity, and cycles of tasks waiting on each other's locks.
    """

    kind: str

    def __init__(
        self,
        message: str,
        tasks: Iterable[asyncio.Task] = (),
        *,
        report: Optional[Report] = None,
        kind: str = "deadlock",
    ) -> None:
        super().__init__(message, tasks, report=report)
        self.kind = kind


class BudgetExceeded(_StoppedWithReport):
    """A driving call exceeded its budget: more than ``max_steps`` callbacks without the loop
    becoming blocked (usually ``while True: await asyncio.sleep(0)``), or, in
    ``run_until_idle``, a jump past ``max_time`` (usually a periodic timer).

    The message guesses the cause and includes the loop's report. ``tasks`` holds the tasks
    that were still pending; ``report`` is the :class:`quiesce.Report`.
    """
