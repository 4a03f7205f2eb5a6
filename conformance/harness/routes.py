"""Loop substitution and loop census.

CPython's test_asyncio makes event loops by many routes. In a quiesce mode every route that an
included module uses returns a ``quiesce.Loop`` (see :func:`install_quiesce_routes`):

==========================================================  =====================================
route                                                       substitute
==========================================================  =====================================
``asyncio.new_event_loop()``, ``asyncio.run()``,            the default policy class's
``asyncio.Runner`` without ``loop_factory``,                ``_loop_factory`` (policy instances
``asyncio.get_event_loop()`` (3.9), ``set_event_loop_       made before or after, including by
policy(None)`` then any of those                            ``set_event_loop_policy(None)``)
``asyncio.SelectorEventLoop(selector)``,                    a ``quiesce.Loop`` subclass that
``asyncio.EventLoop`` (3.13), ``unix_events.                only adds the ``selector`` argument
SelectorEventLoop``, ``unix_events._UnixSelectorEventLoop``
``asyncio.BaseEventLoop()`` (test_pep492, test_runners:     a ``quiesce.Loop`` that also accepts
a loop with a mocked ``_selector``)                         the mocked selector (see below)
``test_utils.TestCase.new_test_loop(gen)``                  a virtual-clock ``quiesce.Loop`` in
                                                            every mode (``gen`` unused)
``unittest.IsolatedAsyncioTestCase`` (3.9:                  the policy route, and on 3.11+ the
``asyncio.new_event_loop``; 3.11+: ``asyncio.Runner``)      class's ``loop_factory``
==========================================================  =====================================

The census (:class:`LoopCensus`, installed in every mode, stock included) wraps
``BaseEventLoop.__init__`` and ``BaseEventLoop.run_forever``, the two points every asyncio loop
passes through, and counts loops created and loop runs per class. The report uses it to prove
that the tests ran on ``quiesce.Loop``, and to list any test that ran another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import selectors
import unittest
from asyncio import base_events, unix_events
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

#: Label of every ``quiesce.Loop`` in the census.
QUIESCE = "quiesce.Loop"

#: Broken variants for the self-check (``--mode broken-*``): name -> description.
BROKEN_VARIANTS = {
    "drop10": "quiesce.Loop whose call_soon silently drops every 10th callback",
    "reverse": "quiesce.Loop that runs each turn's ready callbacks in reverse order",
}


class LoopCensus:
    """Counts event loops created and run, per class, overall and since the last :meth:`mark`."""

    def __init__(self) -> None:
        self.created: Counter = Counter()
        self.runs: Counter = Counter()
        self._created_mark: Counter = Counter()
        self._runs_mark: Counter = Counter()
        self._quiesce_type: Optional[type] = None

    def install(self) -> None:
        """Wraps ``BaseEventLoop.__init__`` and ``run_forever`` (once per process)."""
        try:
            import quiesce
        except ImportError:  # stock mode on an interpreter without quiesce
            quiesce = None
        self._quiesce_type = quiesce.Loop if quiesce is not None else None
        census = self
        original_init = base_events.BaseEventLoop.__init__
        original_run_forever = base_events.BaseEventLoop.run_forever

        @functools.wraps(original_init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            census.created[census.label(self)] += 1
            original_init(self, *args, **kwargs)

        @functools.wraps(original_run_forever)
        def run_forever(self: Any) -> Any:
            census.runs[census.label(self)] += 1
            return original_run_forever(self)

        base_events.BaseEventLoop.__init__ = __init__  # type: ignore[method-assign]
        base_events.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]

    def label(self, loop: Any) -> str:
        """``"quiesce.Loop"`` for any quiesce loop, else the loop's qualified class name."""
        if self._quiesce_type is not None and isinstance(loop, self._quiesce_type):
            return QUIESCE
        cls = type(loop)
        return f"{cls.__module__}.{cls.__qualname__}"

    def mark(self) -> None:
        """Starts a new per-test window."""
        self._created_mark = Counter(self.created)
        self._runs_mark = Counter(self.runs)

    def since_mark(self) -> Dict[str, Dict[str, int]]:
        """Loops created and run since the last :meth:`mark`, per class label."""
        return {
            "created": dict(self.created - self._created_mark),
            "runs": dict(self.runs - self._runs_mark),
        }

    def totals(self) -> Dict[str, Dict[str, int]]:
        """Loops created and run since :meth:`install`, per class label."""
        return {"created": dict(self.created), "runs": dict(self.runs)}


@contextlib.contextmanager
def _default_selector(selector: Optional[selectors.BaseSelector]) -> Iterator[None]:
    """Makes ``selectors.DefaultSelector()`` return ``selector`` for the duration, so that
    ``quiesce.Loop.__init__`` (which takes no selector) builds its selector loop on it."""
    if selector is None:
        yield
        return
    original = selectors.DefaultSelector
    selectors.DefaultSelector = lambda: selector  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        selectors.DefaultSelector = original  # type: ignore[misc]


