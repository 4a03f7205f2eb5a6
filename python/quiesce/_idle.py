"""``await quiesce.wait_all_tasks_blocked()``: resume once every other task is blocked."""

from __future__ import annotations

import asyncio


async def wait_all_tasks_blocked() -> None:
    """Returns once every other task of the running :class:`quiesce.Loop` is blocked: no
    callback is runnable and no timer is due. The clock does not move.

    The counterpart, inside a coroutine, of ``loop.run_until_blocked()`` (and of trio's and
    anyio's function of the same name). Several callers waiting at once all resume together.
    """
    from quiesce._loop import Loop

    loop = asyncio.get_running_loop()
    if not isinstance(loop, Loop):
        raise RuntimeError(
            "wait_all_tasks_blocked() needs a running quiesce.Loop, but the running loop is "
            f"{loop!r}; run the test on quiesce.Loop()"
        )
    waiter = loop.create_future()
    loop._q_idle_waiters.append(waiter)
    loop._q_set_idle_waiters(True)
    await waiter
