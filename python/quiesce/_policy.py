"""``quiesce.EventLoopPolicy``: an asyncio event loop policy whose loops are quiesce loops.

For code and tools that create their loops through the policy (``asyncio.new_event_loop()``,
``asyncio.run()`` before 3.12, pytest-asyncio's ``event_loop_policy`` fixture, anyio's runner
without a ``loop_factory``). Event loop policies are deprecated from Python 3.14 on and their
removal is planned for 3.16; prefer a loop factory wherever a tool takes one:
``asyncio.run(main, loop_factory=quiesce.Loop)`` (3.12+), ``asyncio.Runner(loop_factory=...)``
(3.11+), ``IsolatedAsyncioTestCase.loop_factory`` (3.13+), pytest-asyncio's
``pytest_asyncio_loop_factories`` hook (1.4+).

:func:`use_quiesce_loops` is what ``python -m quiesce run`` uses to make a whole program's loops
quiesce loops: a policy before 3.14, asyncio's loop factory function from 3.14 on.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any, Dict, Optional

from quiesce._loop import _CLOCKS, DEFAULT_WATCHDOG, Loop, _check_seconds, _check_seed

with warnings.catch_warnings():
    # asyncio.DefaultEventLoopPolicy is deprecated (with all policies) from Python 3.14 on,
    # and planned to be gone in 3.16; there, EventLoopPolicy() says so instead of importing.
    warnings.simplefilter("ignore", DeprecationWarning)
    _DefaultPolicy: Any = getattr(asyncio, "DefaultEventLoopPolicy", None)

_NO_POLICIES = (
    "asyncio has no event loop policies on this Python (they were deprecated in 3.14): pass "
    "loop_factory=quiesce.Loop to asyncio.run() or asyncio.Runner(), set "
    "IsolatedAsyncioTestCase.loop_factory, or use quiesce.run()"
)


class EventLoopPolicy(_DefaultPolicy or object):  # type: ignore[misc]
    """asyncio's default event loop policy, except that :meth:`new_event_loop` makes a
    :class:`quiesce.Loop` with the keyword arguments given here.

    ``seed``, ``clock``, ``watchdog`` and ``io_grace`` are checked at once, as
    :class:`quiesce.Loop` checks them, and passed to every loop this policy makes::

        asyncio.set_event_loop_policy(quiesce.EventLoopPolicy(seed=3))
        loop = asyncio.new_event_loop()   # a quiesce.Loop with seed=3

    Everything else (the current loop of each thread, child watchers before 3.12) is
    asyncio's default policy.
    """

    def __init__(
        self,
        *,
        seed: Optional[int] = None,
        clock: str = "virtual",
        watchdog: Optional[float] = DEFAULT_WATCHDOG,
        io_grace: Optional[float] = None,
    ) -> None:
        seed = _check_seed(seed)
        if not isinstance(clock, str) or clock not in _CLOCKS:
            raise ValueError(f"clock must be 'virtual' or 'real', got {clock!r}")
        watchdog = _check_seconds("watchdog", watchdog)
        if watchdog == 0:
            raise ValueError("watchdog must be > 0 seconds, or None to wait forever")
        io_grace = _check_seconds("io_grace", io_grace)
        if _DefaultPolicy is None:
            raise RuntimeError(_NO_POLICIES)
        super().__init__()
        self._q_loop_kwargs: Dict[str, Any] = {
            "seed": seed,
            "clock": clock,
            "watchdog": watchdog,
            "io_grace": io_grace,
        }

    @property
    def loop_kwargs(self) -> Dict[str, Any]:
        """A copy of the keyword arguments every new loop gets (``seed``, ``clock``,
        ``watchdog``, ``io_grace``)."""
        return dict(self._q_loop_kwargs)

    def new_event_loop(self) -> Loop:
        """Returns a new :class:`quiesce.Loop` made with this policy's keyword arguments."""
        return Loop(**self._q_loop_kwargs)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._q_loop_kwargs.items())
        return f"quiesce.EventLoopPolicy({options})"


def use_quiesce_loops(**loop_kwargs: Any) -> None:
    """Makes every event loop asyncio creates by itself, for the rest of the process, a
    :class:`quiesce.Loop` made with ``loop_kwargs``: the loops of ``asyncio.run()``,
    ``asyncio.Runner`` and ``IsolatedAsyncioTestCase`` without a ``loop_factory``, and
    ``asyncio.new_event_loop()``. A loop class instantiated by name is not affected.

    Before 3.14 this installs an :class:`EventLoopPolicy`. From 3.14 on, where policies are
    deprecated, it replaces ``asyncio.new_event_loop`` (which those all call) instead, so no
    deprecated API is used and nothing changes when policies are removed.
    """
    if sys.version_info < (3, 14):
        asyncio.set_event_loop_policy(EventLoopPolicy(**loop_kwargs))
        return
    Loop(**loop_kwargs).close()  # bad arguments fail here, not at the program's first loop

    def new_event_loop() -> Loop:
        """A new :class:`quiesce.Loop` (installed by ``quiesce run``)."""
        return Loop(**loop_kwargs)

    asyncio.events.new_event_loop = new_event_loop
    asyncio.new_event_loop = new_event_loop
