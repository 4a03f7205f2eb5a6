"""``loop.report()``: what every task is doing and why, what is scheduled, what is in flight.

A :class:`Report` is a snapshot taken from synchronous code (or from a callback): the live
tasks with their state and await chain (see :mod:`quiesce._tasks_report`), the pending timers,
the external activity that could still wake the loop, and any cycle of tasks waiting on each
other. ``str(report)`` is the text quiesce prints in :class:`~quiesce.Deadlock` and
:class:`~quiesce.BudgetExceeded`.

Lock ownership is read off the coroutines' frames: ``async with lock:`` keeps the lock's
``__aexit__`` on the suspended frame's value stack (a bound method up to 3.13; from 3.14 the
function followed by the lock), which ``gc.get_referents`` exposes on every supported CPython.
A lock taken with a bare ``await lock.acquire()`` has no such trace; it is reported as held by
an unknown task.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Set, Tuple, TypeVar

from quiesce._errors import time_text
from quiesce._outside import ThreadState, WatchedDescriptor, thread_states, watched_descriptors
from quiesce._tasks_report import (
    _await_chain,
    _is_asyncio_file,
    _natural_key,
    _qualname_of,
    _safe_repr,
    _state_of,
    _task_coro,
    _task_name,
    _user_name_for,
    describe_task,
)

if TYPE_CHECKING:
    from quiesce._loop import Loop

_LOCK_TYPES: Tuple[type, ...] = (asyncio.Lock,)

T = TypeVar("T")


@dataclass(frozen=True)
class TaskReport:
    """One task: its name, its state, and a description of where and on what it waits."""

    name: str
    #: ``"runnable"`` (can run now), ``"waiting"`` (blocked), ``"running"`` or ``"done"``.
    state: str
    #: The multi-line description: await chain with ``file:line``, and what it awaits.
    description: str
    #: Marked with :func:`quiesce.background`: never counts towards idleness or deadlock.
    background: bool = False
    #: Descriptions of the locks this task holds (``async with lock:``), when known.
    holds: Tuple[str, ...] = ()
    task: Optional[asyncio.Task] = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        lines = self.description.splitlines() or [f"Task {self.name!r}"]
        head = lines[0] + f" [{self.state}{', background' if self.background else ''}]"
        extra = [f"  holds: {', '.join(self.holds)}"] if self.holds else []
        return "\n".join([head, *extra, *lines[1:]])


@dataclass(frozen=True)
class TimerReport:
    """One pending timer: when it is due and what it will call."""

    when: float
    callback: str
    #: The task that sleeps on this timer, if any (``asyncio.sleep``, timeouts).
    task: Optional[str] = None

    def __str__(self) -> str:
        owner = f" (wakes Task {self.task!r})" if self.task else ""
        return f"t={self.when!r}: {self.callback}{owner}"


@dataclass(frozen=True)
class ExternalActivity:
    """What outside the loop could still make a callback runnable, what of it holds the virtual
    clock, and what the clock did meanwhile."""

    #: ``run_in_executor`` jobs (and ``to_thread`` calls) whose result has not arrived.
    executor_jobs: int = 0
    #: Watched file descriptors (readers and writers), besides the loop's own wake-up socket,
    #: each classified as in-process (idle) or external (holds the clock).
    descriptors: Tuple[WatchedDescriptor, ...] = ()
    #: Signals with a handler installed by ``loop.add_signal_handler``.
    signals: Tuple[str, ...] = ()
    #: Other live threads that might still call ``call_soon_threadsafe``, with their state.
    threads: Tuple[ThreadState, ...] = ()
    #: Child processes whose exit has not been delivered yet (``pid N``).
    child_processes: Tuple[str, ...] = ()
    #: Virtual seconds the clock followed real time while the loop waited for outside activity.
    real_pace: float = 0.0
    #: Automatic jumps of the virtual clock to a timer.
    jumps: int = 0

    @property
    def watched_fds(self) -> Tuple[str, ...]:
        """Each watched descriptor, as text."""
        return tuple(str(descriptor) for descriptor in self.descriptors)

    @property
    def holds_clock(self) -> bool:
        """Whether something here holds the virtual clock at real pace."""
        return bool(
            self.executor_jobs
            or self.child_processes
            or self.signals
            or any(descriptor.holds_clock for descriptor in self.descriptors)
            or any(thread.holds_clock for thread in self.threads)
        )

    @property
    def idle_in_process(self) -> Tuple[str, ...]:
        """In-process sockets with nothing in flight and parked threads: they can only be
        woken by this loop."""
        return tuple(str(d) for d in self.descriptors if not d.holds_clock) + tuple(
            str(thread) for thread in self.threads if thread.state == "parked"
        )

    def __bool__(self) -> bool:
        return bool(
            self.executor_jobs
            or self.descriptors
            or self.signals
            or self.threads
            or self.child_processes
        )

    def summary(self) -> str:
        """One line: what could still wake the loop (in-process, idle things left out)."""
        parts = []
        if self.executor_jobs:
            parts.append(f"executor jobs in flight: {self.executor_jobs}")
        if self.child_processes:
            parts.append("child processes running: " + ", ".join(self.child_processes))
        parts.extend(
            f"fd {d.fd} ({d.kind}{' to ' + d.peer if d.peer else ''})"
            for d in self.descriptors
            if d.holds_clock
        )
        if self.signals:
            parts.append("signal handlers: " + ", ".join(self.signals))
        parts.extend(
            f"thread {thread.name!r} ({thread.state})"
            for thread in self.threads
            if thread.state != "parked" and not thread.background
        )
        return "; ".join(parts) or "outside activity"

    def lines(self) -> List[str]:
        """The report's lines about outside activity (indented items under their heading)."""
        out = []
        if self.executor_jobs:
            out.append(f"executor jobs in flight: {self.executor_jobs}")
        if self.child_processes:
            out.append("child processes running: " + ", ".join(self.child_processes))
        if self.descriptors:
            out.append("watched file descriptors:")
            out.extend(f"  {descriptor}" for descriptor in self.descriptors)
        if self.signals:
            out.append("signal handlers: " + ", ".join(self.signals))
        if self.threads:
            out.append("other threads:")
            out.extend(f"  {thread}" for thread in self.threads)
        return out

    def clock_line(self) -> str:
        """What the virtual clock did: how long it followed real time, how often it jumped."""
        return (
            f"clock: followed real time for {self.real_pace:.3f} s while waiting for outside "
            f"activity; jumped to a timer {self.jumps} time(s)"
        )


