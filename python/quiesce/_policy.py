"""``quiesce.EventLoopPolicy``: an asyncio event loop policy whose loops are quiesce loops.

For code and tools that create their loops through the policy (``asyncio.new_event_loop()``,
``asyncio.run()`` before 3.12, pytest-asyncio's ``event_loop_policy`` fixture, anyio's runner
without a ``loop_factory``). Event loop policies are deprecated from Python 3.14 on; on 3.11+
prefer ``asyncio.Runner(loop_factory=quiesce.Loop)`` where a tool accepts a loop factory.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Dict, Optional

from quiesce._loop import _CLOCKS, DEFAULT_WATCHDOG, Loop, _check_seconds, _check_seed

with warnings.catch_warnings():
    # asyncio.DefaultEventLoopPolicy is deprecated (with all policies) from Python 3.14 on.
    warnings.simplefilter("ignore", DeprecationWarning)
    _DefaultPolicy: Any = asyncio.DefaultEventLoopPolicy


class EventLoopPolicy(_DefaultPolicy):  # type: ignore[misc,valid-type]
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
