"""Fault points and hold points: places where code under test lets exploration interfere.

Both are decisions of the loop's scheduling policy, so they are seeded under a seed, explored
by the bounded search, recorded in the schedule string and replayed exactly. Outside a
:class:`quiesce.Loop`, or under the stock (FIFO) order, they never fire: production code may
keep them.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Optional

from quiesce._idle import wait_all_tasks_blocked

if TYPE_CHECKING:
    from quiesce._loop import Loop


def _check_point(name: object, probability: object) -> float:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a fault point needs a non-empty str name, got {name!r}")
    if isinstance(probability, bool) or not isinstance(probability, (int, float)):
        raise TypeError(f"probability must be a number, got {type(probability).__name__}")
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ValueError(f"probability must be between 0 and 1, got {probability!r}")
    return float(probability)


def _exploring_loop() -> Optional[Loop]:
    from quiesce._loop import Loop

    loop = asyncio._get_running_loop()
    if isinstance(loop, Loop) and loop.policy != "fifo":
        return loop
    return None


def buggify(name: str, probability: float = 0.25) -> bool:
    """Whether the fault point ``name`` fires now: True with ``probability`` under a seeded or
    explored :class:`quiesce.Loop`, always False elsewhere (stock asyncio, FIFO order, no
    running loop). Use it to take the rare path on purpose::

        if quiesce.buggify("ack-lost"):
            return              # pretend the acknowledgement never arrived

    Each call is one recorded decision: a failing run's schedule string replays exactly which
    calls fired, and the failure report lists them.
    """
    probability = _check_point(name, probability)
    loop = _exploring_loop()
    if loop is None:
        return False
    fired = loop._q_fault(probability)
    if fired:
        loop._q_faults_fired.append((name, loop.time()))
    return fired


async def hold(name: str, probability: float = 0.5) -> None:
    """A hold point: under a seeded or explored :class:`quiesce.Loop`, with ``probability``,
    holds the calling task here until every other task is blocked, so that it arrives last
    (for example at a lock, or after a notification it should have waited for). Elsewhere it
    returns at once without yielding, so stock behaviour is unchanged.

    Like :func:`buggify`, each call is a recorded, replayable decision.
    """
    probability = _check_point(name, probability)
    loop = _exploring_loop()
    if loop is None or not loop._q_fault(probability):
        return
    loop._q_faults_fired.append((f"hold:{name}", loop.time()))
    await wait_all_tasks_blocked()