@dataclass(frozen=True)
class Report:
    """A snapshot of a :class:`quiesce.Loop`: tasks, timers, external activity, cycles."""

    time: float
    clock: str
    #: Callbacks runnable right now (ready queue length).
    runnable_callbacks: int
    tasks: Tuple[TaskReport, ...]
    timers: Tuple[TimerReport, ...]
    external: ExternalActivity
    #: Each cycle of tasks waiting on each other (lock held by the next one, or awaiting it),
    #: as task names in wait order; the first name is not repeated at the end.
    cycles: Tuple[Tuple[str, ...], ...] = ()
    #: For each task of :attr:`cycles`, the coroutine it waits in (the innermost one of the
    #: test's code in its await chain, e.g. ``Service.rename``), in the same shape.
    cycle_coroutines: Tuple[Tuple[str, ...], ...] = ()

    @property
    def pending_tasks(self) -> Tuple[TaskReport, ...]:
        """Tasks that are not done."""
        return tuple(task for task in self.tasks if task.state != "done")

    def __str__(self) -> str:
        out = [
            f"quiesce report at loop time {time_text(self.time)} ({self.clock} clock): "
            f"{len(self.pending_tasks)} pending task(s), {self.runnable_callbacks} runnable "
            f"callback(s), {len(self.timers)} pending timer(s)"
        ]
        for index, cycle in enumerate(self.cycles):
            where = self.cycle_coroutines[index] if index < len(self.cycle_coroutines) else ()
            labels = [
                f"{name!r} in {where[i]}" if i < len(where) and where[i] else repr(name)
                for i, name in enumerate(cycle)
            ]
            names = " -> ".join([*labels, repr(cycle[0])])
            out.append(f"cycle: {names} (each waits for the next: a lock it holds, or its end)")
        if self.pending_tasks:
            out.append("")
            out.append("\n\n".join(str(task) for task in self.pending_tasks))
        if self.timers:
            out.append("")
            out.append("pending timers:")
            out.extend(f"  {timer}" for timer in self.timers[:20])
            if len(self.timers) > 20:
                out.append(f"  ... and {len(self.timers) - 20} more")
        external = self.external.lines()
        out.append("")
        if external:
            out.append("external activity in flight:")
            out.extend(f"  {line}" for line in external)
        else:
            out.append("external activity in flight: none")
        if self.clock == "virtual" and (self.external.real_pace or self.external.holds_clock):
            out.append(self.external.clock_line())
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Reading the loop