def make_loop_classes(clock: str, variant: Optional[str] = None) -> Tuple[type, type]:
    """The substitute classes for a mode: ``(selector_loop, base_loop_stand_in)``.

    Both are thin ``quiesce.Loop`` subclasses; neither changes scheduling unless ``variant``
    names a deliberately broken variant (:data:`BROKEN_VARIANTS`).
    """
    import quiesce

    class QuiesceSelectorLoop(quiesce.Loop):  # type: ignore[misc]
        """``quiesce.Loop`` with ``asyncio.SelectorEventLoop``'s signature:
        ``(selector=None)``."""

        def __init__(self, selector: Optional[selectors.BaseSelector] = None) -> None:
            with _default_selector(selector):
                super().__init__(clock=clock)

    base: type = QuiesceSelectorLoop
    if variant == "drop10":

        class DropEveryTenthLoop(QuiesceSelectorLoop):
            """Broken on purpose: ``call_soon`` drops every 10th callback."""

            _harness_calls = 0

            def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None):
                handle = super().call_soon(callback, *args, context=context)
                self._harness_calls += 1
                if self._harness_calls % 10 == 0:
                    handle.cancel()
                return handle

        base = DropEveryTenthLoop
    elif variant == "reverse":

        class ReverseOrderLoop(QuiesceSelectorLoop):
            """Broken on purpose: each turn runs its ready callbacks last-in first-out."""

            def _run_once(self) -> None:
                handles = list(self._ready)
                if len(handles) > 1:
                    self._ready.clear()
                    for handle in reversed(handles):
                        self._add_callback(handle)
                super()._run_once()

        base = ReverseOrderLoop
    elif variant is not None:
        raise ValueError(f"unknown broken variant {variant!r}")

    class QuiesceBaseLoopStandIn(base):  # type: ignore[misc,valid-type]
        """Stands in for ``asyncio.BaseEventLoop()``.

        test_pep492 and test_runners build a bare ``BaseEventLoop`` and replace its
        ``_selector`` with a ``Mock`` whose ``select()`` returns ``()``. A quiesce loop
        accepts that (it polls through ``self._selector``), but its own selector holds the
        self-pipe, which ``close()`` must unregister: ``close()`` puts it back first.
        """

        def __init__(self) -> None:
            super().__init__()
            self._harness_selector = self._selector

        def close(self) -> None:
            self._selector = self._harness_selector
            super().close()

    QuiesceSelectorLoop.__qualname__ = QuiesceSelectorLoop.__name__
    QuiesceBaseLoopStandIn.__qualname__ = QuiesceBaseLoopStandIn.__name__
    return base, QuiesceBaseLoopStandIn


def make_test_loop_class(variant: Optional[str] = None) -> type:
    """The substitute for ``test_utils.TestLoop`` (what ``new_test_loop`` returns), in every
    mode.

    ``TestLoop`` is the suite's own virtual-time loop: its clock starts at 0 and moves only as
    its ``gen`` script says, and tests assert exact ``loop.time()`` values on it. Its faithful
    substitute is therefore a *virtual-clock* ``quiesce.Loop``, even in the real-clock mode
    (whose substitutes for the real-time routes run on the real clock): quiesce's clock also
    starts at 0 and jumps to the next timer, and ``advance_time(seconds)``, the one
    ``TestLoop`` method tests call on the loop, moves it forward as ``TestLoop``'s does. The
    ``gen`` script (which only checks the select timeouts ``TestLoop`` sees) is not used.
    """
    selector_loop, _base = make_loop_classes("virtual", variant)

    class QuiesceTestLoop(selector_loop):  # type: ignore[misc,valid-type]
        """A virtual-clock ``quiesce.Loop`` with ``TestLoop.advance_time``."""

        def advance_time(self, advance: float) -> None:
            """Moves the virtual clock forward by ``advance`` seconds (like ``TestLoop``'s:
            timers that become due run on the loop's next turn)."""
            if advance:
                self._q_move_clock(self.time() + advance)

    QuiesceTestLoop.__qualname__ = QuiesceTestLoop.__name__
    return QuiesceTestLoop


def install_quiesce_routes(clock: str, variant: Optional[str] = None) -> List[str]:
    """Routes every way an included test module makes a loop to ``quiesce.Loop``.

    Returns a description of each route patched (for the worker's report).
    """
    from test.test_asyncio import utils as test_utils

    selector_loop, base_loop = make_loop_classes(clock, variant)
    patched: List[str] = []

    def patch(owner: Any, name: str, value: Any) -> None:
        if hasattr(owner, name):
            setattr(owner, name, value)
            owner_name = getattr(owner, "__name__", repr(owner))
            patched.append(f"{owner_name}.{name}")

    # Policy route: asyncio.new_event_loop(), asyncio.run(), Runner(), get_event_loop() (3.9),
    # IsolatedAsyncioTestCase; also policies made later (set_event_loop_policy(None),
    # asyncio.DefaultEventLoopPolicy()), since the factory is a class attribute.
    patch(unix_events._UnixDefaultEventLoopPolicy, "_loop_factory", selector_loop)
    # Explicit selector-loop classes.
    for owner in (asyncio, unix_events):
        patch(owner, "SelectorEventLoop", selector_loop)
        patch(owner, "EventLoop", selector_loop)  # 3.13
    patch(unix_events, "_UnixSelectorEventLoop", selector_loop)
    # asyncio.BaseEventLoop() with a mocked selector (test_pep492, test_runners).
    patch(asyncio, "BaseEventLoop", base_loop)

    # test_utils.TestCase.new_test_loop(gen): the suite's own virtual-time loop.
    test_loop = make_test_loop_class(variant)

    def new_test_loop(self: Any, gen: Any = None) -> Any:
        loop = test_loop()
        self.set_event_loop(loop)
        return loop

    patch(test_utils.TestCase, "new_test_loop", new_test_loop)
    # IsolatedAsyncioTestCase on 3.11+ passes loop_factory to asyncio.Runner.
    patch(unittest.IsolatedAsyncioTestCase, "loop_factory", selector_loop)

    # A policy already in place keeps its class's (now patched) factory; start clean anyway.
    asyncio.set_event_loop_policy(None)
    return patched
