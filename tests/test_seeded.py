"""``seed=N``: deterministic pseudo-random interleaving, keeping the orders asyncio relies on."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from typing import Any, Callable, List, Optional, Tuple

import pytest

import quiesce

SEEDS = list(range(20))

Log = List[Tuple[int, int]]


def interleaving(seed: Optional[int], tasks: int = 10, steps: int = 4) -> Log:
    """Ten tasks, each appending ``(id, i)`` around several ``sleep(0)`` steps."""
    loop = quiesce.Loop(seed=seed)
    try:
        log: Log = []

        async def worker(ident: int) -> None:
            for i in range(steps):
                log.append((ident, i))
                await asyncio.sleep(0)

        for ident in range(tasks):
            loop.create_task(worker(ident))
        loop.run_until_blocked()
        return log
    finally:
        loop.close()


def test_no_seed_is_fifo_like_stock() -> None:
    expected = [(ident, i) for i in range(4) for ident in range(10)]
    assert interleaving(None) == expected

    stock = asyncio.new_event_loop()
    try:
        log: Log = []

        async def worker(ident: int) -> None:
            for i in range(4):
                log.append((ident, i))
                await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(worker(ident) for ident in range(10)))

        stock.run_until_complete(main())
    finally:
        stock.close()
    assert log == expected


@pytest.mark.parametrize("seed", [0, 1, 42, 2**64 - 1])
def test_same_seed_same_interleaving(seed: int) -> None:
    first = interleaving(seed)
    assert interleaving(seed) == first
    assert interleaving(seed) == first


SCRIPT = """
import asyncio, json, sys
import quiesce

loop = quiesce.Loop(seed=int(sys.argv[1]))
log = []

async def worker(ident):
    for i in range(4):
        log.append((ident, i))
        await asyncio.sleep(0)

junk = [object() for _ in range(int(sys.argv[2]))]  # shifts object addresses
for ident in range(10):
    loop.create_task(worker(ident))