class _TaskFacts:
    """What the report needs of one task, read off its await chain once."""

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.name = _task_name(task)
        self.done = task.done()
        coro = _task_coro(task)
        self.chain = _await_chain(coro) if coro is not None and not self.done else []
        #: The lock whose ``acquire()`` the task is blocked in.
        self.waits_on = self._lock_waited_on()
        #: Locks whose ``async with`` block the task is inside (not the one it is entering).
        self.entered = self._locks_entered()

    @property
    def waiting_in(self) -> str:
        """The innermost coroutine of the task's await chain outside asyncio's own code
        (where it waits, as the test's code names it), or "" if there is none."""
        for obj, frame in reversed(self.chain):
            if not _is_asyncio_file(frame.f_code.co_filename):
                return _qualname_of(obj)
        return ""

    def _lock_waited_on(self) -> Optional[Any]:
        acquire_code = asyncio.Lock.acquire.__code__
        for _obj, frame in reversed(self.chain):
            if frame.f_code is acquire_code:
                owner = frame.f_locals.get("self")
                return owner if isinstance(owner, _LOCK_TYPES) else None
        return None

    def _locks_entered(self) -> List[Any]:
        # One entry per ``__aexit__`` kept on a frame's value stack. ``async with lock:``
        # pushes it before awaiting ``acquire()``, so the lock being acquired is there too.
        # Up to 3.13 the stack holds the bound method; 3.14's LOAD_SPECIAL keeps the function
        # and the lock as two entries, the lock right after the function.
        found: List[Any] = []
        try:
            for obj, frame in self.chain:
                for item in (obj, frame):
                    refs = gc.get_referents(item)
                    for index, ref in enumerate(refs):
                        owner = getattr(ref, "__self__", None)
                        if isinstance(owner, _LOCK_TYPES) and (
                            getattr(ref, "__name__", "") == "__aexit__"
                        ):
                            found.append(owner)
                        elif index + 1 < len(refs) and _is_unbound_aexit_of(ref, refs[index + 1]):
                            found.append(refs[index + 1])
        except Exception:
            return []
        if self.waits_on is not None:
            for index, lock in enumerate(found):
                if lock is self.waits_on:
                    del found[index]
                    break
        return found

    def state(self, runnable: Set[int]) -> str:
        """``runnable``, ``waiting``, ``running`` or ``done``."""
        if self.done:
            return "done"
        if self.chain and _state_of(self.chain[0][0]) == "running":
            return "running"
        waiter = getattr(self.task, "_fut_waiter", None)
        if id(self.task) in runnable or waiter is None or waiter.done():
            return "runnable"
        return "waiting"

    def lock_text(self, lock: Any) -> str:
        """A held lock as this task's code names it (``first (Lock)``), else its repr."""
        name = _user_name_for(self.chain, lock)
        return f"`{name}` ({type(lock).__name__})" if name else _safe_repr(lock, 120)


def _is_unbound_aexit_of(function: Any, owner: Any) -> bool:
    """Whether ``function`` is the plain ``__aexit__`` of ``owner``'s lock type (3.14+ stacks)."""
    return (
        isinstance(owner, _LOCK_TYPES)
        and inspect.isfunction(function)
        and getattr(type(owner), "__aexit__", None) is function
    )


