"""The same scenarios on stock ``asyncio.SelectorEventLoop`` and on ``quiesce.Loop`` give the
same results (``clock="real"`` everywhere; the virtual clock too where time is not observed)."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys
import threading
import warnings
from typing import Any, Awaitable, Callable, Dict, List, Tuple

import pytest

import quiesce

requires_311 = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="TaskGroup / asyncio.timeout / asyncio.Runner need 3.11+"
)
requires_312 = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.run(loop_factory=...) needs Python 3.12+"
)

Factory = Callable[[], asyncio.AbstractEventLoop]
FACTORIES: Dict[str, Factory] = {
    "stock": asyncio.SelectorEventLoop,
    "quiesce-real": lambda: quiesce.Loop(clock="real"),
    "quiesce-virtual": lambda: quiesce.Loop(),
}
QUIESCE_KINDS = ["quiesce-real", "quiesce-virtual"]
RunOn = Callable[[Factory, Callable[[], Awaitable[Any]]], Any]

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def same_everywhere(run_on: RunOn, main: Callable[[], Awaitable[Any]], kinds: List[str]) -> Any:
    """Runs *main* on stock asyncio and on each quiesce kind; asserts identical results."""
    expected = run_on(FACTORIES["stock"], main)
    for kind in kinds:
        assert run_on(FACTORIES[kind], main) == expected, kind
    return expected


@pytest.mark.parametrize("kinds", [QUIESCE_KINDS])
def test_callback_and_task_ordering(run_on: RunOn, kinds: List[str]) -> None:
    async def main() -> List[str]:
        loop = asyncio.get_running_loop()
        log: List[str] = []

        async def task(name: str) -> str:
            log.append(f"{name} start")
            await asyncio.sleep(0)
            log.append(f"{name} middle")
            await asyncio.sleep(0)
            log.append(f"{name} end")
            return name

        def cb(name: str) -> None:
            log.append(name)
            if name == "soon-1":
                loop.call_soon(cb, "nested soon")

        loop.call_later(0, cb, "later-0 first")
        loop.call_soon(cb, "soon-1")
        t1 = loop.create_task(task("t1"))
        loop.call_soon(cb, "soon-2")
        t2 = loop.create_task(task("t2"))
        loop.call_later(0, cb, "later-0 second")
        fut = loop.create_future()
        fut.add_done_callback(lambda f: log.append("done-cb 1"))
        fut.add_done_callback(lambda f: log.append("done-cb 2"))
        loop.call_soon(fut.set_result, None)
        results = await asyncio.gather(t1, t2)
        log.append(f"gathered {results}")
        return log

    log = same_everywhere(run_on, main, kinds)
    assert log[:3] == ["soon-1", "t1 start", "soon-2"]


def test_wait_for(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        out: List[Any] = []
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=0.01)
        except asyncio.TimeoutError:
            out.append("timeout")
        out.append(await asyncio.wait_for(asyncio.sleep(0, "quick"), timeout=10))

        cancelled = []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        try:
            await asyncio.wait_for(slow(), timeout=0.01)
        except asyncio.TimeoutError:
            out.append(("inner cancelled", cancelled))
        return out

    result = same_everywhere(run_on, main, QUIESCE_KINDS)
    assert result == ["timeout", "quick", ("inner cancelled", [True])]


def test_cancellation_and_shield(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        out: List[Any] = []
        loop = asyncio.get_running_loop()

        async def sleeper() -> str:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                out.append("sleeper saw cancel")
                raise
            return "not reached"

        task = loop.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            out.append(("cancelled", task.cancelled()))

        inner = loop.create_task(asyncio.sleep(0.01, "shielded result"))
        outer = asyncio.ensure_future(asyncio.shield(inner))
        await asyncio.sleep(0)
        outer.cancel()
        try:
            await outer
        except asyncio.CancelledError:
            out.append("outer cancelled")
        out.append(await inner)
        return out

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [
        "sleeper saw cancel",
        ("cancelled", True),
        "outer cancelled",
        "shielded result",
    ]


def test_gather_and_exceptions(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        async def ok(x: int) -> int:
            await asyncio.sleep(0)
            return x

        async def bad() -> None:
            await asyncio.sleep(0)
            raise ValueError("bad")

        out: List[Any] = [await asyncio.gather(ok(1), ok(2), ok(3))]
        results = await asyncio.gather(ok(1), bad(), return_exceptions=True)
        out.append([repr(r) for r in results])
        try:
            await asyncio.gather(ok(1), bad())
        except ValueError as exc:
            out.append(str(exc))
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(ok(i)) for i in range(3)], return_when=asyncio.ALL_COMPLETED
        )
        out.append((sorted(t.result() for t in done), len(pending)))
        return out

    same_everywhere(run_on, main, QUIESCE_KINDS)


def test_synchronisation_primitives(run_on: RunOn) -> None:
    async def main() -> List[str]:
        log: List[str] = []
        lock = asyncio.Lock()
        sem = asyncio.Semaphore(2)
        cond = asyncio.Condition()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)

        async def locker(name: str) -> None:
            async with lock:
                log.append(f"{name} locked")
                await asyncio.sleep(0)
                log.append(f"{name} unlocking")

        async def limited(name: str) -> None:
            async with sem:
                log.append(f"{name} in")
                await asyncio.sleep(0)
                log.append(f"{name} out")

        async def waiter() -> None:
            async with cond:
                await cond.wait_for(lambda: bool(log))
                log.append("condition met")

        async def producer() -> None:
            for i in range(5):
                await queue.put(i)
                log.append(f"put {i}")

        async def consumer() -> None:
            for _ in range(5):
                log.append(f"got {await queue.get()}")

        await asyncio.gather(locker("a"), locker("b"), limited("x"), limited("y"), limited("z"))
        await asyncio.gather(waiter(), producer(), consumer())
        return log

    same_everywhere(run_on, main, QUIESCE_KINDS)


def test_contextvars_in_tasks_and_callbacks(run_on: RunOn) -> None:
    async def main() -> List[str]:
        loop = asyncio.get_running_loop()
        seen: List[str] = []
        var.set("main")

        async def child() -> None:
            seen.append(f"child sees {var.get()}")
            var.set("child")
            await asyncio.sleep(0)
            seen.append(f"child still {var.get()}")

        await loop.create_task(child())
        seen.append(f"main still {var.get()}")
        ctx = contextvars.Context()
        done = loop.create_future()
        loop.call_soon(lambda: seen.append(f"fresh ctx {var.get()}"), context=ctx)
        loop.call_soon(done.set_result, None)
        await done
        return seen

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [
        "child sees main",
        "child still child",
        "main still main",
        "fresh ctx unset",
    ]


def test_run_forever_and_stop(run_on: RunOn) -> None:
    def scenario(factory: Factory) -> List[str]:
        loop = factory()
        try:
            log: List[str] = []
            loop.call_soon(log.append, "first")
            loop.call_soon(loop.stop)
            loop.call_soon(log.append, "same turn")
            loop.run_forever()
            log.append("stopped")
            loop.call_soon(log.append, "next run")
            loop.call_soon(loop.stop)
            loop.run_forever()
            return log
        finally:
            loop.close()

    expected = scenario(FACTORIES["stock"])
    assert expected == ["first", "same turn", "stopped", "next run"]
    for kind in QUIESCE_KINDS:
        assert scenario(FACTORIES[kind]) == expected


@requires_311
def test_task_group(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        out: List[Any] = []

        async def fine(i: int) -> int:
            await asyncio.sleep(0)
            return i

        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            tasks = [group.create_task(fine(i)) for i in range(3)]
        out.append([t.result() for t in tasks])

        async def fails() -> None:
            await asyncio.sleep(0)
            raise ValueError("in group")

        async def sibling() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                out.append("sibling cancelled")
                raise

        try:
            async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                group.create_task(sibling())
                group.create_task(fails())
        except BaseException as eg:  # ExceptionGroup (3.11+)
            out.append([repr(e) for e in eg.exceptions])  # type: ignore[attr-defined]
        return out

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [
        [0, 1, 2],
        "sibling cancelled",
        ["ValueError('in group')"],
    ]


@requires_311
def test_asyncio_timeout(run_on: RunOn) -> None:
    async def main() -> List[str]:
        out: List[str] = []
        try:
            async with asyncio.timeout(0.01):  # type: ignore[attr-defined]
                await asyncio.Event().wait()
        except TimeoutError:
            out.append("timed out")
        async with asyncio.timeout(10):  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        out.append("in time")
        return out

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == ["timed out", "in time"]


def test_async_generator_finalization(run_on: RunOn) -> None:
    async def main() -> List[str]:
        log: List[str] = []

        async def gen(name: str) -> Any:
            try:
                for i in range(10):
                    yield i
                    await asyncio.sleep(0)
            finally:
                await asyncio.sleep(0)
                log.append(f"{name} finalized")

        async for value in gen("broken out of"):
            if value == 2:
                break
        log.append("after loop")
        for _ in range(5):
            await asyncio.sleep(0)

        explicit = gen("explicit")
        await explicit.__anext__()
        await explicit.aclose()
        return log

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [
        "after loop",
        "broken out of finalized",
        "explicit finalized",
    ]


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_shutdown_asyncgens(kind: str) -> None:
    loop = FACTORIES[kind]()
    log: List[str] = []
    try:

        async def gen() -> Any:
            try:
                yield 1
                yield 2
            finally:
                log.append("closed")

        agen = gen()

        async def first_item() -> Any:
            return await agen.__anext__()  # first iteration inside the loop: registers agen

        assert loop.run_until_complete(first_item()) == 1
        assert log == []
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert log == ["closed"]
    finally:
        loop.close()


def test_streams_echo(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        log: List[Any] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                line = await reader.readline()
                if not line:
                    break
                log.append(("server got", line))
                writer.write(line.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for word in (b"hello\n", b"world\n"):
            writer.write(word)
            await writer.drain()
            log.append(("client got", await reader.readline()))
        writer.write_eof()
        log.append(("client eof", await reader.read()))
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return log

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [
        ("server got", b"hello\n"),
        ("client got", b"HELLO\n"),
        ("server got", b"world\n"),
        ("client got", b"WORLD\n"),
        ("client eof", b""),
    ]


def test_low_level_socket_api(run_on: RunOn) -> None:
    async def main() -> List[bytes]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            await loop.sock_sendall(a, b"ping")
            got = [await loop.sock_recv(b, 4)]
            reader_fired = loop.create_future()
            loop.add_reader(b.fileno(), lambda: reader_fired.done() or reader_fired.set_result(1))
            await loop.sock_sendall(a, b"pong")
            await reader_fired
            loop.remove_reader(b.fileno())
            got.append(await loop.sock_recv(b, 4))
            return got
        finally:
            a.close()
            b.close()

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [b"ping", b"pong"]


def test_subprocess(run_on: RunOn) -> None:
    async def main() -> Tuple[bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(1)", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out.strip(), proc.returncode

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == (b"1", 0)


def test_run_in_executor(run_on: RunOn) -> None:
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(None, pow, 2, i) for i in range(5)))
        on_other_thread = await loop.run_in_executor(
            None, lambda: threading.current_thread() is not threading.main_thread()
        )
        return [list(results), on_other_thread]

    assert same_everywhere(run_on, main, QUIESCE_KINDS) == [[1, 2, 4, 8, 16], True]


@requires_311
@pytest.mark.parametrize("kind", QUIESCE_KINDS)
def test_runner_with_loop_factory(kind: str) -> None:
    async def sleepy(value: str) -> Tuple[str, str]:
        await asyncio.sleep(0.01)
        return value, type(asyncio.get_running_loop()).__name__

    async def uses_executor() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, int, "7")

    async def set_var() -> None:
        var.set("runner context")

    async def get_var() -> str:
        return var.get()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with asyncio.Runner(loop_factory=FACTORIES[kind]) as runner:  # type: ignore[attr-defined]
            assert runner.run(sleepy("a")) == ("a", "Loop")
            assert runner.run(uses_executor()) == 7
            runner.run(set_var())
            assert runner.run(get_var()) == "runner context"
            loop = runner.get_loop()
        assert loop.is_closed()
    assert [str(w.message) for w in caught] == []


@requires_312
@pytest.mark.parametrize("kind", QUIESCE_KINDS)
def test_asyncio_run_with_loop_factory(kind: str) -> None:
    async def main() -> Tuple[str, int]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        value = await loop.run_in_executor(None, int, "3")
        return type(loop).__name__, value

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = asyncio.run(main(), loop_factory=FACTORIES[kind])  # type: ignore[call-arg]
    assert result == ("Loop", 3)
    assert [str(w.message) for w in caught] == []


def test_callback_error_context_is_the_same(run_on: RunOn) -> None:
    """A callback error goes to the exception handler with the same context keys."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        contexts: List[Dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))

        def fail() -> None:
            raise KeyError("k")

        loop.call_soon(fail)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        return [(sorted(c), c["message"].split(" at ")[0], repr(c["exception"])) for c in contexts]

    ((keys, message, exception),) = same_everywhere(run_on, main, QUIESCE_KINDS)
    assert keys == ["exception", "handle", "message"]
    assert message.startswith("Exception in callback ") and message.endswith("fail()")
    assert exception == "KeyError('k')"
