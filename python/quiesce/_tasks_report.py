"""Human-readable descriptions of pending asyncio tasks.

When the quiesce loop detects a deadlock it raises :class:`quiesce.Deadlock` with a message
listing every pending task: its name, its coroutine, the ``file:line`` where it waits, the
chain of awaits leading there, and what it awaits.  This module produces that text.

Only public or long-standing semi-public asyncio introspection is used (``Task.get_coro()``,
``cr_await`` / ``gi_yieldfrom`` / ``ag_await``, frames, ``Task._fut_waiter``), so the output
works identically on CPython 3.9 to 3.13 with both the C and the pure-Python ``Task``.

Every introspection step is guarded: :func:`describe_task` and :func:`describe_pending_tasks`
never raise because of an unusual task, coroutine or awaitable; they fall back to ``repr``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import linecache
import os
import re
from types import CodeType, FrameType
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

__all__ = ["describe_pending_tasks", "describe_task"]

# Longest repr of a foreign object (future, primitive, result) put in a description.
_MAX_REPR = 200
# Longest await chain followed; guards against cycles in odd awaitables.
_MAX_DEPTH = 64

_ASYNCGEN_WRAPPERS = ("async_generator_asend", "async_generator_athrow")


def _safe_repr(obj: object, limit: int = _MAX_REPR) -> str:
    """``repr(obj)`` truncated to about *limit* characters; never raises."""
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not break the report
        try:
            text = f"<{type(obj).__name__} object (repr failed: {type(exc).__name__})>"
        except Exception:
            text = "<unrepresentable object>"
    if not isinstance(text, str):
        text = "<unrepresentable object>"
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def _asyncio_dir() -> Optional[str]:
    try:
        return os.path.dirname(os.path.abspath(asyncio.__file__))
    except Exception:
        return None


_ASYNCIO_DIR = _asyncio_dir()


def _short_path(path: str) -> str:
    """Shorten *path* for display.

    Files of the stdlib ``asyncio`` package become ``asyncio/<file>``; files under the
    current working directory become relative to it; anything else is returned unchanged.
    """
    try:
        if not path or path.startswith("<"):
            return path
        absolute = os.path.abspath(path)
        if _ASYNCIO_DIR and absolute.startswith(_ASYNCIO_DIR + os.sep):
            rel = os.path.relpath(absolute, _ASYNCIO_DIR)
            return "asyncio/" + rel.replace(os.sep, "/")
        try:
            cwd = os.getcwd()
        except OSError:  # the working directory may have been removed
            return path
        if absolute.startswith(cwd.rstrip(os.sep) + os.sep):
            return os.path.relpath(absolute, cwd)
        return path
    except Exception:
        return path


def _is_asyncio_file(path: str) -> bool:
    try:
        absolute = os.path.abspath(path)
        return bool(_ASYNCIO_DIR) and absolute.startswith(str(_ASYNCIO_DIR) + os.sep)
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# Walking the await chain


def _code_of(obj: object) -> Optional[CodeType]:
    for attr in ("cr_code", "gi_code", "ag_code"):
        try:
            code = getattr(obj, attr, None)
        except Exception:
            code = None
        if isinstance(code, CodeType):
            return code
    return None


def _frame_of(obj: object) -> Optional[FrameType]:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        try:
            frame = getattr(obj, attr, None)
        except Exception:
            frame = None
        if isinstance(frame, FrameType):
            return frame
    return None


def _qualname_of(obj: object) -> str:
    try:
        name = getattr(obj, "__qualname__", None)
        if isinstance(name, str) and name:
            return name
    except Exception:
        pass
    code = _code_of(obj)
    if code is not None:
        return code.co_name
    return type(obj).__name__


def _asyncgen_behind(wrapper: object) -> Optional[object]:
    """The async generator an ``asend``/``athrow`` awaitable drives, if it is suspended.

    ``async for`` over an async generator awaits an ``async_generator_asend`` object, which
    exposes no attribute leading back to its generator; ``gc.get_referents`` does.
    """
    try:
        if type(wrapper).__name__ not in _ASYNCGEN_WRAPPERS:
            return None
        for ref in gc.get_referents(wrapper):
            if inspect.isasyncgen(ref) and getattr(ref, "ag_running", False):
                return ref
    except Exception:
        pass
    return None


def _awaited_by(obj: object) -> Optional[object]:
    """What the coroutine/generator *obj* is currently delegating to, if anything."""
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        try:
            inner = getattr(obj, attr, None)
        except Exception:
            inner = None
        if inner is not None:
            return inner
    return None


def _hidden_codes() -> Set[CodeType]:
    """Frames that are plumbing rather than a wait site (pure-Python ``Future.__await__``)."""
    codes: Set[CodeType] = set()
    try:
        from asyncio import futures

        for cls in (getattr(futures, "_PyFuture", None), getattr(futures, "Future", None)):
            code = getattr(getattr(cls, "__await__", None), "__code__", None)
            if isinstance(code, CodeType):
                codes.add(code)
    except Exception:
        pass
    return codes


_HIDDEN_CODES = _hidden_codes()


def _await_chain(coro: object) -> List[Tuple[object, FrameType]]:
    """``(awaitable, frame)`` pairs from the outermost coroutine to the innermost frame."""
    chain: List[Tuple[object, FrameType]] = []
    seen: Set[int] = set()
    obj: Optional[object] = coro
    while obj is not None and len(chain) < _MAX_DEPTH and id(obj) not in seen:
        seen.add(id(obj))
        frame = _frame_of(obj)
        if frame is None:
            agen = _asyncgen_behind(obj)
            if agen is None:
                break
            obj = agen
            continue
        if frame.f_code in _HIDDEN_CODES:
            break
        chain.append((obj, frame))
        obj = _awaited_by(obj)
    return chain


def _state_of(obj: object) -> str:
    """``created``, ``running``, ``suspended`` or ``closed`` for a coroutine-like object."""
    state: str
    try:
        if inspect.iscoroutine(obj):
            state = inspect.getcoroutinestate(obj)  # type: ignore[arg-type]
        elif inspect.isgenerator(obj):
            state = inspect.getgeneratorstate(obj)
        else:
            return "suspended" if _frame_of(obj) is not None else "closed"
        return str(state).split("_", 1)[-1].lower()
    except Exception:
        return "suspended"


# --------------------------------------------------------------------------------------------
# Formatting pieces


def _source_line(filename: str, lineno: Optional[int], frame: Optional[FrameType]) -> str:
    if not lineno:
        return ""
    try:
        module_globals = frame.f_globals if frame is not None else None
        return linecache.getline(filename, lineno, module_globals).strip()
    except Exception:
        return ""


def _frame_location(obj: object, frame: FrameType, created: bool) -> str:
    """``file:line in qualname: source`` for one element of the await chain."""
    try:
        code = frame.f_code
        filename = code.co_filename
        lineno = code.co_firstlineno if created else frame.f_lineno
        shown_line = lineno if lineno is not None else "?"
        text = f"{_short_path(filename)}:{shown_line} in {_qualname_of(obj)}"
        source = _source_line(filename, lineno, frame)
        if source:
            text += ": " + source
        return text
    except Exception:
        return _safe_repr(obj)


def _primitive_table() -> Dict[CodeType, str]:
    """Code objects of asyncio waits worth naming in user terms, mapped to their labels."""
    getters: List[Tuple[str, Callable[[], Any]]] = [
        ("Event.wait", lambda: asyncio.Event.wait),
        ("Lock.acquire", lambda: asyncio.Lock.acquire),
        ("Condition.wait", lambda: asyncio.Condition.wait),
        ("Condition.wait_for", lambda: asyncio.Condition.wait_for),
        ("Semaphore.acquire", lambda: asyncio.Semaphore.acquire),
        ("Queue.get", lambda: asyncio.Queue.get),
        ("Queue.put", lambda: asyncio.Queue.put),
        ("Queue.join", lambda: asyncio.Queue.join),
        ("Barrier.wait", lambda: asyncio.Barrier.wait),  # type: ignore[attr-defined]
        ("sleep", lambda: asyncio.sleep),
    ]
    table: Dict[CodeType, str] = {}
    for label, getter in getters:
        try:
            code = getter().__code__
        except Exception:  # e.g. Barrier does not exist before 3.11
            continue
        if isinstance(code, CodeType):
            table[code] = label
    return table


_PRIMITIVES = _primitive_table()


def _frame_local(frame: FrameType, name: str) -> Tuple[bool, object]:
    try:
        local_vars = frame.f_locals
        if name in local_vars:
            return True, local_vars[name]
    except Exception:
        pass
    return False, None


def _user_name_for(chain: List[Tuple[object, FrameType]], owner: object) -> str:
    """How the innermost user frame of ``chain`` refers to ``owner``: a local (``event``) or
    an attribute of one (``self.ready``); empty if it does not."""
    try:
        for _obj, frame in reversed(chain):
            if _is_asyncio_file(frame.f_code.co_filename):
                continue
            local_vars = frame.f_locals
            for name, value in local_vars.items():
                if value is owner:
                    return name
            for name, value in local_vars.items():
                attrs = getattr(value, "__dict__", None)
                if isinstance(attrs, dict):
                    for attr, attr_value in attrs.items():
                        if attr_value is owner:
                            return f"{name}.{attr}"
            return ""
    except Exception:
        pass
    return ""


def _primitive_state(label: str, owner: object) -> str:
    """A short state of a synchronisation primitive, in user terms."""
    try:
        kind = type(owner).__name__
        if label.startswith("Queue."):
            maxsize = owner.maxsize  # type: ignore[attr-defined]
            size = owner.qsize()  # type: ignore[attr-defined]
            bound = f"maxsize {maxsize}" if maxsize > 0 else "unbounded"
            fill = "empty" if size == 0 else ("full" if maxsize > 0 and size >= maxsize else "")
            fill = fill or f"{size} item(s)"
            return f"{fill} {kind}, {bound}"
        if label == "Event.wait":
            return f"{kind}, {'set' if owner.is_set() else 'unset'}"  # type: ignore[attr-defined]
        if label in ("Lock.acquire", "Semaphore.acquire"):
            return f"{kind}, {'locked' if owner.locked() else 'free'}"  # type: ignore[attr-defined]
        return kind
    except Exception:
        return type(owner).__name__


def _primitive_phrase(chain: List[Tuple[object, FrameType]], now: Optional[float] = None) -> str:
    """E.g. ``Event.wait() on `ready` (Event, unset)`` or ``asyncio.sleep(30), due at t=42.0``.

    Looks from the innermost frame outwards through frames of the asyncio package (so that
    the ``__sleep0`` helper of ``sleep(0)`` is seen through) and names the first known wait.
    """
    try:
        for _obj, frame in reversed(chain):
            code = frame.f_code
            label = _PRIMITIVES.get(code)
            if label == "sleep":
                found, delay = _frame_local(frame, "delay")
                text = f"asyncio.sleep({_safe_repr(delay) if found else '...'})"
                has_timer, timer = _frame_local(frame, "h")
                if has_timer and hasattr(timer, "when"):
                    text += f", due at t={timer.when()!r}"
                return text
            if label is not None:
                found, owner = _frame_local(frame, "self")
                if found:
                    name = _user_name_for(chain, owner)
                    shown = f"`{name}`" if name else "a"
                    return f"{label}() on {shown} ({_primitive_state(label, owner)})"
                return f"{label}()"
            if not _is_asyncio_file(code.co_filename):
                break
    except Exception:
        pass
    return ""


def _task_name(task: object) -> str:
    try:
        name = task.get_name()  # type: ignore[attr-defined]
        if isinstance(name, str):
            return name
        return _safe_repr(name)
    except Exception:
        return _safe_repr(task)


def _task_coro(task: object) -> Optional[object]:
    try:
        return task.get_coro()  # type: ignore[attr-defined]
    except Exception:
        return None


def _is_task(obj: object) -> bool:
    if isinstance(obj, asyncio.Task):
        return True
    try:  # the pure-Python Task (asyncio.tasks._PyTask) is not a subclass of the C one
        return asyncio.isfuture(obj) and callable(getattr(obj, "get_coro", None))
    except Exception:
        return False


def _is_done(future: object) -> bool:
    try:
        return bool(future.done())  # type: ignore[attr-defined]
    except Exception:
        return False


def _describe_awaited(waiter: object) -> str:
    if _is_task(waiter):
        return f"Task {_task_name(waiter)!r}"
    children = getattr(waiter, "_children", None)
    if type(waiter).__name__ == "_GatheringFuture" and isinstance(children, list):
        pending = [child for child in children if not _is_done(child)]
        shown = ", ".join(_describe_awaited(child) for child in pending[:8])
        more = f", and {len(pending) - 8} more" if len(pending) > 8 else ""
        return (
            f"asyncio.gather() of {len(children)} awaitable(s), {len(pending)} still pending: "
            f"{shown}{more}"
        )
    return _safe_repr(waiter)


def _coro_header(coro: Optional[object]) -> str:
    if coro is None:
        return "no coroutine"
    code = _code_of(coro)
    if code is None:
        return f"coroutine {_safe_repr(coro)}"
    return f"coroutine {_qualname_of(coro)}() in {_short_path(code.co_filename)}"


def _done_line(task: object) -> str:
    try:
        if task.cancelled():  # type: ignore[attr-defined]
            return "  done: cancelled"
        # Read the private fields rather than task.exception(): that would mark the
        # exception as retrieved and silence asyncio's "never retrieved" warning.
        exc = getattr(task, "_exception", None)
        if exc is not None:
            return f"  done: raised {_safe_repr(exc)}"
        return f"  done: returned {_safe_repr(getattr(task, '_result', None))}"
    except Exception:
        return "  done"


_MISSING = object()


def _describe(task: asyncio.Task) -> Tuple[str, str, str]:
    """``(text, coroutine qualname, wait location)``; the last two serve as sort keys."""
    name = _task_name(task)
    coro = _task_coro(task)
    qualname = _qualname_of(coro) if coro is not None else ""
    lines = [f"Task {name!r} ({_coro_header(coro)})"]

    try:
        done = bool(task.done())
    except Exception:
        done = False
    if done:
        lines.append(_done_line(task))
        return "\n".join(lines), qualname, ""

    chain = _await_chain(coro) if coro is not None else []
    location = ""
    state = ""
    if chain:
        state = _state_of(chain[0][0])
        created = state == "created"
        if created:
            lead = "not started yet, defined at"
        elif state == "running":
            lead = "running at"
        else:
            lead = "waits at"
        for index, (obj, frame) in enumerate(chain):
            text = _frame_location(obj, frame, created)
            if index == 0:
                location = text
                lines.append(f"  {lead} {text}")
            else:
                lines.append(f"    -> {text}")

    phrase = _primitive_phrase(chain)
    try:
        waiter = getattr(task, "_fut_waiter", _MISSING)
    except Exception:
        waiter = _MISSING
    if waiter is None:
        awaiting = "nothing (running)" if state == "running" else "nothing (runnable)"
    elif waiter is _MISSING:
        awaiting = f"({phrase})" if phrase else "unknown"
    elif _is_done(waiter):
        # Woken up (e.g. the Event was set) but the loop has not resumed the task yet.
        awaiting = f"nothing (runnable; woken by {_describe_awaited(waiter)})"
    else:
        awaiting = _describe_awaited(waiter)
        if phrase:
            awaiting += f" ({phrase})"
    lines.append("  awaiting: " + awaiting)
    return "\n".join(lines), qualname, location


# --------------------------------------------------------------------------------------------
# Public API


def describe_task(task: asyncio.Task) -> str:
    """Describe one task as a multi-line block of text.

    The first line names the task and its outermost coroutine; then comes the await chain
    from the outermost coroutine to the innermost frame (``file:line in qualname: source``),
    and finally what the task awaits, e.g.::

        Task 'consumer' (coroutine consumer() in tests/demo.py)
          waits at tests/demo.py:12 in consumer: await event.wait()
            -> asyncio/locks.py:226 in Event.wait: await fut
          awaiting: <Future pending cb=[Task.task_wakeup()]> (Event.wait() on <asyncio.locks.Event object at 0x7f... [unset, waiters:1]>)

    A task that can run (just created, or woken up) is reported as ``awaiting: nothing
    (runnable)``; a finished task as ``done: ...``.  Never raises.
    """  # noqa: E501
    try:
        return _describe(task)[0]
    except Exception:
        return f"Task {_safe_repr(task)}"


def _natural_key(text: str) -> Tuple[Tuple[int, int, str], ...]:
    """Sort key putting ``Task-2`` before ``Task-10``."""
    parts = re.split(r"([0-9]+)", text)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part)


def describe_pending_tasks(tasks: Iterable[asyncio.Task]) -> str:
    """Describe every task of *tasks* that is not done, separated by blank lines.

    Tasks are sorted deterministically: by name (numbers compared numerically, so
    ``Task-2`` precedes ``Task-10``), then by coroutine qualname, then by the place where
    they wait; remaining ties keep the order of *tasks*.  Returns ``"(no pending tasks)"``
    when no task is pending.
    """
    entries: List[Tuple[Tuple[Any, ...], str]] = []
    for position, task in enumerate(tasks):
        try:
            if task.done():
                continue
        except Exception:
            pass
        try:
            text, qualname, location = _describe(task)
            name = _task_name(task)
        except Exception:
            text, qualname, location, name = f"Task {_safe_repr(task)}", "", "", ""
        entries.append(((_natural_key(name), qualname, location, position), text))
    if not entries:
        return "(no pending tasks)"
    entries.sort(key=lambda entry: entry[0])
    return "\n\n".join(text for _key, text in entries)
