"""The quiesce demo: ``python -m quiesce.demo``.

1. The user story quiesce starts from: drive a coroutine that waits on an Event step by step.
2. An hour of ``asyncio.sleep`` in a few milliseconds on the virtual clock.
3. A deadlock reported instead of a hung program.
4. A race that stock order hides, found by ``quiesce.explore`` and replayed exactly.
"""

from __future__ import annotations

import asyncio
import sys
import time

import quiesce


async def wait_on_event(event: asyncio.Event, log: list) -> int:
    """Waits for ``event``; stands in for a long-running coroutine driven by the outside."""
    log.append("waiting on event")
    await event.wait()
    log.append("done waiting on event")
    return 42


def drive_step_by_step() -> None:
    """Runs until blocked, asserts, pokes, resumes."""
    print("1. Run until every task is blocked, poke, resume")
    loop = quiesce.Loop()
    asyncio.set_event_loop(loop)
    try:
        event = asyncio.Event()
        log: list = []
        task = loop.create_task(wait_on_event(event, log))
        loop.run_until_blocked()
        print(f"   after run_until_blocked(): log={log}, task done={task.done()}")
        assert log == ["waiting on event"] and not task.done()
        event.set()
        loop.run_until_blocked()
        print(f"   after event.set(), run_until_blocked(): log={log}, result={task.result()}")
        assert task.result() == 42
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def heartbeat(beats: list) -> None:
    """Beats once a minute for an hour."""
    for _ in range(60):
        await asyncio.sleep(60)
        beats.append(asyncio.get_running_loop().time())


def an_hour_of_sleeps() -> None:
    """Runs 100 tasks that each sleep a minute, sixty times: one virtual hour."""
    print("2. An hour of sleeps on the virtual clock")
    loop = quiesce.Loop()
    try:
        beats: list = []
        started = time.perf_counter()

        async def main() -> None:
            await asyncio.gather(*(heartbeat(beats) for _ in range(100)))

        loop.run_until_complete(main())
        elapsed = time.perf_counter() - started
        print(
            f"   {len(beats)} sleeps of 60 s by 100 tasks: loop time {loop.time():.0f} s, "
            f"wall time {elapsed * 1000:.1f} ms"
        )
    finally:
        loop.close()


async def transfer(first: asyncio.Lock, second: asyncio.Lock) -> None:
    """Takes two locks in the given order."""
    async with first:
        await asyncio.sleep(1)
        async with second:
            pass


def a_deadlock() -> None:
    """Two tasks take two locks in opposite orders."""
    print("3. A lock-order deadlock, reported instead of hanging")
    loop = quiesce.Loop()
    asyncio.set_event_loop(loop)
    try:
        accounts, audit = asyncio.Lock(), asyncio.Lock()

        async def main() -> None:
            await asyncio.gather(
                asyncio.create_task(transfer(accounts, audit), name="payer"),
                asyncio.create_task(transfer(audit, accounts), name="auditor"),
            )

        loop.run_until_complete(loop.create_task(main(), name="main"))
    except quiesce.Deadlock as deadlock:
        print("   quiesce.Deadlock:")
        for line in str(deadlock).splitlines():
            print(f"   | {line}")
        for task in deadlock.tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*deadlock.tasks, return_exceptions=True))
    else:
        raise AssertionError("the demo deadlock was not detected")
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_no_overdraft() -> None:
    """Two withdrawals from one account: each checks the balance, asks a (fast) fraud
    service, then debits. The second customer logs in a moment later, so in stock asyncio
    order the first debit lands before the second check and the test passes."""
    account = {"balance": 100}

    async def withdraw(amount: int, login_steps: int) -> None:
        for _ in range(login_steps):
            await asyncio.sleep(0)  # logging in
        if account["balance"] >= amount:
            await asyncio.sleep(0)  # the fraud check
            account["balance"] -= amount

    await asyncio.gather(withdraw(80, login_steps=0), withdraw(50, login_steps=2))
    assert account["balance"] >= 0, f"overdrawn: balance {account['balance']}"


def a_race_found_and_replayed() -> None:
    """Explores the interleavings of ``test_no_overdraft`` and replays the failing one."""
    print("4. A race that stock order hides, found by exploration and replayed")
    quiesce.replay(test_no_overdraft, "q1-")  # stock order: passes
    print("   in stock asyncio order the test passes")
    try:
        quiesce.explore(test_no_overdraft)
    except quiesce.ExplorationFailed as found:
        for line in str(found).splitlines():
            print(f"   | {line}")
        schedule = found.schedule
    else:
        raise AssertionError("the demo race was not found")
    try:
        quiesce.replay(test_no_overdraft, schedule)
    except AssertionError as again:
        print(f"   replayed {schedule}: AssertionError: {again}")
    else:
        raise AssertionError("the replay did not fail")


def main() -> int:
    """Runs the four parts of the demo."""
    print(f"quiesce {quiesce.__version__} on Python {sys.version.split()[0]}\n")
    drive_step_by_step()
    print()
    an_hour_of_sleeps()
    print()
    a_deadlock()
    print()
    a_race_found_and_replayed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
