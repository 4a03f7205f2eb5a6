"""Background tasks: tasks that never count towards idleness or deadlock."""

from __future__ import annotations

import asyncio
from typing import TypeVar

TaskT = TypeVar("TaskT", bound="asyncio.Task")


def background(task: TaskT) -> TaskT:
    """Marks ``task`` (of a running or not yet running :class:`quiesce.Loop`) as a background
    task, and returns it.

    A background task (a heartbeat, a metrics flusher, a watchdog of your own) never counts
    towards idleness or deadlock: ``run_until_idle()`` returns when only background tasks'
    timers are left, ``run_until_complete`` raises :class:`quiesce.Deadlock` instead of jumping
    the clock forever for them, and reports mark it ``[background]``. ``loop.close()`` cancels
    the background tasks still pending and lets them finish their cleanup first.
    """
    from quiesce._loop import Loop

    if not asyncio.isfuture(task) or not hasattr(task, "get_coro"):
        raise TypeError(f"background() takes an asyncio.Task, got {type(task).__name__}")
    loop = task.get_loop()
    if not isinstance(loop, Loop):
        raise TypeError(f"background() needs a task of a quiesce.Loop; this task runs on {loop!r}")
    if not task.done():
        loop._q_background.add(task)
        loop._q_set_jump_hook(True)
    return task
