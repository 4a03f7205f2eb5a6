"""``Handle`` / ``TimerHandle``: scheduling, cancelling, argument checks, contexts, queue views."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import math
import weakref
from typing import Any, Callable, List

import pytest

import quiesce

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


# -- call_soon ----------------------------------------------------------------------------------


def test_call_soon_returns_a_handle(loop: quiesce.Loop) -> None:
    handle = loop.call_soon(print)
    assert isinstance(handle, quiesce.Handle)
    assert not isinstance(handle, quiesce.TimerHandle)
    assert handle.cancelled() is False
    handle.cancel()


def test_call_soon_passes_arguments_in_order(loop: quiesce.Loop) -> None:
    calls: List[Any] = []
    loop.call_soon(lambda *args: calls.append(args))
    loop.call_soon(lambda *args: calls.append(args), 1)
    loop.call_soon(lambda *args: calls.append(args), 1, "two", None)
    loop.run_until_blocked()
    assert calls == [(), (1,), (1, "two", None)]


def test_cancelled_handle_never_runs(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handle = loop.call_soon(ran.append, "cancelled")
    loop.call_soon(ran.append, "kept")
    handle.cancel()
    assert handle.cancelled() is True
    handle.cancel()  # idempotent
    assert handle.cancelled() is True
    loop.run_until_blocked()
    assert ran == ["kept"]


def test_cancel_from_an_earlier_callback_in_the_same_turn(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handles: List[quiesce.Handle] = []
    loop.call_soon(lambda: handles[0].cancel())
    handles.append(loop.call_soon(ran.append, "victim"))
    loop.run_until_blocked()
    assert ran == []


def test_cancel_after_running_is_harmless(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handle = loop.call_soon(ran.append, "x")
    loop.run_until_blocked()
    handle.cancel()
    assert handle.cancelled() is True
    loop.run_until_blocked()
    assert ran == ["x"]


def test_recycled_handles_keep_nothing_alive(loop: quiesce.Loop) -> None:
    """Handles are recycled (a free list): a finished handle lets go of its callback,
    arguments and context at once, and a recycled one starts fresh."""

    class Payload:
        pass

    payload_refs: List[Any] = []
    handle_refs: List[Any] = []
    for _ in range(50):
        payload = Payload()
        payload_refs.append(weakref.ref(payload))
        ctx = contextvars.copy_context()
        ctx.run(var.set, "recycled")
        handle = loop.call_soon(lambda p: None, payload, context=ctx)
        handle_refs.append(weakref.ref(handle))
        timer = loop.call_later(1, lambda p: None, payload, context=ctx)
        handle_refs.append(weakref.ref(timer))
        timer.cancel()
        del payload, ctx, handle, timer
    loop.run_until_blocked()
    assert [ref() for ref in payload_refs] == [None] * 50
    assert [ref() for ref in handle_refs] == [None] * 100
    for _ in range(20):
        fresh = loop.call_soon(print)
        assert not fresh.cancelled() and fresh._args == () and fresh._callback is print
        assert fresh.get_context().get(var) is None
        assert weakref.getweakrefcount(fresh) == 0
        fresh_timer = loop.call_later(2, print)
        assert not fresh_timer.cancelled() and fresh_timer.when() == 2.0
        fresh.cancel()
        fresh_timer.cancel()
    loop.run_until_blocked()


# -- call_later / call_at -----------------------------------------------------------------------


def test_timer_handles(loop: quiesce.Loop) -> None:
    later = loop.call_later(2, print)
    at = loop.call_at(5, print)
    for handle in (later, at):
        assert isinstance(handle, quiesce.TimerHandle)
        assert isinstance(handle, quiesce.Handle)
        assert not handle.cancelled()
    assert later.when() == 2.0
    assert at.when() == 5.0
    assert isinstance(at.when(), float)
    later.cancel()
    at.cancel()


def test_cancelling_a_timer_removes_it_from_the_queue(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    handles = [loop.call_later(i + 1, ran.append, i) for i in range(5)]
    assert len(loop._scheduled) == 5
    handles[1].cancel()
    assert len(loop._scheduled) == 4
    handles[3].cancel()
    handles[3].cancel()
    assert len(loop._scheduled) == 3
    assert handles[1] not in list(loop._scheduled)
    loop.advance(10)
    assert ran == [0, 2, 4]
    assert len(loop._scheduled) == 0


def test_cancelling_many_timers(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    handles = [loop.call_later(i, ran.append, i) for i in range(1000)]
    for i, handle in enumerate(handles):
        if i % 10:
            handle.cancel()
    assert len(loop._scheduled) == 100
    loop.advance(1000)
    assert ran == list(range(0, 1000, 10))


def test_cancelling_a_fired_timer_leaves_others_alone(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    first = loop.call_later(1, ran.append, "first")
    loop.advance(1)
    second = loop.call_later(1, ran.append, "second")
    first.cancel()
    assert len(loop._scheduled) == 1
    assert not second.cancelled()
    loop.advance(1)
    assert ran == ["first", "second"]


def test_stale_handle_after_scheduled_clear_leaves_new_timers_alone(loop: quiesce.Loop) -> None:
    """``loop._scheduled.clear()`` drops every timer; cancelling a handle of a dropped timer
    must not remove a timer scheduled afterwards."""
    ran: List[str] = []
    stale = loop.call_later(10, ran.append, "dropped")
    loop._scheduled.clear()
    fresh = loop.call_later(10, ran.append, "fresh")
    stale.cancel()
    assert not fresh.cancelled()
    assert len(loop._scheduled) == 1
    loop.advance(20)
    assert ran == ["fresh"]


def test_cancelled_due_timer_does_not_run(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handles: List[quiesce.TimerHandle] = []
    loop.call_later(1, lambda: handles[0].cancel())
    handles.append(loop.call_later(1, ran.append, "victim"))
    loop.advance(1)
    assert ran == []


def test_equal_deadlines_fire_fifo(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(40):
        if i % 3 == 0:
            loop.call_at(1.5, ran.append, i)
        else:
            loop.call_later(1.5, ran.append, i)
    loop.call_at(1.0, ran.append, -1)
    loop.run_until_complete(asyncio.sleep(2))
    assert ran == [-1, *range(40)]


def test_call_later_zero_stays_a_timer(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    timer = loop.call_later(0, ran.append, "timer")
    assert isinstance(timer, quiesce.TimerHandle)
    assert len(loop._scheduled) == 1
    assert len(loop._ready) == 0
    loop.call_soon(ran.append, "soon after")  # scheduled later, but already ready
    loop.run_until_blocked()
    assert ran == ["soon after", "timer"]


def test_call_later_is_call_at_now_plus_delay(loop: quiesce.Loop) -> None:
    loop.advance(0.1)
    for delay in (0.2, 1e-9, 7, 1 / 3):
        assert loop.call_later(delay, print).when() == loop.time() + delay
        assert loop.call_at(loop.time() + delay, print).when() == loop.time() + delay
    loop._scheduled.clear()


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_nan_is_a_value_error(loop: quiesce.Loop, method: str) -> None:
    with pytest.raises(ValueError):
        getattr(loop, method)(math.nan, print)
    assert len(loop._scheduled) == 0


def test_infinite_delay_never_fires(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handle = loop.call_later(math.inf, ran.append, "never")
    assert handle.when() == math.inf
    loop.advance(1e12)
    assert ran == []
    handle.cancel()


# -- argument checks ----------------------------------------------------------------------------


def test_non_callable_is_a_type_error(loop: quiesce.Loop) -> None:
    with pytest.raises(TypeError) as excinfo:
        loop.call_soon(1)  # type: ignore[arg-type]
    assert str(excinfo.value) == "a callable object was expected by call_soon(), got 1"
    assert len(loop._ready) == 0


def test_call_soon_binds_every_form_of_call(loop: quiesce.Loop) -> None:
    calls: List[Any] = []

    def record(*args: Any) -> None:
        calls.append((args, var.get()))

    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    loop.call_soon(record)
    loop.call_soon(record, 1)
    loop.call_soon(record, 1, "two", None)
    loop.call_soon(record, 2, context=ctx)
    loop.call_soon(record, 3, context=None)
    loop.call_soon(callback=record)  # type: ignore[call-arg]
    quiesce.Loop.call_soon(loop, record, 4)
    loop.run_until_blocked()
    assert calls == [
        ((), "unset"),
        ((1,), "unset"),
        ((1, "two", None), "unset"),
        ((2,), "in ctx"),
        ((3,), "unset"),
        ((), "unset"),
        ((4,), "unset"),
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lp: lp.call_soon(), "missing 1 required positional argument: 'callback'"),
        (lambda lp: lp.call_soon(print, ctx=None), "unexpected keyword argument 'ctx'"),
        (lambda lp: lp.call_soon(print, 1, context=None, x=2), "unexpected keyword argument"),
        (lambda lp: lp.call_soon(print, callback=print), "multiple values for argument"),
        (lambda lp: quiesce.Loop.call_soon(1, print), "doesn't apply to a 'int' object"),
    ],
    ids=["no-callback", "unknown-keyword", "extra-keyword", "callback-twice", "not-a-loop"],
)
def test_call_soon_binding_errors(
    loop: quiesce.Loop, call: Callable[[quiesce.Loop], Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        call(loop)
    assert len(loop._ready) == 0


def test_call_soon_signature_and_doc(loop: quiesce.Loop) -> None:
    assert str(inspect.signature(loop.call_soon)) == "(callback, *args, context=None)"
    assert "Schedules `callback(*args)` to run soon" in (quiesce.Loop.call_soon.__doc__ or "")
    assert loop.call_soon.__name__ == "call_soon"


def test_a_subclass_call_soon_override_sees_every_wake_up() -> None:
    seen: List[str] = []

    class Counting(quiesce.Loop):
        def call_soon(self, callback: Any, *args: Any, context: Any = None) -> Any:
            seen.append(getattr(callback, "__name__", type(callback).__name__))
            return super().call_soon(callback, *args, context=context)

    async def main() -> str:
        await asyncio.sleep(0)
        return "done"

    subclassed = Counting()
    try:
        assert subclassed.run_until_complete(main()) == "done"
    finally:
        subclassed.close()
    # The task's first step and its step after sleep(0) were scheduled through the override.
    assert len(seen) >= 2


@pytest.mark.parametrize(
    "schedule",
    [
        lambda lp: lp.call_later(1, "not callable"),
        lambda lp: lp.call_at(1, "not callable"),
        lambda lp: lp.call_soon_threadsafe("not callable"),
    ],
    ids=["call_later", "call_at", "call_soon_threadsafe"],
)
def test_non_callable_is_a_type_error_everywhere(
    loop: quiesce.Loop, schedule: Callable[[quiesce.Loop], Any]
) -> None:
    with pytest.raises(TypeError, match="a callable object was expected by"):
        schedule(loop)
    assert len(loop._scheduled) == 0
    loop.run_until_blocked()


@pytest.mark.parametrize(
    "schedule",
    [
        lambda lp, ctx: lp.call_soon(print, context=ctx),
        lambda lp, ctx: lp.call_later(1, print, context=ctx),
        lambda lp, ctx: lp.call_at(1, print, context=ctx),
        lambda lp, ctx: lp.call_soon_threadsafe(print, context=ctx),
    ],
    ids=["call_soon", "call_later", "call_at", "call_soon_threadsafe"],
)
@pytest.mark.parametrize("bad_context", [{}, 1, "ctx", contextvars.ContextVar("x")])
def test_context_must_be_a_context(
    loop: quiesce.Loop, schedule: Callable[[quiesce.Loop, Any], Any], bad_context: Any
) -> None:
    with pytest.raises(TypeError):
        schedule(loop, bad_context)
    assert len(loop._ready) == 0
    assert len(loop._scheduled) == 0
    loop.run_until_blocked()


@pytest.mark.parametrize(
    "schedule",
    [
        lambda lp: lp.call_soon(print),
        lambda lp: lp.call_later(1, print),
        lambda lp: lp.call_at(1, print),
        lambda lp: lp.call_soon_threadsafe(print),
    ],
    ids=["call_soon", "call_later", "call_at", "call_soon_threadsafe"],
)
def test_scheduling_on_a_closed_loop(
    make_loop: Callable[..., quiesce.Loop], schedule: Callable[[quiesce.Loop], Any]
) -> None:
    closed = make_loop()
    closed.close()
    with pytest.raises(RuntimeError) as excinfo:
        schedule(closed)
    assert str(excinfo.value) == "Event loop is closed"


# -- contexts -----------------------------------------------------------------------------------


def test_call_soon_copies_the_current_context(loop: quiesce.Loop) -> None:
    seen: List[str] = []
    token = var.set("at schedule time")
    try:
        handle = loop.call_soon(lambda: seen.append(var.get()))
        var.set("changed afterwards")
        assert handle.get_context()[var] == "at schedule time"
        assert handle.get_context() is not contextvars.copy_context()
        loop.run_until_blocked()
    finally:
        var.reset(token)
    assert seen == ["at schedule time"]


def test_changes_in_a_callback_stay_in_its_context(loop: quiesce.Loop) -> None:
    seen: List[str] = []

    def setter() -> None:
        var.set("set in callback")
        seen.append(var.get())

    loop.call_soon(setter)
    loop.call_soon(lambda: seen.append(var.get()))
    loop.run_until_blocked()
    assert seen == ["set in callback", "unset"]
    assert var.get() == "unset"


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_explicit_context_is_used(loop: quiesce.Loop, method: str) -> None:
    ctx = contextvars.Context()
    ctx.run(var.set, "inside ctx")
    seen: List[str] = []

    def callback() -> None:
        seen.append(var.get())
        var.set("written by callback")

    if method in ("call_later", "call_at"):
        handle = getattr(loop, method)(0, callback, context=ctx)
    else:
        handle = getattr(loop, method)(callback, context=ctx)
    assert handle.get_context() is ctx
    loop.run_until_blocked()
    assert seen == ["inside ctx"]
    assert ctx[var] == "written by callback"
    assert var.get() == "unset"


def test_callbacks_sharing_a_context_see_each_others_writes(loop: quiesce.Loop) -> None:
    ctx = contextvars.copy_context()
    seen: List[str] = []
    loop.call_soon(var.set, "first wrote this", context=ctx)
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.run_until_blocked()
    assert seen == ["first wrote this"]


def test_tasks_run_in_their_context(loop: quiesce.Loop) -> None:
    async def reader() -> str:
        await asyncio.sleep(1)
        return var.get()

    token = var.set("task context")
    try:
        task = loop.create_task(reader())
    finally:
        var.reset(token)
    loop.advance(1)
    assert task.result() == "task context"


# -- queue views --------------------------------------------------------------------------------


def test_ready_view(loop: quiesce.Loop) -> None:
    assert len(loop._ready) == 0
    assert not loop._ready
    handles = [loop.call_soon(print, i) for i in range(3)]
    assert len(loop._ready) == 3
    assert bool(loop._ready)
    assert list(loop._ready) == handles
    loop.step()
    assert list(loop._ready) == handles[1:]
    loop.run_until_blocked()
    assert len(loop._ready) == 0


def test_ready_view_clear_drops_callbacks(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(3):
        loop.call_soon(ran.append, i)
    loop._ready.clear()
    assert len(loop._ready) == 0
    loop.run_until_blocked()
    assert ran == []


def test_scheduled_view_is_in_firing_order(loop: quiesce.Loop) -> None:
    c = loop.call_later(3, print)
    a = loop.call_later(1, print)
    b1 = loop.call_at(2, print)
    b2 = loop.call_later(2, print)
    assert list(loop._scheduled) == [a, b1, b2, c]
    assert [h.when() for h in loop._scheduled] == [1.0, 2.0, 2.0, 3.0]
    assert len(loop._scheduled) == 4
    loop.advance(1)
    assert list(loop._scheduled) == [b1, b2, c]


def test_scheduled_view_clear_drops_timers(loop: quiesce.Loop) -> None:
    ran: List[int] = []
    for i in range(3):
        loop.call_later(i, ran.append, i)
    loop._scheduled.clear()
    assert len(loop._scheduled) == 0
    assert not loop._scheduled
    loop.advance(5)
    assert ran == []


def test_close_clears_the_queues(make_loop: Callable[..., quiesce.Loop]) -> None:
    new_loop = make_loop()
    ran: List[str] = []
    new_loop.call_soon(ran.append, "soon")
    new_loop.call_later(1, ran.append, "later")
    new_loop.close()
    assert len(new_loop._ready) == 0
    assert len(new_loop._scheduled) == 0
    assert ran == []


def test_debug_mode_records_where_each_handle_was_made(loop: quiesce.Loop) -> None:
    import sys

    ran: List[Any] = []
    assert loop.call_soon(ran.append, 0)._source_traceback is None
    loop.set_debug(True)
    handles = [
        loop.call_soon(ran.append, 1),
        loop.call_soon_threadsafe(lambda a, b: ran.append(a + b), 1, 1),
        loop.call_later(0, ran.append, 3),
        loop.call_at(loop.time(), ran.extend, [4, 5]),
    ]
    line = sys._getframe().f_lineno - 5  # the line of the first call below "handles = ["
    for offset, handle in enumerate(handles):
        frame = handle._source_traceback[-1]
        assert (frame.filename, frame.lineno, frame.name) == (
            __file__,
            line + offset,
            "test_debug_mode_records_where_each_handle_was_made",
        )
    assert handles[1]._args == (1, 1)
    loop.run_until_blocked()
    assert ran == [0, 1, 2, 3, 4, 5]
    loop.set_debug(False)


# -- create_future ------------------------------------------------------------------------------


def test_create_future_is_bound_to_the_loop_running_or_not(
    loop: quiesce.Loop, make_loop: Callable[..., quiesce.Loop]
) -> None:
    outside = loop.create_future()
    assert type(outside) is asyncio.Future
    assert outside.get_loop() is loop and not outside.done()

    async def inside() -> asyncio.Future[Any]:
        return loop.create_future()

    assert loop.run_until_complete(inside()).get_loop() is loop
    other = make_loop()

    async def from_another_running_loop() -> asyncio.Future[Any]:
        assert asyncio.get_running_loop() is other
        return loop.create_future()

    assert other.run_until_complete(from_another_running_loop()).get_loop() is loop


def test_create_future_uses_asyncio_futures_future(
    loop: quiesce.Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: List[Any] = []

    class Recording(asyncio.Future):  # type: ignore[type-arg]
        def __init__(self, *, loop: Any = None) -> None:
            seen.append(loop)
            super().__init__(loop=loop)

    monkeypatch.setattr(asyncio.futures, "Future", Recording)
    future = loop.create_future()
    assert type(future) is Recording and seen == [loop]
    monkeypatch.setattr(asyncio.futures, "Future", asyncio.futures._PyFuture)  # type: ignore[attr-defined]
    py_future = loop.create_future()
    assert type(py_future) is asyncio.futures._PyFuture  # type: ignore[attr-defined]
    assert py_future.get_loop() is loop


def test_a_subclass_create_future_override_is_used() -> None:
    made: List[Any] = []

    class Tracking(quiesce.Loop):
        def create_future(self) -> Any:
            future = super().create_future()
            made.append(future)
            return future

    async def main() -> bool:
        event = asyncio.Event()
        asyncio.get_running_loop().call_soon(event.set)
        return await event.wait()

    subclassed = Tracking()
    try:
        assert subclassed.run_until_complete(main()) is True
    finally:
        subclassed.close()
    assert len(made) == 1 and made[0].get_loop() is subclassed and made[0].done()


@pytest.mark.parametrize("kind", ["call_soon", "call_later"])
def test_cancel_lets_go_of_the_callback_and_arguments_at_once(
    loop: quiesce.Loop, kind: str
) -> None:
    # As stock asyncio's Handle.cancel() (it sets _callback and _args to None): an object
    # that keeps its own pending handle, whose callback is one of its methods, is freed by
    # reference counting once the handle is cancelled, without waiting for the cyclic GC.
    class Protocol:
        def __init__(self) -> None:
            schedule = loop.call_soon if kind == "call_soon" else loop.call_later
            args = () if kind == "call_soon" else (3600,)
            self.timeout = schedule(*args, self.on_timeout, object())  # type: ignore[operator]

        def on_timeout(self, _token: object) -> None:
            raise AssertionError("a cancelled handle ran")

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        protocol = Protocol()
        handle, alive = protocol.timeout, weakref.ref(protocol)
        handle.cancel()
        assert handle._callback is None and handle._args is None
        del protocol
        assert alive() is None
        handle.cancel()  # idempotent
        assert handle.cancelled()
    finally:
        if was_enabled:
            gc.enable()
    loop.run_until_blocked()


def test_a_callback_may_cancel_its_own_handle_while_it_runs(loop: quiesce.Loop) -> None:
    ran: List[str] = []
    handles: List[Any] = []

    def callback(tag: str) -> None:
        handles[0].cancel()  # drops the handle's references to this very function
        ran.append(tag)

    handles.append(loop.call_soon(lambda tag: callback(tag), "once"))
    loop.run_until_blocked()
    assert ran == ["once"] and handles[0].cancelled()


def test_a_cancelled_debug_handle_keeps_where_it_was_made(loop: quiesce.Loop) -> None:
    loop.set_debug(True)
    try:
        handle = loop.call_later(10, print, "x")
        made_at = handle._source_traceback
        assert made_at
        handle.cancel()
        assert handle._source_traceback == made_at
        assert handle._callback is None and "cancelled" in repr(handle)
    finally:
        loop.set_debug(False)
