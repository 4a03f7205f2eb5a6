"""Shared fixtures for the quiesce.Loop behaviour suite.

Every loop a test makes is closed at teardown (``filterwarnings = error`` turns an unclosed loop
or a never-awaited coroutine into a failure): pending tasks are cancelled and allowed to finish,
async generators and the default executor are shut down, then the loop is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterator, List, TypeVar

import pytest

import quiesce

T = TypeVar("T")


def dispose_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancels what is left on *loop*, shuts down its generators and executor, closes it."""
    if loop.is_closed():
        return
    if loop.is_running():  # pragma: no cover - a test left the loop running: just close it
        loop.stop()
        return
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.fixture
def make_loop() -> Iterator[Callable[..., quiesce.Loop]]:
    """Factory ``make_loop(seed=..., clock=...)``; every loop made is disposed of afterwards."""
    made: List[quiesce.Loop] = []

    def factory(**kwargs: Any) -> quiesce.Loop:
        new_loop = quiesce.Loop(**kwargs)
        made.append(new_loop)
        return new_loop

    try:
        yield factory
    finally:
        for made_loop in reversed(made):
            dispose_loop(made_loop)


def current_loop(**kwargs: Any) -> Iterator[quiesce.Loop]:
    """Yields a ``quiesce.Loop(**kwargs)`` set as the current event loop; disposes of it."""
    new_loop = quiesce.Loop(**kwargs)
    asyncio.set_event_loop(new_loop)
    try:
        yield new_loop
    finally:
        try:
            dispose_loop(new_loop)
        finally:
            asyncio.set_event_loop(None)


@pytest.fixture
def loop() -> Iterator[quiesce.Loop]:
    """A FIFO ``quiesce.Loop`` on the virtual clock, set as the current event loop."""
    yield from current_loop()


@pytest.fixture(params=["virtual", "real"])
def any_clock_loop(request: pytest.FixtureRequest) -> Iterator[quiesce.Loop]:
    """A FIFO ``quiesce.Loop`` on each clock, set as the current event loop."""
    yield from current_loop(clock=request.param)


@pytest.fixture
def real_loop() -> Iterator[quiesce.Loop]:
    """A FIFO ``quiesce.Loop(clock="real")``, set as the current event loop."""
    yield from current_loop(clock="real")


@pytest.fixture
def handler_calls(loop: quiesce.Loop) -> List[Any]:
    """Installs a custom exception handler on ``loop``; returns the ``(loop, context)`` calls."""
    calls: List[Any] = []
    loop.set_exception_handler(lambda lp, context: calls.append((lp, context)))
    return calls


@pytest.fixture
def run_on() -> Callable[..., Any]:
    """``run_on(factory, main)``: makes a loop with *factory*, sets it as the current loop, runs
    ``main()`` to completion on it, disposes of the loop, and returns the result."""

    def run(
        factory: Callable[[], asyncio.AbstractEventLoop], main: Callable[[], Awaitable[T]]
    ) -> T:
        new_loop = factory()
        asyncio.set_event_loop(new_loop)
        try:
            return new_loop.run_until_complete(main())
        finally:
            try:
                dispose_loop(new_loop)
            finally:
                asyncio.set_event_loop(None)

    return run
