"""Where quiesce's pytest plugin meets pytest-asyncio (0.21 to 1.x) in one session.

Two things need knowledge of pytest-asyncio's own workings, kept here so that the plugin
proper does not:

- its auto mode marks every ``async def`` test ``asyncio`` (0.21 adds the mark after
  collection; 0.23 and later also turn the item into a class of their own whose ``runtest``
  runs the test on pytest-asyncio's loop). A test marked ``@pytest.mark.quiesce`` more closely
  than it is marked ``asyncio`` is taken back: the mark pytest-asyncio added goes, and the item
  becomes a plain :class:`pytest.Function` again;
- its fixtures (``@pytest_asyncio.fixture``, and in auto mode every async fixture) are wrapped
  in synchronous functions that run them on its loop: 0.21 to 0.26 wrap them at collection and
  add the event loop fixture to their arguments, 1.x wraps them while they are set up. A quiesce
  test runs the original function on its own loop instead, and asks for none of
  pytest-asyncio's loops.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, List, Optional, Set, Tuple

import pytest

#: Fixture names through which pytest-asyncio hands out its event loops: ``event_loop``
#: (up to 0.26), the scoped loops of 0.23 to 1.0 (``_function_event_loop``,
#: ``tests/test_x.py::<event_loop>``) and the runners of 1.x (``_function_scoped_runner``).


def is_loop_fixture(name: str) -> bool:
    """Whether ``name`` is one of pytest-asyncio's event loop (or runner) fixtures."""
    return (
        name == "event_loop"
        or name.endswith("::<event_loop>")
        or (name.startswith("_") and name.endswith(("_event_loop", "_scoped_runner")))
    )


def _is_async_function(func: Any) -> bool:
    func = getattr(func, "__func__", func)
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def is_marked_fixture(func: Any) -> bool:
    """Whether pytest-asyncio owns the fixture function ``func`` (``@pytest_asyncio.fixture``,
    or an async fixture it wrapped in auto mode)."""
    return bool(getattr(getattr(func, "__func__", func), "_force_asyncio_fixture", False))


def original_fixture_function(func: Any) -> Any:
    """The user's fixture function behind ``func``: pytest-asyncio 0.21 to 0.26 replace an
    async fixture's function with a synchronous wrapper (``functools.wraps``, so the original
    is its ``__wrapped__``)."""
    if is_marked_fixture(func) and not _is_async_function(func):
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None and _is_async_function(wrapped):
            return wrapped
    return func