def _find_cycles(edges: Dict[int, int]) -> List[List[int]]:
    """Cycles of a functional graph (each node has at most one successor)."""
    cycles: List[List[int]] = []
    state: Dict[int, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        path: List[int] = []
        node: Optional[int] = start
        while node is not None and state.get(node, 0) == 0:
            state[node] = 1
            path.append(node)
            node = edges.get(node)
        if node is not None and state.get(node) == 1:
            cycles.append(path[path.index(node) :])
        for visited in path:
            state[visited] = 2
    return cycles


def timer_owner(handle: Any, sleepers: Dict[int, T]) -> Optional[T]:
    """What ``sleepers`` maps the future a timer wakes to (``asyncio.sleep`` and friends pass
    that future as the timer callback's first argument)."""
    args = getattr(handle, "_args", None) or ()
    return sleepers.get(id(args[0])) if args else None


def sleepers_of(tasks: Iterable[asyncio.Task]) -> Dict[int, asyncio.Task]:
    """``id(awaited future) -> task`` for the tasks among ``tasks`` that wait on a future."""
    found: Dict[int, asyncio.Task] = {}
    for task in tasks:
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is not None and not task.done():
            found[id(waiter)] = task
    return found


def _awaited_by(task: asyncio.Task) -> str:
    """Who awaits ``task``, from asyncio's awaited-by graph (3.14+): a TaskGroup's parent task, a
    gather()'s or wait()'s caller, a task awaiting it directly. The await chain shows the other
    direction only. Empty before 3.14 (reports there stay as they were), for a task nobody
    awaits, and for a done one."""
    capture = getattr(asyncio, "capture_call_graph", None)
    if capture is None or task.done():
        return ""
    try:
        graph = capture(task, depth=1)
        edges = graph.awaited_by if graph is not None else ()
        names = []
        for edge in edges:
            awaiter = edge.future
            if isinstance(awaiter, asyncio.Task):
                names.append(f"Task {_task_name(awaiter)!r}")
            else:
                names.append(_safe_repr(awaiter, 80))
    except Exception:
        return ""
    return ", ".join(sorted(dict.fromkeys(names), key=_natural_key))


def _describe_callback(handle: Any) -> str:
    from asyncio import format_helpers

    try:
        return format_helpers._format_callback_source(handle._callback, handle._args)
    except Exception:
        return _safe_repr(handle)


def build_report(loop: Loop) -> Report:
    """The :class:`Report` of ``loop`` now."""
    # all_tasks() is a set: sort by name so that reports and cycles read the same every run.
    facts = sorted(
        (_TaskFacts(task) for task in asyncio.all_tasks(loop)),
        key=lambda fact: _natural_key(fact.name),
    )
    runnable = {id(getattr(cb, "__self__", None)) for cb in _ready_callbacks(loop)}
    holders: Dict[int, _TaskFacts] = {}
    for fact in facts:
        for lock in fact.entered:
            if lock.locked():
                holders.setdefault(id(lock), fact)

    reports: List[TaskReport] = []
    for fact in facts:
        description = describe_task(fact.task)
        if fact.waits_on is not None:
            holder = holders.get(id(fact.waits_on))
            who = f"Task {holder.name!r}" if holder is not None else "an unknown task"
            description += f"\n  the lock is held by {who}"
        awaiters = _awaited_by(fact.task)
        if awaiters:
            description += f"\n  awaited by: {awaiters}"
        held = [fact.lock_text(lock) for lock in fact.entered if holders.get(id(lock)) is fact]
        reports.append(
            TaskReport(
                name=fact.name,
                state=fact.state(runnable),
                description=description,
                background=fact.task in loop._q_background,
                holds=tuple(dict.fromkeys(held)),
                task=fact.task,
            )
        )

    sleepers = sleepers_of(fact.task for fact in facts)
    timers = []
    for handle in loop._q_timer_handles():
        if not handle.cancelled():
            owner = timer_owner(handle, sleepers)
            name = _task_name(owner) if owner is not None else None
            timers.append(TimerReport(handle.when(), _describe_callback(handle), name))

    edges: Dict[int, int] = {}
    by_task = {id(fact.task): fact for fact in facts}
    for fact in facts:
        target: Optional[_TaskFacts] = None
        if fact.waits_on is not None:
            target = holders.get(id(fact.waits_on))
        elif not fact.done:
            target = by_task.get(id(getattr(fact.task, "_fut_waiter", None)))
        if target is not None:
            edges[id(fact)] = id(target)
    by_fact = {id(fact): fact for fact in facts}
    found = _find_cycles(edges)
    cycles = tuple(tuple(by_fact[node].name for node in cycle) for cycle in found)
    cycle_coroutines = tuple(tuple(by_fact[node].waiting_in for node in cycle) for cycle in found)
    return Report(
        time=loop.time(),
        clock=loop.clock,
        runnable_callbacks=len(loop._q_ready_handles()),
        tasks=tuple(reports),
        timers=tuple(timers),
        external=external_activity(loop),
        cycles=cycles,
        cycle_coroutines=cycle_coroutines,
    )


def _ready_callbacks(loop: Loop) -> List[Any]:
    callbacks = []
    for handle in loop._q_ready_handles():
        callback = getattr(handle, "_callback", None)
        if callback is not None:
            callbacks.append(callback)
    return callbacks


def external_activity(loop: Loop) -> ExternalActivity:
    """The outside activity on ``loop`` now (see :mod:`quiesce._outside`)."""
    signals = tuple(
        f"signal {number}" for number in sorted(getattr(loop, "_signal_handlers", {}) or {})
    )
    children = [transport for transport in list(loop._q_children)]
    stats = loop._q_stats()
    return ExternalActivity(
        executor_jobs=loop._q_executor_jobs(0) - len(children),
        child_processes=tuple(f"pid {transport.get_pid()}" for transport in children),
        descriptors=tuple(watched_descriptors(loop)),
        signals=signals,
        threads=tuple(thread_states(loop)),
        real_pace=float(stats["real_pace"]),
        jumps=int(stats["jumps"]),
    )
