"""Triaged differences from stock: tests that pass on the stock loop and fail on quiesce.

Every such test must be listed here, with the reason, or the run fails (see
:func:`harness.report.check`). Kinds:

- :data:`VIRTUAL_TIME`: the test measures real time around a sleep or a timeout, or drives
  ``test_utils.TestLoop``'s scripted clock; on the virtual clock that is a deliberate
  difference (README, "Differences from stock asyncio").
- :data:`DOCUMENTED`: another documented, deliberate difference.
- :data:`BUG`: a quiesce bug, kept here only until it is fixed (the run fails while any is
  listed and still failing).
"""

from __future__ import annotations

import fnmatch
from typing import List, NamedTuple, Optional, Tuple

VIRTUAL_TIME = "virtual time"
DOCUMENTED = "documented difference"
BUG = "quiesce bug"


class Triage(NamedTuple):
    """Why a test that passes on stock fails on quiesce. ``hangs``: the test never ends in
    that mode by design, so the harness does not start it (it is reported as a hang)."""

    kind: str
    why: str
    hangs: bool = False


#: ``(modes, python versions glob, test id glob, triage)``. ``modes`` is a tuple of "real" /
#: "virtual"; the version glob matches ``platform.python_version()`` (e.g. ``"3.9.*"``).
EXPECTED: List[Tuple[Tuple[str, ...], str, str, Triage]] = [
    (
        ("real", "virtual"),
        "*",
        "test_tasks.*.test_stop_while_run_in_complete",
        Triage(
            VIRTUAL_TIME,
            "a test_utils.TestLoop test (its substitute is a virtual-clock quiesce.Loop in "
            "both modes): asserts loop.time() == 0.3 after loop.stop() at t=0.2. TestLoop "
            "moves its scripted clock to the next timer as soon as one is scheduled, even when "
            "the loop then stops; quiesce's virtual clock, like a real one, stays at 0.2 until "
            "the loop runs again",
        ),
    ),
    (
        ("real", "virtual"),
        "3.9.*",
        "test_queues.QueueGetTests.test_get_cancelled",
        Triage(
            VIRTUAL_TIME,
            "a test_utils.TestLoop test: asserts loop.time() == 0.06 after the queue's getter "
            "got its item at t=0.01. TestLoop advances its scripted clock as soon as the "
            "wait_for() timer (due at 0.061) is scheduled; quiesce's virtual clock, like a "
            "real one, stays at 0.01 because nothing needed to wait",
        ),
    ),
    (
        ("real", "virtual"),
        "*",
        "test_events.*.test_call_soon_threadsafe_handle_block_*",
        Triage(
            DOCUMENTED,
            "3.14+: asserts that call_soon_threadsafe returns an events._ThreadSafeHandle and "
            "that its cancel()/cancelled(), called from another thread while the callback "
            "runs, wait for the callback to finish. quiesce returns its native Handle (not an "
            "asyncio.Handle subclass), whose cancel()/cancelled() return at once; the "
            "assertion fails in the thread, which never stops the loop, so the loop reports a "
            "Deadlock",
        ),
    ),
    (
        ("real", "virtual"),
        "*",
        "test_events.*.test_call_soon_threadsafe_handle_cancel_other_thread",
        Triage(
            DOCUMENTED,
            "3.14+: asserts that call_soon_threadsafe returns an events._ThreadSafeHandle "
            "(quiesce returns its native Handle); the assertion fails in the thread before it "
            "sets the threading.Event that the loop thread is blocked on inside a callback, so "
            "the test never ends (on stock too, were the assertion to fail)",
            hangs=True,
        ),
    ),
]


#: Tests that build an event loop class of their own on purpose, so their census shows a loop
#: that is not ``quiesce.Loop`` in every mode: ``(test id glob, loop class glob, why)``.
OWN_LOOPS: List[Tuple[str, str, str]] = [
    (
        "test_futures.*.test_evil_call_soon_list_mutation",
        "test.test_asyncio.test_futures.SimpleEvilEventLoop",
        "checks the C Future against a hostile loop subclass it defines (3.13.4+, 3.14+)",
    ),
    (
        "test_futures.*.test_use_after_free_on_fut_*_with_evil__getattribute__",
        "test.test_asyncio.test_futures.*EvilEventLoop",
        "checks the C Future against a hostile loop subclass it defines (3.13.4+, 3.14+)",
    ),
]


def own_loop(test_id: str, label: str) -> Optional[str]:
    """Why ``test_id`` makes a loop of class ``label`` itself, if it does so on purpose."""
    for test_glob, label_glob, why in OWN_LOOPS:
        if fnmatch.fnmatchcase(test_id, test_glob) and fnmatch.fnmatchcase(label, label_glob):
            return why
    return None


def triage(version: str, mode: str, test_id: str) -> Optional[Triage]:
    """The triage of a test that passes on stock and fails in ``mode``, if any."""
    for modes, version_glob, pattern, result in EXPECTED:
        if (
            mode in modes
            and fnmatch.fnmatchcase(version, version_glob)
            and fnmatch.fnmatchcase(test_id, pattern)
        ):
            return result
    return None


def known_hang(version: str, mode: str, test_id: str) -> Optional[Triage]:
    """The triage of a test that hangs by design in ``mode`` (and is not started), if any."""
    found = triage(version, mode, test_id)
    return found if found is not None and found.hangs else None
