"""Background tasks: tasks that never count towards idleness or deadlock."""

from __future__ import annotations

import asyncio
import threading
from typing import Optional, TypeVar, Union, cast

TaskT = TypeVar("TaskT", bound="Union[asyncio.Task, threading.Thread]")


def background(task: TaskT, *, loop: Optional[asyncio.AbstractEventLoop] = None) -> TaskT:
    """Marks ``task`` (of a running or not yet running :class:`quiesce.Loop`) as a background
    task, and returns it.

    A background task (a heartbeat, a metrics flusher, a watchdog of your own) never counts
    towards idleness or deadlock: ``run_until_idle()`` returns when only background tasks'
    timers are left, ``run_until_complete`` raises :class:`quiesce.Deadlock` instead of jumping
    the clock forever for them, and reports mark it ``[background]``. ``loop.close()`` cancels
    the background tasks still pending and lets them finish their cleanup first.

    ``task`` may also be a ``threading.Thread`` (a watchdog timer such as pytest-timeout's, a
    metrics thread) that never calls back into the loop: it then never holds the virtual clock
    and never counts as outside activity. ``loop`` is the loop it is background for (default:
    the running loop, else the current one).
    """
    from quiesce._loop import Loop, _current_loop

    if isinstance(task, threading.Thread):
        target = loop or asyncio._get_running_loop() or _current_loop()
        if not isinstance(target, Loop):
            raise TypeError(
                "background(thread) needs a quiesce.Loop: pass loop=..., or call it while the "
                f"loop runs or is the current event loop (found {target!r})"
            )
        target._q_background_threads.add(task)
        return cast(TaskT, task)
    if not asyncio.isfuture(task) or not hasattr(task, "get_coro"):
        raise TypeError(
            f"background() takes an asyncio.Task or a threading.Thread, got {type(task).__name__}"
        )
    task_loop = task.get_loop()
    if not isinstance(task_loop, Loop):
        raise TypeError(
            f"background() needs a task of a quiesce.Loop; this task runs on {task_loop!r}"
        )
    if not task.done():
        task_loop._q_background.add(task)
        task_loop._q_set_background()
    return task