def _parameters(func: Any) -> Optional[Set[str]]:
    """The names ``func`` takes, or None if it takes ``**kwargs`` (or has no signature)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def call_with_own_arguments(func: Any, kwargs: Any) -> Any:
    """Calls ``func`` with those of ``kwargs`` it takes (pytest passes a wrapped fixture the
    arguments pytest-asyncio added to it as well)."""
    names = _parameters(func)
    if names is None:
        return func(**kwargs)
    return func(**{key: value for key, value in kwargs.items() if key in names})


def injected_argnames(fixturedef: Any) -> Tuple[str, ...]:
    """The arguments pytest-asyncio added to a fixture it wrapped at collection
    (``request`` and its event loop fixture), which the original function does not take."""
    original = original_fixture_function(fixturedef.func)
    if original is fixturedef.func:
        return ()
    names = _parameters(original)
    if names is None:
        return ()
    return tuple(name for name in fixturedef.argnames if name not in names)


def explicit_mark_level(item: pytest.Item, name: str) -> Optional[int]:
    """How close to ``item`` a mark called ``name`` was put by the user: 0 on the test
    function (or its ``pytest.param``), 1 on its class, and so on outwards; None if nowhere
    (a mark a plugin added to the item, such as pytest-asyncio's auto mode, does not count)."""
    function = getattr(item, "function", None)
    own = list(getattr(function, "pytestmark", None) or [])
    own += list(getattr(getattr(item, "callspec", None), "marks", None) or [])
    if any(getattr(mark, "name", None) == name for mark in own):
        return 0
    parents = [node for node in reversed(item.listchain()) if node is not item]
    for level, node in enumerate(parents, start=1):
        if any(mark.name == name for mark in node.own_markers):
            return level
    return None


def quiesce_mark_wins(item: pytest.Item) -> bool:
    """Whether ``item`` carries ``@pytest.mark.quiesce`` put by the user and no ``asyncio``
    mark but the one pytest-asyncio's auto mode puts on every async test (which loses)."""
    return (
        explicit_mark_level(item, "quiesce") is not None
        and explicit_mark_level(item, "asyncio") is None
    )


def _is_pytest_asyncio_item(item: pytest.Item) -> bool:
    return type(item).__module__.startswith("pytest_asyncio")


def take_back(item: pytest.Item) -> pytest.Item:
    """``item`` without the ``asyncio`` mark pytest-asyncio put on it and, if pytest-asyncio
    turned it into an item class of its own, as a plain :class:`pytest.Function` again (the
    one to run in its place)."""
    marks = [mark for mark in item.own_markers if mark.name != "asyncio"]
    if not _is_pytest_asyncio_item(item) or not isinstance(item, pytest.Function):
        item.own_markers[:] = marks
        return item
    plain = pytest.Function.from_parent(
        item.parent,
        name=item.name,
        callspec=getattr(item, "callspec", None),
        callobj=item.obj,
        fixtureinfo=item._fixtureinfo,
        keywords=item.keywords,
        originalname=item.originalname,
    )
    plain.own_markers = marks
    return plain


def loop_fixtures_requested(item: Any, fixturedefs: Iterable[Any]) -> List[str]:
    """pytest-asyncio loop fixtures that the test itself or one of the user's fixture
    functions (not pytest-asyncio's wrappers) asks for by name."""
    wanted: List[str] = [name for name in item._fixtureinfo.initialnames if is_loop_fixture(name)]
    for fixturedef in fixturedefs:
        original = original_fixture_function(fixturedef.func)
        names = _parameters(original) or set()
        wanted += [
            f"{name} (asked for by fixture {fixturedef.argname!r})"
            for name in sorted(names)
            if is_loop_fixture(name)
        ]
    return wanted


class InjectedArgumentsRemoved:
    """While a quiesce test is set up: the fixtures pytest-asyncio wrapped at collection do
    not take the arguments it added (so pytest sets up none of its event loops for them), and
    the test's fixture closure leaves out the loop fixtures only those arguments brought in."""

    def __init__(self, item: pytest.Item) -> None:
        self.item: Any = item
        self.saved: List[Tuple[Any, Tuple[str, ...]]] = []
        self.saved_names: Optional[List[str]] = None

    def __enter__(self) -> InjectedArgumentsRemoved:
        fixturedefs = [
            fixturedef
            for defs in self.item._fixtureinfo.name2fixturedefs.values()
            for fixturedef in defs
        ]
        dropped: Set[str] = set()
        for fixturedef in fixturedefs:
            injected = injected_argnames(fixturedef)
            if injected:
                self.saved.append((fixturedef, fixturedef.argnames))
                fixturedef.argnames = tuple(n for n in fixturedef.argnames if n not in injected)
                dropped.update(injected)
        still_needed = set(self.item._fixtureinfo.initialnames)
        for fixturedef in fixturedefs:
            still_needed.update(fixturedef.argnames)
        unneeded = {name for name in dropped - still_needed if is_loop_fixture(name)}
        names = getattr(self.item, "fixturenames", None)
        if unneeded and isinstance(names, list):
            self.saved_names = list(names)
            names[:] = [name for name in names if name not in unneeded]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for fixturedef, argnames in self.saved:
            fixturedef.argnames = argnames
        if self.saved_names is not None:
            self.item.fixturenames[:] = self.saved_names  # type: ignore[attr-defined]
