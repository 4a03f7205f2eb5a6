"""Read-mostly views that stand in for stock asyncio's ``_ready`` deque and ``_scheduled`` heap.

asyncio's own code and some test suites reach into these private attributes (``close()`` clears
them; tests count them). quiesce keeps its queues in Rust, so these views answer from there.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Protocol


class _Core(Protocol):
    def _q_ready_handles(self) -> List[Any]: ...
    def _q_timer_handles(self) -> List[Any]: ...
    def _q_clear(self, which: str) -> None: ...
    def _add_callback(self, handle: Any) -> None: ...


class ReadyView:
    """``loop._ready``: the runnable handles, in queue order."""

    def __init__(self, core: _Core) -> None:
        self._core = core

    def _items(self) -> List[Any]:
        return self._core._q_ready_handles()

    def __len__(self) -> int:
        return len(self._items())

    def __bool__(self) -> bool:
        return bool(self._items())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __getitem__(self, index: int) -> Any:
        return self._items()[index]

    def append(self, handle: Any) -> None:
        """Queues an ``asyncio.Handle`` (as ``deque.append`` would)."""
        self._core._add_callback(handle)

    def clear(self) -> None:
        """Drops every runnable handle (what ``BaseEventLoop.close`` does)."""
        self._core._q_clear("ready")

    def __repr__(self) -> str:
        return f"ReadyView({self._items()!r})"


class ScheduledView:
    """``loop._scheduled``: the pending timer handles, earliest first."""

    def __init__(self, core: _Core) -> None:
        self._core = core

    def _items(self) -> List[Any]:
        return self._core._q_timer_handles()

    def __len__(self) -> int:
        return len(self._items())

    def __bool__(self) -> bool:
        return bool(self._items())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __getitem__(self, index: int) -> Any:
        return self._items()[index]

    def clear(self) -> None:
        """Drops every pending timer (what ``BaseEventLoop.close`` does)."""
        self._core._q_clear("timers")

    def __repr__(self) -> str:
        return f"ScheduledView({self._items()!r})"