loop.run_until_blocked()
loop.close()
print(json.dumps(log))
"""


@pytest.mark.parametrize("seed", [3, 2**40 + 1])
def test_same_seed_same_interleaving_across_processes(seed: int) -> None:
    """Addresses and hash seeds differ between processes; the interleaving must not."""
    import json
    import os
    import subprocess
    import sys

    expected = [list(entry) for entry in interleaving(seed)]
    for hash_seed, junk in (("1", 0), ("2", 1000)):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(seed), str(junk)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == expected


def test_different_seeds_give_different_interleavings() -> None:
    runs = {seed: tuple(interleaving(seed)) for seed in SEEDS}
    assert len(set(runs.values())) == len(SEEDS)
    fifo = tuple(interleaving(None))
    assert sum(run == fifo for run in runs.values()) <= 1


@pytest.mark.parametrize("seed", SEEDS)
def test_each_task_runs_its_steps_in_order(seed: int) -> None:
    log = interleaving(seed)
    assert sorted(log) == [(ident, i) for ident in range(10) for i in range(4)]
    for ident in range(10):
        assert [i for who, i in log if who == ident] == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_done_callbacks_keep_registration_order(
    make_loop: Callable[..., quiesce.Loop], seed: int
) -> None:
    loop = make_loop(seed=seed)
    calls: List[Tuple[int, int]] = []
    futures = [loop.create_future() for _ in range(5)]
    for which, fut in enumerate(futures):
        for order in range(6):
            fut.add_done_callback(lambda _f, which=which, order=order: calls.append((which, order)))
    for fut in futures:
        fut.set_result(None)
    loop.run_until_blocked()
    assert len(calls) == 30
    for which in range(5):
        assert [order for w, order in calls if w == which] == list(range(6))


@pytest.mark.parametrize("seed", SEEDS)
def test_waiters_on_one_future_wake_in_registration_order(
    make_loop: Callable[..., quiesce.Loop], seed: int
) -> None:
    loop = make_loop(seed=seed)
    gate = loop.create_future()
    registered: List[int] = []
    woke: List[int] = []

    async def waiter(ident: int) -> None:
        registered.append(ident)  # the order in which the tasks start waiting is seeded
        await gate
        woke.append(ident)

    for ident in range(6):
        loop.create_task(waiter(ident))
    loop.run_until_blocked()
    assert sorted(registered) == list(range(6))
    gate.set_result(None)
    loop.run_until_blocked()
    assert woke == registered


class Recorder:
    def __init__(self, log: List[Any], value: Any) -> None:
        self.log = log
        self.value = value

    def __call__(self) -> None:
        self.log.append(self.value)

    def record(self) -> None:
        self.log.append(self.value)


@pytest.mark.parametrize("seed", SEEDS)
def test_plain_callbacks_stay_fifo_among_themselves(
    make_loop: Callable[..., quiesce.Loop], seed: int
) -> None:
    """Functions, lambdas, partials, bound methods, callable objects and builtins, with tasks
    running in between: plain ``call_soon`` callbacks keep their order under every seed."""
    loop = make_loop(seed=seed)
    plain: List[Any] = []
    other: List[Any] = []

    def function(value: int) -> None:
        plain.append(value)

    async def noise(ident: int) -> None:
        for _ in range(3):
            other.append(ident)
            await asyncio.sleep(0)

    for ident in range(5):
        loop.create_task(noise(ident))
    kinds: List[Callable[[int], Any]] = [
        lambda v: loop.call_soon(function, v),
        lambda v: loop.call_soon(lambda: plain.append(v)),
        lambda v: loop.call_soon(functools.partial(function, v)),
        lambda v: loop.call_soon(Recorder(plain, v).record),
        lambda v: loop.call_soon(Recorder(plain, v)),
        lambda v: loop.call_soon(plain.append, v),
    ]
    for value in range(60):
        kinds[value % len(kinds)](value)
    loop.run_until_blocked()
    assert plain == list(range(60))
    assert sorted(other) == sorted(list(range(5)) * 3)


@pytest.mark.parametrize("argument", ["pending future", "done future", "done task"])
def test_plain_callbacks_taking_a_future_stay_fifo(argument: str) -> None:
    """A user's ``call_soon(callback, fut)`` is a plain call_soon callback (neither a task step
    nor a done-callback of ``fut``), so it keeps FIFO order among plain callbacks, whatever the
    state of the future it is given."""
    reordered = {}
    for seed in SEEDS:
        loop = quiesce.Loop(seed=seed)
        try:
            order: List[int] = []
            if argument == "done task":
                futures: List[Any] = [loop.create_task(asyncio.sleep(0)) for _ in range(8)]
                loop.run_until_blocked()
            else:
                futures = [loop.create_future() for _ in range(8)]
                if argument.startswith("done future"):
                    for fut in futures:
                        fut.set_result(None)
                    loop.run_until_blocked()

            def note(fut: Any, futures: List[Any] = futures, order: List[int] = order) -> None:
                order.append(futures.index(fut))

            for fut in futures:
                loop.call_soon(note, fut)
            loop.run_until_blocked()
            if order != list(range(8)):
                reordered[seed] = order
        finally:
            loop.close()
    assert reordered == {}


class _Tagged:
    """A callback that records its tag, taking the future as its one argument."""

    def __init__(self, order: List[Tuple[int, int]], tag: Tuple[int, int]) -> None:
        self.order = order
        self.tag = tag

    def __call__(self, _fut: Any) -> None:
        self.order.append(self.tag)


def test_explicit_context_with_a_done_future_counts_as_its_done_callback() -> None:
    """Documented limit: ``call_soon(cb, done_future, context=ctx)`` is exactly how a future
    schedules its own done-callbacks, so quiesce treats it as one. Callbacks for the same
    future keep their order; callbacks for different futures may be reordered by a seed."""
    orders = set()
    for seed in SEEDS:
        loop = quiesce.Loop(seed=seed)
        try:
            futures = [loop.create_future() for _ in range(8)]
            for fut in futures:
                fut.set_result(None)
            loop.run_until_blocked()
            order: List[Tuple[int, int]] = []
            for round_ in range(2):
                for index, fut in enumerate(futures):
                    tagged = _Tagged(order, (index, round_))
                    loop.call_soon(tagged, fut, context=contextvars.copy_context())
            loop.run_until_blocked()
            for index in range(8):
                assert [r for i, r in order if i == index] == [0, 1]
            orders.add(tuple(order))
        finally:
            loop.close()
    assert len(orders) > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_runs_reach_the_same_final_state(
    make_loop: Callable[..., quiesce.Loop], seed: int
) -> None:
    """Reordering must not lose or duplicate work: a producer/consumer pipeline still delivers
    every item in order through a queue."""
    loop = make_loop(seed=seed)

    async def pipeline() -> List[int]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        received: List[int] = []

        async def producer() -> None:
            for i in range(50):
                await queue.put(i)
                if i % 7 == 0:
                    await asyncio.sleep(0)

        async def consumer() -> None:
            while len(received) < 50:
                received.append(await queue.get())

        await asyncio.gather(consumer(), producer())
        return received

    assert loop.run_until_complete(pipeline()) == list(range(50))


def test_seed_determinism_with_timers_locks_and_gather() -> None:
    def scenario(seed: int) -> List[str]:
        loop = quiesce.Loop(seed=seed)
        try:
            trace: List[str] = []

            async def worker(name: str, lock: asyncio.Lock) -> None:
                for i in range(3):
                    async with lock:
                        trace.append(f"{name}{i}+")
                        await asyncio.sleep(0)
                        trace.append(f"{name}{i}-")
                    await asyncio.sleep(0.5 if i == 1 else 0)

            async def main() -> None:
                lock = asyncio.Lock()
                await asyncio.gather(*(worker(name, lock) for name in "abcd"))

            loop.run_until_complete(main())
            return trace
        finally:
            loop.close()

    traces = [scenario(seed) for seed in (5, 6, 7)]
    assert [scenario(seed) for seed in (5, 6, 7)] == traces
    assert len({tuple(trace) for trace in traces}) > 1
    for trace in traces:  # the lock still excludes
        for enter, leave in zip(trace[::2], trace[1::2]):
            assert enter.endswith("+") and leave == enter[:-1] + "-"


def wake_order(seed: int) -> List[int]:
    loop = quiesce.Loop(seed=seed)
    try:
        woke: List[int] = []

        async def sleeper(delay: int) -> None:
            await asyncio.sleep(delay)
            woke.append(delay)

        async def main() -> None:
            await asyncio.gather(*(sleeper(d) for d in (4, 1, 3, 2, 5)))

        loop.run_until_complete(main())
        return woke
    finally:
        loop.close()


def test_timers_fire_in_time_order_under_any_seed() -> None:
    assert {seed: wake_order(seed) for seed in SEEDS} == {seed: [1, 2, 3, 4, 5] for seed in SEEDS}
