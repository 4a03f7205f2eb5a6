"""``loop.report()``, and the report inside ``Deadlock`` (kinds, cycles, external activity)."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import threading
from typing import Callable, List

import pytest

import quiesce


async def wait_for(event: asyncio.Event) -> None:
    await event.wait()


async def transfer(first: asyncio.Lock, second: asyncio.Lock) -> None:
    async with first:
        await asyncio.sleep(1)
        async with second:
            pass


def task_named(report: quiesce.Report, name: str) -> quiesce.TaskReport:
    (found,) = [task for task in report.tasks if task.name == name]
    return found


def test_empty_loop(loop: quiesce.Loop) -> None:
    report = loop.report()
    assert report.tasks == () and report.timers == ()
    assert report.time == 0.0 and report.clock == "virtual"
    assert not report.external
    text = str(report)
    assert text.startswith(
        "quiesce report at loop time 0.0 (virtual clock): 0 pending task(s), "
        "0 runnable callback(s), 0 pending timer(s)"
    )
    assert text.endswith("external activity in flight: none")


def test_states_runnable_and_waiting(loop: quiesce.Loop) -> None:
    event = asyncio.Event()
    loop.create_task(wait_for(event), name="waiter")
    assert task_named(loop.report(), "waiter").state == "runnable"  # created, not started
    loop.run_until_blocked()
    waiter = task_named(loop.report(), "waiter")
    assert waiter.state == "waiting"
    assert "(Event.wait() on `event` (Event, unset))" in waiter.description
    event.set()
    assert task_named(loop.report(), "waiter").state == "runnable"  # woken, not resumed


def test_queue_and_sleep_in_user_terms(loop: quiesce.Loop) -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=3)

    async def consumer() -> None:
        await queue.get()

    async def napper() -> None:
        await asyncio.sleep(3.0)

    loop.advance(9.5)
    loop.create_task(consumer(), name="consumer")
    loop.create_task(napper(), name="napper")
    loop.run_until_blocked()
    report = loop.report()
    assert "(Queue.get() on `queue` (empty Queue, maxsize 3))" in (
        task_named(report, "consumer").description
    )
    assert "(asyncio.sleep(3.0), due at t=12.5)" in task_named(report, "napper").description
    (timer,) = report.timers
    assert timer.when == 12.5 and timer.task == "napper"
    assert "_set_result_unless_cancelled" in timer.callback
    assert f"  {timer}" in str(report)
    assert str(timer).startswith("t=12.5: ") and str(timer).endswith("(wakes Task 'napper')")


def test_lock_holder_is_named(loop: quiesce.Loop) -> None:
    lock = asyncio.Lock()
    release = asyncio.Event()

    async def holder() -> None:
        async with lock:
            await release.wait()

    async def contender() -> None:
        async with lock:
            pass

    loop.create_task(holder(), name="holder")
    loop.create_task(contender(), name="contender")
    loop.run_until_blocked()
    report = loop.report()
    assert task_named(report, "holder").holds == ("`lock` (Lock)",)
    contender_text = task_named(report, "contender").description
    assert "(Lock.acquire() on `lock` (Lock, locked))" in contender_text
    assert contender_text.endswith("the lock is held by Task 'holder'")
    assert report.cycles == ()
    release.set()
    loop.run_until_blocked()
    assert loop.report().tasks == ()


def test_lock_taken_without_async_with_has_an_unknown_holder(loop: quiesce.Loop) -> None:
    lock = asyncio.Lock()

    async def contender() -> None:
        async with lock:
            pass

    loop.run_until_complete(lock.acquire())
    loop.create_task(contender(), name="contender")
    loop.run_until_blocked()
    text = task_named(loop.report(), "contender").description
    assert text.endswith("the lock is held by an unknown task")
    lock.release()


def test_cycle_names_the_coroutine_each_task_waits_in(loop: quiesce.Loop) -> None:
    class Service:
        def __init__(self) -> None:
            self.names, self.audit_log = asyncio.Lock(), asyncio.Lock()

        async def rename(self) -> None:
            async with self.names:
                await asyncio.sleep(1)
                async with self.audit_log:
                    pass

        async def audit(self) -> None:
            async with self.audit_log:
                await asyncio.sleep(1)
                async with self.names:
                    pass

    async def main() -> None:
        service = Service()
        await asyncio.gather(service.rename(), service.audit())

    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(main())
    message = str(excinfo.value)
    cycle_line = next(line for line in message.splitlines() if line.startswith("cycle:"))
    assert re.fullmatch(
        r"cycle: 'Task-\d+' in test_cycle_names_the_coroutine_each_task_waits_in\.<locals>"
        r"\.Service\.(rename|audit) -> 'Task-\d+' in .*\.Service\.(rename|audit) -> "
        r"'Task-\d+' \(each waits for the next: a lock it holds, or its end\)",
        cycle_line,
    ), cycle_line


def test_lock_order_deadlock_is_named_as_a_cycle(loop: quiesce.Loop) -> None:
    first, second = asyncio.Lock(), asyncio.Lock()

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(transfer(first, second), name="payer"),
            asyncio.create_task(transfer(second, first), name="auditor"),
        )

    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(main())
    error = excinfo.value
    assert error.kind == "deadlock"
    assert error.report is not None
    assert error.report.cycles == (("auditor", "payer"),)
    message = str(error)
    assert error.report.cycle_coroutines == (("transfer", "transfer"),)
    assert "cycle: 'auditor' in transfer -> 'payer' in transfer -> 'auditor'" in message
    assert "awaiting: asyncio.gather() of 2 awaitable(s), 2 still pending: " in message
    assert task_named(error.report, "payer").holds == ("`first` (Lock)",)
    assert sorted(task.get_name() for task in error.tasks)[1:] == ["auditor", "payer"]


def test_forgotten_event_set(loop: quiesce.Loop) -> None:
    ready = asyncio.Event()

    async def consumer() -> str:
        await ready.wait()
        return "consumed"

    with pytest.raises(quiesce.Deadlock) as excinfo:
        loop.run_until_complete(loop.create_task(consumer(), name="consumer"))
    message = str(excinfo.value)
    assert message.startswith("Deadlock at loop time 0.0: no callback is runnable")
    assert "Task 'consumer' (coroutine test_forgotten_event_set.<locals>.consumer()" in message
    assert "(Event.wait() on `ready` (Event, unset))" in message
    assert excinfo.value.report is not None
    assert [task.name for task in excinfo.value.report.pending_tasks] == ["consumer"]


def test_external_activity_is_listed(loop: quiesce.Loop) -> None:
    release = threading.Event()
    job = loop.run_in_executor(None, release.wait)
    left, right = socket.socketpair()
    try:
        loop.add_reader(left.fileno(), lambda: None)
        external = loop.report().external
        assert external.executor_jobs == 1
        # Each descriptor is named: kind, direction, who watches it, in-process or not.
        watcher = "test_external_activity_is_listed.<locals>.<lambda>"
        described = f"fd {left.fileno()}: Unix connection (read; {watcher}) [in-process, idle]"
        assert external.watched_fds == (described,)
        assert bool(external)
        text = str(loop.report())
        assert "external activity in flight:\n  executor jobs in flight: 1" in text
        assert f"  watched file descriptors:\n    {described}" in text
    finally:
        loop.remove_reader(left.fileno())
        left.close()
        right.close()
        release.set()
        loop.run_until_complete(job)
    assert not loop.report().external.executor_jobs


def test_potential_deadlock_when_an_executor_job_never_returns(
    make_loop: Callable[..., quiesce.Loop],
) -> None:
    loop = make_loop(watchdog=0.2)
    release = threading.Event()
    try:
        with pytest.raises(quiesce.Deadlock) as excinfo:
            loop.run_until_complete(loop.run_in_executor(None, release.wait))
    finally:
        release.set()
    error = excinfo.value
    assert error.kind == "potential deadlock"
    message = str(error)
    # While the job runs the virtual clock follows real time (the job may take that long).
    assert re.match(
        r"Potential deadlock at loop time 0\.2\d*: nothing has run for 0\.2 s", message
    ), message
    assert "the only thing that could wake the loop is outside it (executor jobs in flight: 1)" in (
        message
    )
    assert "clock: followed real time for 0.2" in message
    assert "watchdog=... of quiesce.Loop, quiesce.explore or @pytest.mark.quiesce" in message


def test_watchdog_none_waits_like_stock(make_loop: Callable[..., quiesce.Loop]) -> None:
    loop = make_loop(watchdog=None)
    assert loop.watchdog is None
    assert make_loop().watchdog == quiesce.DEFAULT_WATCHDOG


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("5", TypeError)],
)
def test_bad_watchdog(value: object, error: type) -> None:
    with pytest.raises(error, match="watchdog"):
        quiesce.Loop(watchdog=value)  # type: ignore[arg-type]


def test_who_awaits_a_task_is_named_from_3_14(loop: quiesce.Loop) -> None:
    """3.14's awaited-by graph names what the await chain cannot: the caller of a gather() and
    the parent of a TaskGroup, under the child. Before 3.14 the report is as it was."""
    event = asyncio.Event()

    async def gather_one() -> None:
        child = asyncio.get_running_loop().create_task(wait_for(event), name="gathered")
        await asyncio.gather(child)

    async def group_of_one() -> None:
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            group.create_task(wait_for(event), name="member")

    loop.create_task(gather_one(), name="caller")
    if sys.version_info >= (3, 11):
        loop.create_task(group_of_one(), name="parent")
    loop.run_until_blocked()
    report = loop.report()
    if sys.version_info >= (3, 14):
        assert "\n  awaited by: Task 'caller'" in task_named(report, "gathered").description
        assert "\n  awaited by: Task 'parent'" in task_named(report, "member").description
        assert "awaited by" not in task_named(report, "caller").description
    else:
        assert "awaited by" not in str(report)
    event.set()
    loop.run_until_blocked()
    assert not asyncio.all_tasks(loop)


def test_report_from_inside_a_callback(loop: quiesce.Loop) -> None:
    seen: List[quiesce.Report] = []

    async def look() -> None:
        seen.append(asyncio.get_running_loop().report())  # type: ignore[attr-defined]

    loop.run_until_complete(loop.create_task(look(), name="looker"))
    assert task_named(seen[0], "looker").state == "running"


def test_running_child_process_holds_the_virtual_clock(loop: quiesce.Loop) -> None:
    import sys

    async def main() -> bytes:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write(sys.stdin.read())",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert f"child processes running: pid {proc.pid}" in str(loop.report())
        # A generous virtual timeout: on the virtual clock it must not fire while the child
        # still runs, however long the child takes in real time.
        out, _ = await asyncio.wait_for(proc.communicate(b"echo"), timeout=1.0)
        return out

    assert loop.run_until_complete(main()) == b"echo"
    # The clock followed real time while the child ran (the timeout would have fired only
    # after a real second), instead of jumping to the timeout.
    assert 0.0 < loop.time() < 1.0
    external = loop.report().external  # (the waitpid thread may still be finishing)
    assert external.child_processes == () and external.executor_jobs == 0
