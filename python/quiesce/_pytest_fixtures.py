"""The async fixtures of quiesce tests, run on quiesce loops (the pytest plugin's part that
knows fixtures).

A quiesce test that runs once runs each ``async def`` fixture it requests on its
``quiesce_loop``, synchronously, at the point pytest sets the fixture up (and an async
generator fixture's teardown when pytest tears it down). An explored test (``runs=N``,
``--quiesce-runs``, ``--quiesce-replay``) runs on a fresh loop per run, so its async fixtures
are set up anew inside every run, on that run's loop: pytest only sees a placeholder
(:class:`PerRunFixture`), and :func:`run_with_fixtures` resolves the placeholders in the run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

from quiesce._errors import BudgetExceeded, Deadlock
from quiesce._loop import Loop
from quiesce._pytest_asyncio_interop import call_with_own_arguments
from quiesce._teardown import run_bounded


def is_async_fixture(func: Any) -> bool:
    """Whether the fixture function ``func`` is an ``async def`` (coroutine or generator)."""
    func = getattr(func, "__func__", func)
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def _wraps(func: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Not functools.wraps' default: copying func.__dict__ would copy the mark
    # (_force_asyncio_fixture) through which pytest-asyncio would take the wrapper back.
    return functools.wraps(func, updated=())


def bound_fixture(func: Any, request: Any) -> Any:
    """``func``, bound to this test's instance if it is a fixture defined in a test class."""
    instance = request.instance
    if instance is not None and inspect.ismethod(func):
        if type(func.__self__) is type(instance):
            return func.__func__.__get__(instance)
    return func


class PerRunFixture:
    """Stands in for an async fixture's value while a test is explored: the fixture is set up
    anew inside every run, on that run's loop, and torn down at the end of the run."""

    def __init__(self, name: str, func: Callable[..., Any], kwargs: Dict[str, Any]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<async fixture {self.name!r}, set up in each exploration run>"


def per_run_fixture(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A fixture function that returns a :class:`PerRunFixture` for ``func``."""

    @_wraps(func)
    def placeholder(**kwargs: Any) -> PerRunFixture:
        return PerRunFixture(name, func, kwargs)

    return placeholder


def refuse_per_run_values(
    fixturedef: Any, request: Any, item: pytest.Item, outer_loop: Optional[Loop]
) -> None:
    """Fails the test if the sync fixture about to be set up takes an async fixture's value
    or the ``quiesce_loop``, which under exploration only exist inside each run."""
    per_run = [
        argname
        for argname in fixturedef.argnames
        if argname != "request"
        and (
            isinstance(request.getfixturevalue(argname), PerRunFixture)
            or (argname == "quiesce_loop" and outer_loop is not None)
        )
    ]
    if per_run:
        pytest.fail(
            f"{item.nodeid} is explored (each run on a fresh loop), so its async fixtures "
            "and its quiesce_loop exist only inside each run; the sync fixture "
            f"{fixturedef.argname!r} cannot take {', '.join(map(repr, per_run))}. Make "
            f"{fixturedef.argname!r} an async fixture too.",
            pytrace=False,
        )


async def run_with_fixtures(
    test: Callable[..., Any], testargs: Dict[str, Any], outer_loop: Optional[Loop]
) -> Any:
    """One exploration run of ``test``: sets up its async fixtures (and theirs) on this run's
    loop, runs it, and tears the async generator fixtures down, last first. An argument that
    is ``outer_loop`` (the ``quiesce_loop`` of the single run that exploration replaces) is
    this run's loop."""
    values: Dict[int, Any] = {}
    generators: List[Tuple[str, Any]] = []
    run_loop = asyncio.get_running_loop()

    async def resolve(value: Any) -> Any:
        if outer_loop is not None and value is outer_loop:
            return run_loop
        if not isinstance(value, PerRunFixture):
            return value
        if id(value) not in values:
            kwargs = {key: await resolve(arg) for key, arg in value.kwargs.items()}
            if inspect.isasyncgenfunction(getattr(value.func, "__func__", value.func)):
                agen = call_with_own_arguments(value.func, kwargs)
                values[id(value)] = await agen.__anext__()
                generators.append((value.name, agen))
            else:
                values[id(value)] = await call_with_own_arguments(value.func, kwargs)
        return values[id(value)]

    try:
        args = {key: await resolve(value) for key, value in testargs.items()}
        return await test(**args)
    finally:
        for name, agen in reversed(generators):
            try:
                await agen.__anext__()
            except StopAsyncIteration:
                continue
            await agen.aclose()
            raise RuntimeError(f"async fixture {name!r} yielded more than once")


def on_loop(
    func: Any,
    loop: Loop,
    request: Any,
    *,
    max_steps: Optional[int],
    excused_tasks: Set[asyncio.Task[Any]],
) -> Callable[..., Any]:
    """A synchronous fixture function that runs the async fixture ``func`` on ``loop``: its
    setup when pytest calls it, an async generator's teardown as a finalizer. A deadlock or a
    budget overrun in either names the fixture (and its tasks join ``excused_tasks``: they
    are reported already)."""
    name = request.fixturename

    def run(awaitable: Any, when: str) -> Any:
        __tracebackhide__ = True
        try:
            return run_bounded(loop, awaitable, max_time=None, max_steps=max_steps)
        except (Deadlock, BudgetExceeded) as exc:
            excused_tasks.update(asyncio.all_tasks(loop))
            raise exc.while_doing(f"in the {when} of async fixture {name!r}") from None

    if inspect.isasyncgenfunction(getattr(func, "__func__", func)):

        @_wraps(func)
        def asyncgen_fixture(**kwargs: Any) -> Any:
            agen = call_with_own_arguments(bound_fixture(func, request), kwargs)
            value = run(agen.__anext__(), "setup")

            def finalize() -> None:
                if loop.is_closed():  # pragma: no cover - the test closed its own loop
                    return
                try:
                    run(agen.__anext__(), "teardown")
                except StopAsyncIteration:
                    return
                run(agen.aclose(), "teardown")
                pytest.fail(f"async fixture {name!r} yielded more than once", pytrace=False)

            request.addfinalizer(finalize)
            return value

        return asyncgen_fixture

    @_wraps(func)
    def coroutine_fixture(**kwargs: Any) -> Any:
        return run(call_with_own_arguments(bound_fixture(func, request), kwargs), "setup")

    return coroutine_fixture


def without_loop_of_its_own(func: Any, request: Any) -> Callable[..., Any]:
    """A sync ``@pytest_asyncio.fixture`` for a quiesce test: plain, so pytest-asyncio does
    not make its own loop the current one while it runs (the quiesce loop already is)."""

    if inspect.isgeneratorfunction(getattr(func, "__func__", func)):

        @_wraps(func)
        def generator_fixture(**kwargs: Any) -> Any:
            yield from call_with_own_arguments(bound_fixture(func, request), kwargs)

        return generator_fixture

    @_wraps(func)
    def sync_fixture(**kwargs: Any) -> Any:
        return call_with_own_arguments(bound_fixture(func, request), kwargs)

    return sync_fixture
