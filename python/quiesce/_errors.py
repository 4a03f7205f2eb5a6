"""Exceptions quiesce raises instead of hanging."""

from __future__ import annotations

import asyncio
from typing import Iterable, Tuple


class Deadlock(RuntimeError):
    """Nothing can ever run again, so the awaited result can never arrive.

    Raised by ``run_until_complete`` / ``run_forever`` on a :class:`quiesce.Loop` when no
    callback is runnable, no timer is pending, and nothing outside the loop (a watched file
    descriptor, a signal handler, an executor job, thread-safe work, another live thread) could
    make one runnable. ``tasks`` holds the tasks that were still pending; the message describes
    each of them and what it waits for.
    """

    tasks: Tuple[asyncio.Task, ...]

    def __init__(self, message: str, tasks: Iterable[asyncio.Task] = ()) -> None:
        super().__init__(message)
        self.tasks = tuple(tasks)


class BudgetExceeded(RuntimeError):
    """A driving call ran more callbacks than its budget without the loop becoming blocked.

    Usually a task that never waits on anything durable, such as
    ``while True: await asyncio.sleep(0)``. ``tasks`` holds the tasks that were still pending.
    """

    tasks: Tuple[asyncio.Task, ...]

    def __init__(self, message: str, tasks: Iterable[asyncio.Task] = ()) -> None:
        super().__init__(message)
        self.tasks = tuple(tasks)
