"""``quiesce.run(main)``: ``asyncio.run`` on a quiesce.Loop."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

import pytest

import quiesce
import quiesce._loop


def current_loop() -> Any:
    """The current event loop of this thread, or None (without making one or warning)."""
    return quiesce._loop._current_loop()


@pytest.fixture(autouse=True)
def no_current_loop() -> Any:
    """Each test starts and ends without a current event loop."""
    asyncio.set_event_loop(None)
    yield
    asyncio.set_event_loop(None)


def test_returns_the_result_and_runs_on_a_quiesce_loop() -> None:
    seen: Dict[str, Any] = {}

    async def main() -> str:
        loop = asyncio.get_running_loop()
        seen["loop"] = loop
        seen["current"] = current_loop()
        return "result"

    assert quiesce.run(main()) == "result"
    loop = seen["loop"]
    assert isinstance(loop, quiesce.Loop)
    assert (loop.seed, loop.clock) == (None, "virtual")
    assert seen["current"] is loop  # the current event loop while it runs, as asyncio.run
    assert loop.is_closed()
    assert current_loop() is None  # and unset afterwards


def test_an_hour_of_sleeps_on_the_virtual_clock() -> None:
    async def sleeper(times: List[float]) -> None:
        for _ in range(60):
            await asyncio.sleep(60)
            times.append(asyncio.get_running_loop().time())

    async def main() -> List[float]:
        times: List[float] = []
        await asyncio.gather(*(sleeper(times) for _ in range(10)))
        assert asyncio.get_running_loop().time() == 3600.0
        return times

    times = quiesce.run(main())
    assert len(times) == 600
    assert times[:10] == [60.0] * 10
    assert times[-1] == 3600.0


def test_seed_and_clock_configure_the_loop() -> None:
    async def settings() -> Any:
        loop = asyncio.get_running_loop()
        return loop.seed, loop.clock

    assert quiesce.run(settings(), seed=7) == (7, "virtual")
    assert quiesce.run(settings(), clock="real") == (None, "real")


def test_same_seed_same_interleaving() -> None:
    async def main() -> List[str]:
        order: List[str] = []

        async def worker(name: str) -> None:
            for step in range(3):
                order.append(f"{name}{step}")
                await asyncio.sleep(0)

        await asyncio.gather(*(worker(name) for name in "abcd"))
        return order

    first = quiesce.run(main(), seed=42)
    assert quiesce.run(main(), seed=42) == first
    assert sorted(first) == sorted(quiesce.run(main()))


def test_deadlock_raises_naming_the_task_and_cleans_up() -> None:
    log: List[str] = []

    async def waiter(event: asyncio.Event) -> None:
        try:
            await event.wait()
        finally:
            log.append("waiter cleaned up")

    async def main() -> None:
        event = asyncio.Event()
        await asyncio.get_running_loop().create_task(waiter(event), name="stuck-waiter")

    with pytest.raises(quiesce.Deadlock) as raised:
        quiesce.run(main())
    assert type(raised.value) is quiesce.Deadlock  # as is, not wrapped
    assert raised.value.kind == "deadlock"
    message = str(raised.value)
    assert "Deadlock at loop time 0.0" in message
    assert "Task 'stuck-waiter'" in message
    assert log == ["waiter cleaned up"]  # leftover tasks were cancelled
    assert all(task.done() for task in raised.value.tasks)
    assert current_loop() is None


def test_main_exception_propagates() -> None:
    async def main() -> None:
        await asyncio.sleep(10)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        quiesce.run(main())


def test_leftover_tasks_are_cancelled_and_awaited() -> None:
    log: List[str] = []
    tasks: List[asyncio.Task[None]] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(10**6)
        except asyncio.CancelledError:
            loop = asyncio.get_running_loop()
            log.append(f"cancelled at {loop.time()}")
            log.append(f"current loop set: {current_loop() is loop}")
            await asyncio.sleep(5)  # cleanup may still await
            log.append(f"cleaned up at {loop.time()}")
            raise

    async def main() -> None:
        tasks.append(asyncio.get_running_loop().create_task(forever()))
        await asyncio.sleep(3)

    quiesce.run(main())
    assert log == ["cancelled at 3.0", "current loop set: True", "cleaned up at 8.0"]
    assert tasks[0].cancelled()


def test_exception_of_a_cancelled_task_goes_to_the_loop_exception_handler() -> None:
    contexts: List[Dict[str, Any]] = []
    tasks: List[asyncio.Task[None]] = []

    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(10**6)
        except asyncio.CancelledError:
            raise ValueError("failed while cancelled") from None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))
        tasks.append(loop.create_task(fails_when_cancelled()))
        await asyncio.sleep(0)

    quiesce.run(main())
    assert len(contexts) == 1
    (context,) = contexts
    assert context["message"] == "unhandled exception during asyncio.run() shutdown"
    assert isinstance(context["exception"], ValueError)
    assert context["task"] is tasks[0]


def test_async_generators_are_finalized() -> None:
    log: List[str] = []
    kept: List[AsyncIterator[int]] = []  # keeps the generator alive until the shutdown

    async def numbers() -> AsyncIterator[int]:
        try:
            for n in range(10):
                yield n
        finally:
            log.append(f"generator closed at {asyncio.get_running_loop().time()}")

    async def main() -> None:
        gen = numbers()
        kept.append(gen)
        assert await gen.__anext__() == 0
        await asyncio.sleep(30)

    quiesce.run(main())
    assert log == ["generator closed at 30.0"]


def test_default_executor_is_shut_down() -> None:
    threads: List[threading.Thread] = []

    async def main() -> int:
        def job() -> int:
            threads.append(threading.current_thread())
            return 6 * 7

        return await asyncio.get_running_loop().run_in_executor(None, job)

    assert quiesce.run(main()) == 42
    assert threads and not threads[0].is_alive()  # the executor was shut down and joined


@pytest.mark.parametrize("debug", [True, False])
def test_debug_flag_is_honoured(debug: bool) -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert quiesce.run(main(), debug=debug) is debug


def test_debug_none_keeps_the_loop_default() -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    default_loop = quiesce.Loop()
    try:
        default = default_loop.get_debug()
    finally:
        default_loop.close()
    assert quiesce.run(main()) is default
    assert quiesce.run(main(), debug=None) is default


def test_refused_from_a_running_loop() -> None:
    async def inner() -> None:
        pass

    async def main() -> str:
        coro = inner()
        try:
            quiesce.run(coro)
        except RuntimeError as error:
            return str(error)
        finally:
            coro.close()
        return "no error"

    assert quiesce.run(main()) == "quiesce.run() cannot be called from a running event loop"


@pytest.mark.parametrize(
    "make_main",
    [lambda: 42, lambda: asyncio.sleep, lambda: None],
    ids=["int", "coroutine function", "None"],
)
def test_non_awaitable_is_refused_as_asyncio_run_refuses_it(make_main: Callable[[], Any]) -> None:
    main = make_main()
    if sys.version_info >= (3, 14):  # 3.14's asyncio.run takes any awaitable
        expected = (TypeError, r"^An asyncio.Future, a coroutine or an awaitable is required")
    else:
        expected = (ValueError, r"^a coroutine was expected, got ")
    with pytest.raises(expected[0], match=expected[1]):
        quiesce.run(main)
    assert current_loop() is None


def test_same_errors_as_asyncio_run() -> None:
    for bad in (42, None):
        with pytest.raises((TypeError, ValueError)) as stock:
            asyncio.run(bad)  # type: ignore[arg-type]
        with pytest.raises((TypeError, ValueError)) as ours:
            quiesce.run(bad)  # type: ignore[arg-type]
        assert (type(ours.value), str(ours.value)) == (type(stock.value), str(stock.value))


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio.run takes awaitables from 3.14")
def test_any_awaitable_runs_as_on_asyncio_run() -> None:
    class Later:
        def __await__(self) -> Any:
            yield from asyncio.sleep(60).__await__()
            return asyncio.get_running_loop().time()

    assert quiesce.run(Later()) == 60.0  # type: ignore[arg-type]


def test_shutdown_matches_asyncio_run_step_for_step() -> None:
    """The same program logs the same events under asyncio.run and quiesce.run."""

    kept: List[Any] = []  # keeps the generators alive until the shutdown

    def program(log: List[str]) -> Any:

        async def gen() -> AsyncIterator[int]:
            try:
                yield 1
                yield 2
            finally:
                log.append("generator finalized")

        async def leftover(name: str) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append(f"{name} cancelled")
                raise

        async def main() -> str:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: log.append(context["message"]))
            agen = gen()
            kept.append(agen)
            await agen.__anext__()
            kept.append(loop.create_task(leftover("leftover")))
            await asyncio.sleep(0)
            log.append(f"current loop set: {current_loop() is loop}")
            return "done"

        return main()

    stock: List[str] = []
    ours: List[str] = []
    assert asyncio.run(program(stock)) == "done"
    assert current_loop() is None
    assert quiesce.run(program(ours)) == "done"
    assert current_loop() is None
    assert stock == ["current loop set: True", "leftover cancelled", "generator finalized"]
    assert ours == stock


def test_runs_in_a_copy_of_the_context_like_asyncio_run() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("outer")

    async def main() -> str:
        seen = var.get()
        var.set("inner")
        return seen

    assert quiesce.run(main()) == "outer"
    assert var.get() == "outer"


def test_bad_settings_raise_before_running() -> None:
    async def main() -> None:
        pass

    for kwargs in ({"clock": "sundial"}, {"seed": -1}):
        coro = main()
        with pytest.raises(ValueError):
            quiesce.run(coro, **kwargs)
        coro.close()
    assert current_loop() is None


def test_loop_can_be_driven_again_after_run_returns() -> None:
    """Regression guard: quiesce.run leaves no running loop behind."""

    async def main() -> Optional[asyncio.AbstractEventLoop]:
        return asyncio.get_running_loop()

    loop = quiesce.run(main())
    assert loop is not None and loop.is_closed()
    assert asyncio._get_running_loop() is None
    assert quiesce.run(main()) is not loop
