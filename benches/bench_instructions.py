"""Instructions per operation under callgrind: repeatable where wall-clock time is not.

Runs one workload twice under ``valgrind --tool=callgrind`` (sizes N and 2N, in fresh
processes) and divides the difference in executed instructions by N, so interpreter start-up,
imports and loop construction cancel out. What is left is the cost of one operation: one
callback of a ``call_soon`` chain, one task step of ``sleep(0)``, one message each way through
two queues, one ``Event`` wake-up, one timer.

Usage::

    python benches/bench_instructions.py [--loops asyncio,quiesce] [--only call_soon,...] [-n N]
    python benches/bench_instructions.py --run WORKLOAD LOOP N   # one run (what callgrind runs)

Needs valgrind on PATH. Prints a Markdown table (benches/results/instructions-cpXY.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable

# As many tasks and waiters as bench_loops.py uses, so that as many handles are pending at once
# (which decides how often the cyclic GC runs).
TASKS = 1_000  # sleep0: tasks sharing the N steps
WAITERS = 10_000  # event: waiters woken per round


def make_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop by bench name."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop

        return rloop.new_event_loop()
    import quiesce

    return quiesce.Loop(clock="real" if name == "quiesce-real" else "virtual")


def call_soon(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """A chain of ``n`` callbacks, each scheduling the next."""
    left = n

    def step() -> None:
        nonlocal left
        left -= 1
        if left:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    loop.run_forever()
    assert left == 0


def sleep0(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """``TASKS`` tasks sharing ``n`` ``await asyncio.sleep(0)`` steps."""
    each = n // TASKS

    async def worker() -> int:
        for _ in range(each):
            await asyncio.sleep(0)
        return each

    async def main() -> list[int]:
        return await asyncio.gather(*[worker() for _ in range(TASKS)])

    assert loop.run_until_complete(main()) == [each] * TASKS


def queue(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """``n`` ping-pongs between two tasks over two queues."""

    async def main() -> int:
        pings: asyncio.Queue[int] = asyncio.Queue()
        pongs: asyncio.Queue[int] = asyncio.Queue()

        async def ponger() -> None:
            while (msg := await pings.get()) >= 0:
                await pongs.put(msg)

        task = loop.create_task(ponger())
        ok = 0
        for i in range(n):
            await pings.put(i)
            ok += (await pongs.get()) == i
        await pings.put(-1)
        await task
        return ok

    assert loop.run_until_complete(main()) == n


def event(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """``WAITERS`` persistent waiters; ``n // WAITERS`` rounds of one ``set()`` waking all."""
    rounds = n // WAITERS
    woken = 0

    async def main() -> None:
        ev = asyncio.Event()
        round_done: asyncio.Future[None] = loop.create_future()

        async def waiter() -> None:
            nonlocal woken
            for r in range(rounds):
                await ev.wait()
                woken += 1
                if woken == (r + 1) * WAITERS:
                    round_done.set_result(None)

        tasks = [loop.create_task(waiter()) for _ in range(WAITERS)]
        await asyncio.sleep(0)
        for _ in range(rounds):
            round_done = loop.create_future()
            ev.set()
            ev.clear()
            await round_done
        await asyncio.gather(*tasks)

    loop.run_until_complete(main())
    assert woken == rounds * WAITERS


def event_fresh(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """``n // WAITERS`` rounds of ``WAITERS`` fresh tasks waiting on an Event, then gathered."""
    rounds = n // WAITERS

    async def main() -> None:
        ev = asyncio.Event()
        for _ in range(rounds):
            tasks = [loop.create_task(ev.wait()) for _ in range(WAITERS)]
            await asyncio.sleep(0)
            ev.set()
            await asyncio.gather(*tasks)
            ev.clear()

    loop.run_until_complete(main())


def timers(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """``n`` ``call_later`` timers within 1 ms, every other one cancelled."""
    fired = 0

    def on_timer() -> None:
        nonlocal fired
        fired += 1

    async def main() -> None:
        for i in range(n):
            handle = loop.call_later(0.001 * i / n, on_timer)
            if i % 2:
                handle.cancel()
        await asyncio.sleep(0.002)

    loop.run_until_complete(main())
    assert fired == (n + 1) // 2


WORKLOADS: dict[str, tuple[Callable[[asyncio.AbstractEventLoop, int], None], int, str]] = {
    "call_soon": (call_soon, 100_000, "callback"),
    "sleep0": (sleep0, 100_000, "task step"),
    "queue": (queue, 10_000, "round trip"),
    "event": (event, 20_000, "wake-up"),
    "event_fresh": (event_fresh, 20_000, "task (create, wait, wake, gather)"),
    "timers": (timers, 50_000, "timer"),
}
LOOPS = ("asyncio", "uvloop", "rloop", "quiesce", "quiesce-real")


def run_one(workload: str, loop_name: str, n: int) -> None:
    """One run, as callgrind executes it."""
    loop = make_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        WORKLOADS[workload][0](loop, n)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def instructions(workload: str, loop_name: str, n: int) -> int:
    """Instructions executed by one run of ``n`` operations under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, os.path.abspath(__file__), "--run", workload, loop_name, str(n)]
        # A fixed hash seed: str hashes (and so dict layouts and probe counts) are the same in
        # every run, which keeps the counts repeatable to a few instructions.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{workload}/{loop_name} failed:\n{result.stderr[-3000:]}")
        match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count in callgrind output:\n{result.stderr}")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    """Prints instructions per operation for each workload and loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, metavar=("WORKLOAD", "LOOP", "N"))
    parser.add_argument("--loops", default="asyncio,quiesce")
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("-n", type=int, default=None, help="operations (default per workload)")
    args = parser.parse_args(argv)
    if args.run:
        run_one(args.run[0], args.run[1], int(args.run[2]))
        return 0
    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    print(f"Python {sys.version.split()[0]}; instructions per operation (callgrind, 2N - N)\n")
    print("| workload | unit | N | " + " | ".join(loops) + " |")
    print("| --- | --- | ---: |" + " ---: |" * len(loops))
    for workload in [name.strip() for name in args.only.split(",") if name.strip()]:
        _, default_n, unit = WORKLOADS[workload]
        n = args.n or default_n
        cells = []
        for loop_name in loops:
            per_op = (
                instructions(workload, loop_name, 2 * n) - instructions(workload, loop_name, n)
            ) / n
            cells.append(f"{per_op:,.0f}")
        print(f"| {workload} | {unit} | {n:,} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
