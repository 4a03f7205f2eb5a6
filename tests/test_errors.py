"""Errors: the exception handler, KeyboardInterrupt/SystemExit, misuse of the driving calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, List

import pytest

import quiesce

DRIVERS: List[Callable[[quiesce.Loop], Any]] = [
    lambda loop: loop.run_until_blocked(),
    lambda loop: loop.step(),
    lambda loop: loop.advance(1),
]
DRIVER_IDS = ["run_until_blocked", "step", "advance"]


def boom() -> None:
    raise ValueError("boom")


def test_callback_error_goes_to_the_handler_and_the_loop_goes_on(
    loop: quiesce.Loop, handler_calls: List[Any]
) -> None:
    ran: List[str] = []
    handle = loop.call_soon(boom)
    loop.call_soon(ran.append, "after")
    loop.run_until_blocked()
    assert ran == ["after"]
    assert len(handler_calls) == 1
    called_loop, context = handler_calls[0]
    assert called_loop is loop
    assert isinstance(context["exception"], ValueError)
    assert str(context["exception"]) == "boom"
    assert context["handle"] is handle
    assert context["message"].startswith("Exception in callback")
    assert "boom" in context["message"]


def test_timer_callback_error(loop: quiesce.Loop, handler_calls: List[Any]) -> None:
    handle = loop.call_later(2, boom)
    loop.advance(3)
    assert loop.time() == 3.0
    ((_, context),) = handler_calls
    assert context["handle"] is handle
    assert isinstance(context["handle"], quiesce.TimerHandle)
    assert isinstance(context["exception"], ValueError)


def test_errors_in_many_callbacks(loop: quiesce.Loop, handler_calls: List[Any]) -> None:
    def fail(n: int) -> None:
        raise KeyError(n)

    for n in range(5):
        loop.call_soon(fail, n)
    loop.run_until_blocked()
    assert [ctx["exception"].args[0] for _, ctx in handler_calls] == [0, 1, 2, 3, 4]


def test_error_under_run_until_complete(loop: quiesce.Loop, handler_calls: List[Any]) -> None:
    async def main() -> str:
        asyncio.get_running_loop().call_soon(boom)
        await asyncio.sleep(1)
        return "survived"

    assert loop.run_until_complete(main()) == "survived"
    assert len(handler_calls) == 1


def test_default_handler_logs(loop: quiesce.Loop, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(boom)
        loop.run_until_blocked()
    assert any("Exception in callback" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_failing_custom_handler_does_not_stop_the_loop(
    loop: quiesce.Loop, caplog: pytest.LogCaptureFixture
) -> None:
    def bad_handler(_loop: Any, _context: Any) -> None:
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    ran: List[str] = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(boom)
        loop.call_soon(ran.append, "next")
        loop.run_until_blocked()
    assert ran == ["next"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_run_until_blocked(
    loop: quiesce.Loop, handler_calls: List[Any], exc_type: type
) -> None:
    ran: List[str] = []

    def interrupt() -> None:
        raise exc_type()

    loop.call_soon(ran.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "after")
    with pytest.raises(exc_type):
        loop.run_until_blocked()
    assert ran == ["before"]
    assert not loop.is_running()
    assert handler_calls == []
    # the remaining ready callbacks still run later
    loop.run_until_blocked()
    assert ran == ["before", "after"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_run_until_complete(
    loop: quiesce.Loop, exc_type: type
) -> None:
    ran: List[str] = []

    def interrupt() -> None:
        raise exc_type()

    async def main() -> None:
        running = asyncio.get_running_loop()
        running.call_soon(interrupt)
        running.call_soon(ran.append, "later")
        await asyncio.sleep(5)

    task = loop.create_task(main())
    with pytest.raises(exc_type):
        loop.run_until_complete(task)
    assert ran == []
    assert not loop.is_running()
    loop.run_until_blocked()
    assert ran == ["later"]


def test_keyboard_interrupt_raised_by_a_coroutine(loop: quiesce.Loop) -> None:
    async def main() -> None:
        await asyncio.sleep(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    assert loop.time() == 1.0


def test_system_exit_from_step(loop: quiesce.Loop) -> None:
    ran: List[str] = []

    def leave() -> None:
        raise SystemExit(3)

    loop.call_soon(leave)
    loop.call_soon(ran.append, "x")
    with pytest.raises(SystemExit) as excinfo:
        loop.step()
    assert excinfo.value.code == 3
    assert loop.step() is True
    assert ran == ["x"]


def test_keyboard_interrupt_from_advance(loop: quiesce.Loop) -> None:
    ran: List[float] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_later(1, interrupt)
    loop.call_later(1, lambda: ran.append(loop.time()))
    with pytest.raises(KeyboardInterrupt):
        loop.advance(2)
    assert loop.time() == 1.0
    loop.advance(1)
    assert ran == [1.0]
    assert loop.time() == 2.0


@pytest.mark.parametrize("drive", DRIVERS, ids=DRIVER_IDS)
def test_driving_from_a_coroutine_is_refused(
    loop: quiesce.Loop, drive: Callable[[quiesce.Loop], Any]
) -> None:
    async def main() -> str:
        with pytest.raises(RuntimeError, match="running") as excinfo:
            drive(loop)
        return str(excinfo.value)

    message = loop.run_until_complete(main())
    assert "running" in message
    assert not loop.is_running()


@pytest.mark.parametrize("drive", DRIVERS, ids=DRIVER_IDS)
def test_driving_from_a_callback_is_refused(
    loop: quiesce.Loop, drive: Callable[[quiesce.Loop], Any]
) -> None:
    errors: List[BaseException] = []

    def callback() -> None:
        try:
            drive(loop)
        except RuntimeError as exc:
            errors.append(exc)

    loop.call_soon(callback)
    loop.run_until_blocked()
    assert len(errors) == 1
    assert "running" in str(errors[0])
    assert loop.time() == 0.0


@pytest.mark.parametrize("drive", DRIVERS, ids=DRIVER_IDS)
def test_driving_a_closed_loop_is_refused(
    make_loop: Callable[..., quiesce.Loop], drive: Callable[[quiesce.Loop], Any]
) -> None:
    closed = make_loop()
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        drive(closed)


@pytest.mark.parametrize("drive", DRIVERS, ids=DRIVER_IDS)
def test_driving_while_another_loop_runs_is_refused(
    make_loop: Callable[..., quiesce.Loop], drive: Callable[[quiesce.Loop], Any]
) -> None:
    outer = make_loop()
    inner = make_loop()

    async def main() -> None:
        with pytest.raises(RuntimeError):
            drive(inner)

    outer.run_until_complete(main())


def test_run_until_complete_on_a_running_loop_is_refused(loop: quiesce.Loop) -> None:
    async def main() -> None:
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop().run_until_complete(coro)
        finally:
            coro.close()

    loop.run_until_complete(main())


def test_task_exception_is_the_tasks_not_the_handlers(
    loop: quiesce.Loop, handler_calls: List[Any]
) -> None:
    async def fails() -> None:
        raise ValueError("in task")

    task = loop.create_task(fails())
    loop.run_until_blocked()
    assert isinstance(task.exception(), ValueError)
    assert handler_calls == []
