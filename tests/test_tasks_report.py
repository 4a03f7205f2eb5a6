"""Tests for quiesce._tasks_report, driven by the stock asyncio event loop.

Lines that tests expect to see reported end with a ``# L:<name>`` marker; ``line_of(name)``
finds their line number in this file, so the tests do not hard-code line numbers.
"""

from __future__ import annotations

import asyncio
import collections.abc
import re
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from quiesce._tasks_report import describe_pending_tasks, describe_task

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parent.parent
THIS = "tests/test_tasks_report.py"  # how this file is shown with the repo root as cwd


SOURCE = HERE.read_text().splitlines()


def _markers() -> Dict[str, int]:
    found: Dict[str, int] = {}
    for number, text in enumerate(SOURCE, start=1):
        match = re.search(r"#\s*L:(\S+)\s*$", text)
        if match:
            assert match.group(1) not in found, f"duplicate marker {match.group(1)}"
            found[match.group(1)] = number
    return found


MARKERS = _markers()


def line_of(marker: str) -> int:
    return MARKERS[marker]


def at(marker: str) -> str:
    """``tests/test_tasks_report.py:<line>`` for the line carrying *marker*."""
    return f"{THIS}:{line_of(marker)}"


def frame(marker: str, qualname: str) -> str:
    """How the report shows the frame suspended at the line carrying *marker*."""
    return f"{at(marker)} in {qualname}: {SOURCE[line_of(marker) - 1].strip()}"


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    # Python 3.9's primitives bind to get_event_loop() when they are created.
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def spin(loop: asyncio.AbstractEventLoop, times: int = 5) -> None:
    """Let every runnable task run until it blocks; never sleeps in real time."""
    for _ in range(times):
        loop.run_until_complete(asyncio.sleep(0))


def lines(text: str) -> List[str]:
    return text.splitlines()


# --------------------------------------------------------------------------------------------
# Scenario coroutines


async def consumer(event: asyncio.Event) -> None:
    await event.wait()  # L:consumer-wait


async def holder(lock: asyncio.Lock, release: asyncio.Event) -> None:
    async with lock:
        await release.wait()  # L:holder-wait


async def contender(lock: asyncio.Lock) -> None:
    async with lock:  # L:contender-acquire
        pass


async def queue_getter(queue: asyncio.Queue) -> Any:
    return await queue.get()  # L:queue-get


async def queue_putter(queue: asyncio.Queue) -> None:
    await queue.put(1)
    await queue.put(2)  # L:queue-put


async def sleeper() -> None:
    await asyncio.sleep(30)  # L:sleep


async def middle(event: asyncio.Event) -> None:
    await event.wait()  # L:middle-wait


async def outer(event: asyncio.Event) -> None:
    await middle(event)  # L:outer-await


async def joiner(task: asyncio.Task) -> Any:
    return await task  # L:joiner-await


async def fresh() -> None:  # L:fresh-def
    await asyncio.sleep(0)


async def cond_waiter(cond: asyncio.Condition) -> None:
    async with cond:
        await cond.wait()  # L:cond-wait


async def sem_waiter(sem: asyncio.Semaphore) -> None:
    await sem.acquire()  # L:sem-acquire


async def ticker(event: asyncio.Event) -> Any:
    yield 1
    await event.wait()  # L:agen-wait
    yield 2


async def ticker_user(event: asyncio.Event) -> None:
    async for _ in ticker(event):  # L:agen-for
        pass


@types.coroutine
def legacy_wait(fut: asyncio.Future) -> Any:
    return (yield from fut)  # L:legacy-yield-from


async def legacy_user(fut: asyncio.Future) -> Any:
    return await legacy_wait(fut)  # L:legacy-await


async def await_future(fut: Any) -> Any:
    return await fut  # L:await-future


async def returns_42() -> int:
    return 42


async def raises_value_error() -> None:
    raise ValueError("bad")


# --------------------------------------------------------------------------------------------
# describe_task


