"""Bounded teardown of a quiesce loop: what explore, replay and the pytest plugin do after a
run, so that a task that refuses to die (it swallows ``CancelledError``, or busy-loops in its
cleanup) costs a bounded amount of work instead of hanging the caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, List, Optional, Tuple

from quiesce._errors import BudgetExceeded, Deadlock

if TYPE_CHECKING:
    from quiesce._loop import Loop

#: Loop time cancelled tasks (and the shutdown of async generators and of the default
#: executor) get to finish.
GRACE_TIME = 60.0

#: Callbacks they get: far more than any cleanup needs, few enough to fail fast.
GRACE_STEPS = 1_000_000


@dataclass
class Teardown:
    """What a bounded teardown left behind."""

    #: Tasks still pending after they were cancelled and given the grace period.
    stuck: List[asyncio.Task[Any]] = field(default_factory=list)
    #: ``(what, exception)`` for each step that failed: cancelling, shutting down.
    errors: List[Tuple[str, BaseException]] = field(default_factory=list)
    #: Cancelled tasks that ended with an exception other than the cancellation.
    failed: List[asyncio.Task[Any]] = field(default_factory=list)


def finalizer_tasks(loop: Loop) -> List[asyncio.Task[Any]]:
    """Tasks asyncio made to finalize async generators (their ``aclose()``), not the test's."""
    tasks = []
    for task in asyncio.all_tasks(loop):
        coro = task.get_coro()
        if type(coro).__name__ in ("async_generator_athrow", "async_generator_asend"):
            tasks.append(task)
    return tasks


def run_bounded(
    loop: Loop,
    awaitable: Awaitable[Any],
    *,
    max_time: Optional[float] = GRACE_TIME,
    max_steps: Optional[int] = GRACE_STEPS,
) -> Any:
    """Runs ``awaitable`` on the (not running) ``loop`` until it is done, within ``max_time``
    seconds of loop time (virtual clock only) and ``max_steps`` callbacks. Raises
    :class:`BudgetExceeded` past a budget and :class:`Deadlock` if it can never finish."""
    main = asyncio.ensure_future(awaitable, loop=loop)
    try:
        loop._q_run_until_done(
            main, "teardown", max_time if loop.clock == "virtual" else None, max_steps
        )
    except BaseException:
        main.cancel()
        raise
    return main.result()


def cancel_and_shut_down(
    loop: Loop,
    *,
    max_time: Optional[float] = GRACE_TIME,
    max_steps: Optional[int] = GRACE_STEPS,
) -> Teardown:
    """Cancels every pending task of ``loop`` and waits, within the budgets, for them to
    finish; then shuts down async generators and the default executor, each within the
    budgets. Does not close the loop. Never raises (but for KeyboardInterrupt and SystemExit):
    what went wrong is in the result."""
    outcome = Teardown()
    if loop.is_closed() or loop.is_running():
        return outcome
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        try:
            run_bounded(
                loop,
                asyncio.wait(pending, timeout=max_time),
                max_time=max_time,
                max_steps=max_steps,
            )
        except (Deadlock, BudgetExceeded) as exc:
            outcome.errors.append(("cancelling the pending tasks", exc))
        outcome.stuck = [task for task in pending if not task.done()]
        outcome.failed = [
            task
            for task in pending
            if task.done() and not task.cancelled() and task.exception() is not None
        ]
    steps: List[Tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("shutdown_asyncgens()", loop.shutdown_asyncgens),
        ("shutdown_default_executor()", loop.shutdown_default_executor),
    ]
    for what, shutdown in steps:
        try:
            run_bounded(loop, shutdown(), max_time=max_time, max_steps=max_steps)
        except Exception as exc:
            outcome.errors.append((what, exc))
    return outcome
