"""Small asyncio programs with concurrency bugs that stock (FIFO) scheduling hides.

Each is an async function with no arguments that passes under stock asyncio order and fails
under some other legal interleaving. tests/test_explore.py checks that, and that
``quiesce.explore`` finds and ``quiesce.replay`` reproduces each one; benches/bench_explore.py
measures how many runs each policy needs.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Dict, List, Optional


async def hops(count: int) -> None:
    """Yields to the loop ``count`` times (stands for awaits on fast I/O)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def lost_update() -> None:
    """Read-modify-write across an await: two increments, one is lost."""
    balance = {"value": 0}

    async def deposit(delay: int) -> None:
        await hops(delay)
        current = balance["value"]
        await hops(1)  # e.g. an audit log write
        balance["value"] = current + 1

    await asyncio.gather(deposit(0), deposit(2))
    assert balance["value"] == 2, f"lost update: balance is {balance['value']}, expected 2"


async def lock_order_deadlock() -> None:
    """Two tasks take two locks in opposite orders; one starting a little earlier deadlocks."""
    accounts, audit = asyncio.Lock(), asyncio.Lock()

    async def transfer() -> None:
        async with accounts:
            await hops(1)
            async with audit:
                pass

    async def report() -> None:
        await hops(2)
        async with audit:
            await hops(1)
            async with accounts:
                pass

    await asyncio.gather(
        asyncio.ensure_future(transfer()),
        asyncio.ensure_future(report()),
    )


async def double_init() -> None:
    """Check-then-act lazy initialisation: two callers both see "not yet" and both connect."""
    connections: List[object] = []
    cache: Dict[str, object] = {}

    async def client() -> object:
        if "client" not in cache:
            await hops(1)  # connecting
            connections.append(object())
            cache["client"] = connections[-1]
        return cache["client"]

    async def user(delay: int) -> object:
        await hops(delay)
        return await client()

    first, second = await asyncio.gather(user(0), user(2))
    assert len(connections) == 1, f"initialised {len(connections)} times"
    assert first is second


async def missed_wakeup() -> None:
    """``set(); clear()`` wakes only tasks already waiting: a waiter that arrives late sleeps
    forever (a deadlock)."""
    ready = asyncio.Event()

    async def consumer() -> None:
        await ready.wait()

    async def producer() -> None:
        await hops(1)
        ready.set()
        ready.clear()  # a pulse

    await asyncio.gather(consumer(), producer())


async def dirty_cancel() -> None:
    """A cancellation between the two halves of a state change leaves the state dirty."""
    state = {"in_flight": 0}

    async def request() -> None:
        state["in_flight"] += 1
        await hops(1)  # the round trip
        state["in_flight"] -= 1  # not in a finally: skipped when cancelled at the await

    async def watchdog(task: asyncio.Future) -> None:
        await hops(2)
        if not task.done():
            task.cancel()

    task = asyncio.ensure_future(request())
    await asyncio.gather(task, watchdog(task), return_exceptions=True)
    assert state["in_flight"] == 0, f"in_flight is {state['in_flight']} after the requests"


async def timeout_tie() -> None:
    """A reply due at the same instant as the timeout: the code assumes the reply wins."""
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    loop.call_later(1.0, reply.set_result, "pong")  # the server answers in exactly 1 s
    done, _ = await asyncio.wait({reply}, timeout=1.0)  # the client waits exactly 1 s
    assert reply in done, "timed out although the reply was due at the same instant"


async def stale_cache() -> None:
    """A reader caches a value it read before a writer's update and invalidation: the cache
    stays stale. Needs the reader to read first and write last, around both of the writer's
    steps (two preemptions)."""
    store = {"price": 1}
    cache: Dict[str, int] = {}

    async def writer() -> None:
        await hops(6)  # other work first
        store["price"] = 2
        await hops(1)  # the write reaches the replica
        cache.pop("price", None)  # invalidate

    async def reader() -> None:
        await hops(6)
        if "price" not in cache:
            value = store["price"]
            await hops(2)  # slow serialisation
            cache["price"] = value

    await asyncio.gather(writer(), reader())
    cached = cache.get("price", store["price"])
    assert cached == store["price"], f"stale cache: {cached}, store has {store['price']}"


async def buffer_overrun() -> None:
    """A producer writes into an 8-slot ring buffer without checking for room, trusting the
    consumer (which polls) to keep up. It does in stock order; a consumer that falls eight
    writes behind loses data. A random schedule must starve the consumer for eight decisions
    in a row; PCT does it at once."""
    slots: List[Optional[int]] = [None] * 8
    count = 32
    state = {"written": 0, "read": 0}
    received: List[Optional[int]] = []

    async def producer() -> None:
        for item in range(count):
            slots[state["written"] % len(slots)] = item
            state["written"] += 1
            await hops(1)

    async def consumer() -> None:
        while state["read"] < count:
            while state["read"] < state["written"]:
                received.append(slots[state["read"] % len(slots)])
                state["read"] += 1
            await hops(1)  # poll again later

    await asyncio.gather(producer(), consumer())
    lost = sorted(set(range(count)) - set(received))
    assert not lost, f"buffer overrun: items {lost} were overwritten before they were read"


async def starved_releaser() -> None:
    """A waiter polls a flag 100 times and then gives up, assuming the releaser (four steps
    from setting it) got its turn by then. In stock order it does; a schedule that lets the
    waiter run 100 decisions ahead of the releaser starves it. Random scheduling almost never
    does; PCT demotes a task after 64 wins in a row (so polling loops cannot livelock), which
    breaks the starvation too."""
    state = {"released": False}

    async def releaser() -> None:
        await hops(4)
        state["released"] = True

    async def waiter() -> None:
        for _ in range(100):
            if state["released"]:
                return
            await asyncio.sleep(0)
        raise AssertionError("the waiter gave up after 100 polls: the releaser was starved")

    await asyncio.gather(waiter(), releaser())


async def fair_poller() -> None:
    """A poller that waits as long as it takes for a flag a setter sets after four steps:
    correct under any fair loop, so no schedule may report it (as a livelock or otherwise)."""
    state = {"set": False}

    async def setter() -> None:
        await hops(4)
        state["set"] = True

    async def poller() -> None:
        while not state["set"]:
            await asyncio.sleep(0)

    await asyncio.gather(poller(), setter())


#: Programs every policy finds within a few hundred runs, by name.
PROGRAMS: Dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "lost update": lost_update,
    "lock-order deadlock": lock_order_deadlock,
    "double init": double_init,
    "missed wakeup": missed_wakeup,
    "dirty cancel": dirty_cancel,
    "timeout tie": timeout_tie,
}

#: Programs that set the policies apart: PCT at depth 1 never finds "stale cache" (it needs
#: preemptions), and the bounded search never finds "buffer overrun" (it needs the consumer
#: delayed eight times) while random needs tens of runs and PCT one.
DEEP_PROGRAMS: Dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "stale cache": stale_cache,
    "buffer overrun": buffer_overrun,
}

#: Programs that need one task far ahead of another for many decisions in a row: only the
#: portfolio's PCT member that allows it finds them.
STARVATION_PROGRAMS: Dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "starved releaser": starved_releaser,
}