def test_event_wait(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    task = loop.create_task(consumer(event))
    task.set_name("consumer")
    spin(loop)
    text = describe_task(task)
    out = lines(text)
    assert out[0] == f"Task 'consumer' (coroutine consumer() in {THIS})"
    assert out[1] == f"  waits at {frame('consumer-wait', 'consumer')}"
    assert out[1].endswith(": await event.wait()  # L:consumer-wait")
    assert re.fullmatch(r"    -> asyncio/locks\.py:\d+ in Event\.wait: await fut", out[2])
    assert out[3].startswith("  awaiting: <Future pending")
    assert "(Event.wait() on `event` (Event, unset))" in out[3]
    assert len(out) == 4


def test_lock_held_by_another_task(loop: asyncio.AbstractEventLoop) -> None:
    lock = asyncio.Lock()
    release = asyncio.Event()
    owner = loop.create_task(holder(lock, release))
    owner.set_name("owner")
    spin(loop)
    waiter = loop.create_task(contender(lock))
    waiter.set_name("waiter")
    spin(loop)
    assert lock.locked()

    text = describe_task(waiter)
    out = lines(text)
    assert out[0] == f"Task 'waiter' (coroutine contender() in {THIS})"
    assert out[1] == f"  waits at {frame('contender-acquire', 'contender')}"
    assert "in contender: async with lock:" in out[1]
    # async with goes through the lock's __aenter__ before reaching Lock.acquire.
    assert re.fullmatch(r"    -> asyncio/locks\.py:\d+ in Lock\.acquire: await fut", out[-2])
    assert "(Lock.acquire() on `lock` (Lock, locked))" in out[-1]

    owner_text = describe_task(owner)
    assert f"waits at {at('holder-wait')} in holder: await release.wait()" in owner_text
    assert "(Event.wait() on `release` (Event, unset))" in owner_text


def test_queue_get_and_put(loop: asyncio.AbstractEventLoop) -> None:
    empty: asyncio.Queue = asyncio.Queue()
    full: asyncio.Queue = asyncio.Queue(maxsize=1)
    getter = loop.create_task(queue_getter(empty))
    getter.set_name("getter")
    putter = loop.create_task(queue_putter(full))
    putter.set_name("putter")
    spin(loop)

    get_text = describe_task(getter)
    assert f"waits at {at('queue-get')} in queue_getter: return await queue.get()" in get_text
    assert re.search(r"\n    -> asyncio/queues\.py:\d+ in Queue\.get: ", get_text)
    assert "(Queue.get() on `queue` (empty Queue, unbounded))" in get_text

    put_text = describe_task(putter)
    assert f"waits at {at('queue-put')} in queue_putter: await queue.put(2)" in put_text
    assert re.search(r"\n    -> asyncio/queues\.py:\d+ in Queue\.put: ", put_text)
    assert "(Queue.put() on `queue` (full Queue, maxsize 1))" in put_text


def test_sleep_reports_delay(loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(sleeper())
    task.set_name("sleepy")
    spin(loop)
    text = describe_task(task)
    out = lines(text)
    assert out[1] == f"  waits at {at('sleep')} in sleeper: await asyncio.sleep(30)  # L:sleep"
    assert re.fullmatch(r"    -> asyncio/tasks\.py:\d+ in sleep: .*await future", out[2])
    assert out[3].startswith("  awaiting: <Future pending")
    due = re.search(r"\(asyncio\.sleep\(30\), due at t=([0-9.e+-]+)\)$", out[3])
    assert due is not None, out[3]
    assert 29 < float(due.group(1)) - loop.time() <= 30


def test_nested_chain_from_outer_to_innermost(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    task = loop.create_task(outer(event))
    task.set_name("nested")
    spin(loop)
    out = lines(describe_task(task))
    assert out[0] == f"Task 'nested' (coroutine outer() in {THIS})"
    assert out[1] == f"  waits at {frame('outer-await', 'outer')}"
    assert out[2] == f"    -> {frame('middle-wait', 'middle')}"
    assert "in outer: await middle(event)" in out[1]
    assert "in middle: await event.wait()" in out[2]
    assert re.match(r"    -> asyncio/locks\.py:\d+ in Event\.wait: ", out[3])
    assert out[4].startswith("  awaiting: <Future pending")
    assert "(Event.wait() on `event` (Event, unset))" in out[4]
    assert len(out) == 5


def test_task_awaiting_another_task(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    target = loop.create_task(consumer(event))
    target.set_name("target")
    waiting = loop.create_task(joiner(target))
    waiting.set_name("joiner")
    spin(loop)
    out = lines(describe_task(waiting))
    assert out == [
        f"Task 'joiner' (coroutine joiner() in {THIS})",
        f"  waits at {at('joiner-await')} in joiner: return await task  # L:joiner-await",
        "  awaiting: Task 'target'",
    ]


def test_task_that_never_ran(loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(fresh())
    task.set_name("newborn")
    # No spin: the task has been scheduled but its coroutine has not started.
    out = lines(describe_task(task))
    assert out == [
        f"Task 'newborn' (coroutine fresh() in {THIS})",
        f"  not started yet, defined at {at('fresh-def')} in fresh: async def fresh() -> None:"
        "  # L:fresh-def",
        "  awaiting: nothing (runnable)",
    ]


def test_woken_task_is_runnable(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    task = loop.create_task(consumer(event))
    task.set_name("consumer")
    spin(loop)
    assert "(Event.wait() on" in describe_task(task)
    event.set()  # wakes the task up, but the loop has not run it yet
    text = describe_task(task)
    assert f"waits at {at('consumer-wait')}" in text
    # (In debug mode the future's repr goes on with "created at ...".)
    assert "\n  awaiting: nothing (runnable; woken by <Future finished result=True" in text
    assert "Event.wait() on" not in text
    spin(loop)
    assert task.done()


def test_condition_and_semaphore(loop: asyncio.AbstractEventLoop) -> None:
    cond = asyncio.Condition()
    sem = asyncio.Semaphore(0)
    cond_task = loop.create_task(cond_waiter(cond))
    sem_task = loop.create_task(sem_waiter(sem))
    spin(loop)
    cond_text = describe_task(cond_task)
    assert f"waits at {at('cond-wait')} in cond_waiter: await cond.wait()" in cond_text
    assert "(Condition.wait() on `cond` (Condition))" in cond_text
    sem_text = describe_task(sem_task)
    assert f"waits at {at('sem-acquire')} in sem_waiter: await sem.acquire()" in sem_text
    assert "(Semaphore.acquire() on `sem` (Semaphore, locked))" in sem_text


def test_async_generator_chain(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    task = loop.create_task(ticker_user(event))
    task.set_name("iterating")
    spin(loop)
    out = lines(describe_task(task))
    assert out[1] == f"  waits at {frame('agen-for', 'ticker_user')}"
    assert out[2] == f"    -> {at('agen-wait')} in ticker: await event.wait()  # L:agen-wait"
    assert re.match(r"    -> asyncio/locks\.py:\d+ in Event\.wait: ", out[3])
    assert "(Event.wait() on `event` (Event, unset))" in out[4]


def test_generator_based_coroutine_chain(loop: asyncio.AbstractEventLoop) -> None:
    fut = loop.create_future()
    task = loop.create_task(legacy_user(fut))
    task.set_name("legacy")
    spin(loop)
    out = lines(describe_task(task))
    assert out[1] == f"  waits at {frame('legacy-await', 'legacy_user')}"
    assert out[2] == f"    -> {frame('legacy-yield-from', 'legacy_wait')}"
    assert "in legacy_wait: return (yield from fut)" in out[2]
    assert out[3].startswith("  awaiting: <Future pending")
    assert len(out) == 4
    fut.set_result(None)
    spin(loop)
    assert task.done()


def test_running_task_describes_itself(loop: asyncio.AbstractEventLoop) -> None:
    async def introspect() -> str:
        task = asyncio.current_task()
        assert task is not None
        return describe_task(task)  # L:introspect

    text = loop.run_until_complete(introspect())
    assert f"  running at {at('introspect')} in " in text
    assert text.endswith("  awaiting: nothing (running)")


def test_done_tasks(loop: asyncio.AbstractEventLoop) -> None:
    ok = loop.create_task(returns_42())
    ok.set_name("ok")
    bad = loop.create_task(raises_value_error())
    bad.set_name("bad")
    gone = loop.create_task(sleeper())
    gone.set_name("gone")
    spin(loop)
    gone.cancel()
    spin(loop)
    assert lines(describe_task(ok)) == [
        f"Task 'ok' (coroutine returns_42() in {THIS})",
        "  done: returned 42",
    ]
    assert lines(describe_task(bad))[1] == "  done: raised ValueError('bad')"
    assert lines(describe_task(gone))[1] == "  done: cancelled"
    assert isinstance(bad.exception(), ValueError)  # retrieve it: no warning at teardown


def test_pure_python_task_and_future(loop: asyncio.AbstractEventLoop) -> None:
    py_task_cls = getattr(asyncio.tasks, "_PyTask", None)
    py_future_cls = getattr(asyncio.futures, "_PyFuture", None)
    if py_task_cls is None or py_future_cls is None:
        pytest.skip("no pure-Python Task/Future in this build")
    fut = py_future_cls(loop=loop)
    task = py_task_cls(await_future(fut), loop=loop)
    task.set_name("pytask")
    spin(loop)
    out = lines(describe_task(task))
    # The pure-Python Future.__await__ generator is plumbing and is not listed.
    assert out == [
        f"Task 'pytask' (coroutine await_future() in {THIS})",
        f"  waits at {at('await-future')} in await_future: return await fut  # L:await-future",
        f"  awaiting: {fut!r}",
    ]
    fut.set_result(1)
    spin(loop)
    assert task.result() == 1


class LongReprFuture(asyncio.Future):
    def __repr__(self) -> str:
        return "<LongReprFuture " + "x" * 1000 + ">"


class BrokenReprFuture(asyncio.Future):
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_awaited_future_repr_is_truncated_or_replaced(loop: asyncio.AbstractEventLoop) -> None:
    long_fut = LongReprFuture(loop=loop)
    broken_fut = BrokenReprFuture(loop=loop)
    long_task = loop.create_task(await_future(long_fut))
    broken_task = loop.create_task(await_future(broken_fut))
    spin(loop)
    awaiting = lines(describe_task(long_task))[-1]
    assert awaiting.startswith("  awaiting: <LongReprFuture xxx")
    assert awaiting.endswith("...")
    assert len(awaiting) <= len("  awaiting: ") + 200
    awaiting = lines(describe_task(broken_task))[-1]
    assert awaiting == "  awaiting: <BrokenReprFuture object (repr failed: RuntimeError)>"
    long_fut.set_result(None)
    broken_fut.set_result(None)
    spin(loop)


class HostileCoroutine(collections.abc.Coroutine):
    """A coroutine whose introspection attributes all raise."""

    def send(self, value: Any) -> Any:
        raise StopIteration(None)

    def throw(self, *args: Any) -> Any:
        exc = args[1] if len(args) > 1 and args[1] is not None else args[0]
        raise exc

    def close(self) -> None:
        pass

    def __await__(self) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"hostile attribute {name}")


class HostileTask:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"hostile attribute {name}")

    def __repr__(self) -> str:
        return "<HostileTask>"


def test_weird_objects_never_raise(loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(HostileCoroutine())
    task.set_name("hostile")
    text = describe_task(task)
    assert text.startswith(
        f"Task 'hostile' (coroutine <{HostileCoroutine.__module__}.HostileCoroutine"
    )
    assert text.endswith("  awaiting: nothing (runnable)")

    assert describe_task(HostileTask()).startswith("Task ")  # type: ignore[arg-type]
    assert describe_task(object()).startswith("Task ")  # type: ignore[arg-type]
    report = describe_pending_tasks([HostileTask(), object()])  # type: ignore[list-item]
    assert "<HostileTask>" in report
    assert "<object object at 0x" in report
    spin(loop)
    assert task.done()


def test_paths_outside_cwd_are_left_as_given(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = asyncio.Event()
    task = loop.create_task(consumer(event))
    spin(loop)
    monkeypatch.chdir(tmp_path)
    text = describe_task(task)
    code_file = consumer.__code__.co_filename
    assert f"(coroutine consumer() in {code_file})" in text
    assert f"waits at {code_file}:{line_of('consumer-wait')} in consumer" in text
    # The stdlib asyncio package is shortened wherever the cwd is.
    assert re.search(r"\n    -> asyncio/locks\.py:\d+ in Event\.wait", text)


def test_paths_under_cwd_are_relative(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = asyncio.Event()
    task = loop.create_task(consumer(event))
    spin(loop)
    monkeypatch.chdir(HERE.parent)
    text = describe_task(task)
    assert "(coroutine consumer() in test_tasks_report.py)" in text
    assert f"waits at test_tasks_report.py:{line_of('consumer-wait')} in consumer" in text


# --------------------------------------------------------------------------------------------
# describe_pending_tasks


def test_no_pending_tasks(loop: asyncio.AbstractEventLoop) -> None:
    assert describe_pending_tasks([]) == "(no pending tasks)"
    done = loop.create_task(returns_42())
    spin(loop)
    assert done.done()
    assert describe_pending_tasks([done]) == "(no pending tasks)"


def test_pending_report_is_sorted_and_skips_done(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    lock = asyncio.Lock()
    queue: asyncio.Queue = asyncio.Queue()
    created = [
        loop.create_task(consumer(event)),
        loop.create_task(queue_getter(queue)),
        loop.create_task(holder(lock, event)),
        loop.create_task(sleeper()),
        loop.create_task(outer(event)),
        loop.create_task(returns_42()),
    ]
    names = ["w-10", "w-2", "holder", "sleeper", "nested", "finished"]
    for task, name in zip(created, names):
        task.set_name(name)
    spin(loop)
    created.append(loop.create_task(contender(lock)))
    created[-1].set_name("contender")
    created.append(loop.create_task(joiner(created[0])))
    created[-1].set_name("joiner")
    spin(loop)
    created.append(loop.create_task(fresh()))
    created[-1].set_name("newborn")

    report = describe_pending_tasks(asyncio.all_tasks(loop))
    blocks = report.split("\n\n")
    headers = [block.splitlines()[0] for block in blocks]
    assert [re.match(r"Task '([^']*)'", h).group(1) for h in headers] == [  # type: ignore[union-attr]
        "contender",
        "holder",
        "joiner",
        "nested",
        "newborn",
        "sleeper",
        "w-2",
        "w-10",
    ]
    assert "finished" not in report
    assert all(block.startswith("Task '") for block in blocks)
    assert all(block.splitlines()[-1].startswith("  awaiting: ") for block in blocks)
    # Input order does not matter.
    assert describe_pending_tasks(list(reversed(created))) == report
    assert describe_pending_tasks(created) == report
    # Each block is exactly describe_task's text.
    by_name = {task.get_name(): task for task in created}
    assert blocks[0] == describe_task(by_name["contender"])
    assert "(Lock.acquire() on `lock` (Lock, locked))" in blocks[0]
    assert "awaiting: Task 'w-10'" in blocks[2]
    assert "awaiting: nothing (runnable)" in blocks[4]
    assert "(asyncio.sleep(30), due at t=" in blocks[5]
    assert "(Queue.get() on `queue` (empty Queue, unbounded))" in blocks[6]


def test_same_name_sorted_by_coroutine_then_input_order(loop: asyncio.AbstractEventLoop) -> None:
    event = asyncio.Event()
    first = loop.create_task(sleeper())
    second = loop.create_task(consumer(event))
    for task in (first, second):
        task.set_name("same")
    spin(loop)
    report = describe_pending_tasks([first, second])
    assert report == describe_pending_tasks([second, first])
    assert report.index("coroutine consumer()") < report.index("coroutine sleeper()")
    assert report.count("\n\n") == 1
