"""``quiesce.Loop(*, seed=None, clock="virtual")``: defaults, accepted values, rejected values."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from typing import Any, Callable, Iterator, List

import pytest

import quiesce


@contextlib.contextmanager
def collecting_unraisable() -> Iterator[List[str]]:
    """Collects unraisable exceptions (e.g. raised inside ``__del__``) instead of reporting
    them. Installed inside the test body: pytest swaps ``sys.unraisablehook`` per test phase."""
    seen: List[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        seen.append(f"{info.exc_type.__name__}: {info.exc_value} (in {info.object!r})")

    sys.unraisablehook = hook
    try:
        yield seen
    finally:
        gc.collect()
        sys.unraisablehook = previous


def test_defaults(loop: quiesce.Loop) -> None:
    assert loop.seed is None
    assert loop.clock == "virtual"
    assert loop.time() == 0.0
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert not loop.is_running()
    assert not loop.is_closed()
    assert "clock=virtual" in repr(loop)


def test_public_names() -> None:
    assert issubclass(quiesce.Deadlock, RuntimeError)
    assert issubclass(quiesce.BudgetExceeded, RuntimeError)
    assert issubclass(quiesce.TimerHandle, quiesce.Handle)
    assert quiesce.DEFAULT_MAX_STEPS == 10_000_000


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63, 2**64 - 1])
def test_accepted_seeds(make_loop: Callable[..., quiesce.Loop], seed: int) -> None:
    new_loop = make_loop(seed=seed)
    assert new_loop.seed == seed
    assert new_loop.time() == 0.0


@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_accepted_clocks(make_loop: Callable[..., quiesce.Loop], clock: str) -> None:
    assert make_loop(clock=clock).clock == clock


@pytest.mark.parametrize("seed", [-1, 2**64, 2**100])
def test_out_of_range_seed_is_a_value_error(seed: int) -> None:
    with collecting_unraisable(), pytest.raises(ValueError, match="seed"):
        quiesce.Loop(seed=seed)


@pytest.mark.parametrize("seed", [True, False, 1.0, "1", b"1", [1]])
def test_non_int_seed_is_a_type_error(seed: Any) -> None:
    with collecting_unraisable(), pytest.raises(TypeError, match="seed"):
        quiesce.Loop(seed=seed)


@pytest.mark.parametrize("clock", ["Virtual", "wall", "", "monotonic"])
def test_unknown_clock_is_a_value_error(clock: str) -> None:
    with collecting_unraisable(), pytest.raises(ValueError, match="clock"):
        quiesce.Loop(clock=clock)


@pytest.mark.parametrize("clock", [None, 1, b"virtual"])
def test_non_string_clock_is_rejected(clock: Any) -> None:
    with collecting_unraisable(), pytest.raises((TypeError, ValueError), match="clock"):
        quiesce.Loop(clock=clock)


def test_arguments_are_keyword_only() -> None:
    with collecting_unraisable(), pytest.raises(TypeError):
        quiesce.Loop(1)  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": "x"}, {"clock": "wall"}])
def test_rejected_construction_leaves_nothing_behind(kwargs: Any) -> None:
    """A constructor that raises must not leave a half-made loop whose finaliser then fails
    (an ``unclosed event loop`` warning or an error inside ``__del__``)."""
    with collecting_unraisable() as unraisable:
        with pytest.raises((TypeError, ValueError)):
            quiesce.Loop(**kwargs)
        gc.collect()
    assert unraisable == []


def test_loops_are_independent(make_loop: Callable[..., quiesce.Loop]) -> None:
    first = make_loop()
    second = make_loop()
    first.call_later(5, lambda: None)
    first.advance(5)
    assert first.time() == 5.0
    assert second.time() == 0.0
    assert len(second._scheduled) == 0
