"""``quiesce.run(main)``: :func:`asyncio.run`, on a :class:`quiesce.Loop`.

It follows the running interpreter's ``asyncio.run`` step for step: the same checks and
errors, a new loop set as the current event loop for the duration of the run, the leftover
tasks cancelled and awaited (an exception a cancelled task ends with goes to the loop's
exception handler), asynchronous generators and the default executor shut down, the current
event loop unset, and the loop closed. On 3.11+ it is ``asyncio.Runner`` itself (so Ctrl-C
cancels the main task first, as there), given a factory that makes the quiesce loop.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Coroutine, Optional, TypeVar, cast

from quiesce._loop import Loop

T = TypeVar("T")

if sys.version_info >= (3, 14):
    #: What ``main`` may be: 3.14's ``asyncio.run`` accepts any awaitable, earlier ones a coroutine.
    _Main = Awaitable[T]
else:
    _Main = Coroutine[Any, Any, T]

#: The message ``asyncio.run`` gives a leftover task's exception when the task ended with one
#: instead of being cancelled; kept as is so that handlers and log filters see the stock text.
_SHUTDOWN_MESSAGE = "unhandled exception during asyncio.run() shutdown"


def run(
    main: _Main[T],
    *,
    seed: Optional[int] = None,
    clock: str = "virtual",
    debug: Optional[bool] = None,
) -> T:
    """Runs the coroutine ``main`` on a new :class:`quiesce.Loop` and returns its result, as
    :func:`asyncio.run` does on the stock loop.

    ``seed`` and ``clock`` configure the loop (see :class:`quiesce.Loop`): by default it runs
    callbacks first in, first out, on the virtual clock, so an hour of ``asyncio.sleep`` takes
    no real time. ``debug=True``/``False`` sets the loop's debug mode; ``None`` keeps its
    default (``PYTHONASYNCIODEBUG``, ``-X dev``).

    As ``asyncio.run``: raises ``RuntimeError`` if an event loop is already running in this
    thread; up to 3.13 raises ``ValueError`` if ``main`` is not a coroutine, from 3.14 on
    accepts any awaitable and raises ``TypeError`` for anything else (after making the loop,
    as 3.14 does); sets the loop as the current
    event loop while it runs; afterwards cancels the tasks still pending and waits for them
    (an exception other than the cancellation that one of them ends with goes to the loop's
    exception handler), shuts down asynchronous generators and the default executor, unsets
    the current event loop and closes the loop. A wait that can never end raises
    :class:`quiesce.Deadlock` (with the report) instead of hanging; it propagates unchanged,
    after that clean-up.
    """
    if asyncio._get_running_loop() is not None:
        # Fail fast, before making a loop, like asyncio.run.
        raise RuntimeError("quiesce.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        return _run_with_runner(main, seed=seed, clock=clock, debug=debug)
    return _run_on_loop(main, seed=seed, clock=clock, debug=debug)


if sys.version_info >= (3, 11):

    def _run_with_runner(
        main: _Main[T], *, seed: Optional[int], clock: str, debug: Optional[bool]
    ) -> T:
        """3.11+: ``asyncio.run`` is ``with Runner(debug=debug) as runner: runner.run(main)``.

        Given a ``loop_factory``, a Runner neither sets nor unsets the current event loop, which
        ``asyncio.run`` (with its default factory) does: the factory sets it, as the Runner does
        right after making its loop, and it is unset once the Runner has closed the loop."""
        made = []

        def new_loop() -> Loop:
            loop = Loop(seed=seed, clock=clock)
            made.append(loop)
            asyncio.set_event_loop(loop)
            return loop

        try:
            with asyncio.Runner(debug=debug, loop_factory=new_loop) as runner:
                # Runner.run takes what this interpreter's asyncio.run takes (any awaitable from
                # 3.14); some typeshed versions still say coroutine only.
                return cast(T, runner.run(cast(Any, main)))
        finally:
            if made:
                asyncio.set_event_loop(None)


def _run_on_loop(
    main: Coroutine[Any, Any, T], *, seed: Optional[int], clock: str, debug: Optional[bool]
) -> T:
    """3.9 and 3.10: ``asyncio.runners.run``, with the quiesce loop instead of
    ``asyncio.new_event_loop()``."""
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = Loop(seed=seed, clock=clock)
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """``asyncio.runners._cancel_all_tasks``: cancels every task of ``loop``, waits for them,
    and hands the exception a task ended with (instead of being cancelled) to the loop's
    exception handler."""
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": _SHUTDOWN_MESSAGE,
                    "exception": task.exception(),
                    "task": task,
                }
            )
