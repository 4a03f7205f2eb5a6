"""Interleaved event-loop benchmarks: stock asyncio vs uvloop vs rloop vs quiesce.

Every workload is run for every available loop in the same process, interleaved: for each
workload and each repetition, each loop runs once, and the loop order is rotated on every
repetition so that slow drift (thermal, caches, noisy neighbours) is spread evenly. Each run
gets a fresh loop; only ``loop.run_until_complete(...)`` (or the calls being measured) is timed
with ``time.perf_counter()``. Setup, verification, ``loop.close()`` and ``gc.collect()`` are not
timed. Every run verifies its own result and raises ``VerificationError`` if it is wrong.

Usage::

    python benches/bench_loops.py [--runs N] [--only NAME,...] [--quick] [--json FILE]

Only the standard library is needed; uvloop, rloop and quiesce are used when importable. The report
(Markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Workload sizes (full run). ``--quick`` divides every count by QUICK_SCALE.
CALL_SOON_N = 1_000_000
SLEEP0_TASKS = 1_000
SLEEP0_ITERS = 1_000
QUEUE_MESSAGES_EACH_WAY = 100_000
TIMERS_N = 100_000
TIMERS_MAX_DELAY = 0.010
TIMERS_SEED = 1234
# A timer may not fire before its deadline. uvloop's clock has 1 ms granularity and it rounds
# delays to whole milliseconds (so a timer can run up to 0.5 ms "early" by loop.time()).
TIMERS_TOLERANCE = 0.001
EVENT_WAITERS = 10_000
EVENT_ROUNDS = 20
BLOCKED_TASK_COUNTS = (1_000, 10_000, 100_000)
BLOCKED_NATIVE_CALLS = 1_000
BLOCKED_WORKAROUND_CALLS = 20
SLEEPY_TASKS = 200
SLEEPY_ITERS = 60
SLEEPY_DELAY = 60.0

DEFAULT_RUNS = 5
QUICK_RUNS = 3
QUICK_SCALE = 10
BASELINE = "asyncio"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
BenchFunc = Callable[[asyncio.AbstractEventLoop, int], float]


class VerificationError(RuntimeError):
    """A benchmark run produced a wrong result (the timing is meaningless)."""


def _check(condition: bool, message: str) -> None:
    """Raise VerificationError unless ``condition`` holds (unlike ``assert``, survives -O)."""
    if not condition:
        raise VerificationError(message)


def _scaled(count: int, scale: int) -> int:
    """Return ``count`` divided by ``scale``, at least 1."""
    return max(1, count // scale)


# --------------------------------------------------------------------------------------------
# Loops
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopSpec:
    """A named event-loop factory."""

    name: str
    factory: LoopFactory
    native_blocked: bool = False  # has its own loop.run_until_blocked()


def _probe(name: str, factory: LoopFactory) -> LoopSpec:
    """Build one loop to check the factory works and whether it has ``run_until_blocked``."""
    loop = factory()
    try:
        return LoopSpec(name, factory, native_blocked=has_native_blocked(loop))
    finally:
        loop.close()


def discover_loops() -> tuple[list[LoopSpec], list[tuple[str, str]]]:
    """Return the usable loops (baseline first) and the skipped ones with the reason."""
    loops = [_probe(BASELINE, asyncio.SelectorEventLoop)]
    skipped: list[tuple[str, str]] = []

    try:
        import uvloop
    except ImportError as exc:
        skipped.append(("uvloop", f"not importable ({exc})"))
    else:
        loops.append(_probe("uvloop", uvloop.new_event_loop))

    try:
        import rloop  # the fastest native loop measured here (Rust, no determinism)
    except ImportError as exc:
        skipped.append(("rloop", f"not importable ({exc})"))
    else:
        loops.append(_probe("rloop", rloop.new_event_loop))

    try:
        import quiesce
    except ImportError as exc:
        for clock in ("virtual", "real"):
            skipped.append((f"quiesce-{clock}", f"not importable ({exc})"))
    else:
        for clock in ("virtual", "real"):
            name = f"quiesce-{clock}"
            try:
                loops.append(_probe(name, functools.partial(quiesce.Loop, clock=clock)))
            except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
                skipped.append((name, f"quiesce.Loop(clock={clock!r}) failed: {exc!r}"))
    return loops, skipped


# --------------------------------------------------------------------------------------------
# Workloads: each takes a fresh loop and a scale divisor, verifies, returns elapsed seconds.
# --------------------------------------------------------------------------------------------


def bench_call_soon(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """A plain callback reschedules itself with ``call_soon`` N times, then sets a future."""
    n = _scaled(CALL_SOON_N, scale)
    calls = 0

    async def main() -> int:
        fut = loop.create_future()

        def step() -> None:
            nonlocal calls
            calls += 1
            if calls < n:
                loop.call_soon(step)
            else:
                fut.set_result(calls)

        loop.call_soon(step)
        return await fut

    start = time.perf_counter()
    result = loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    _check(result == n and calls == n, f"call_soon: expected {n} calls, got {calls}/{result}")
    return elapsed


def bench_sleep0(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """Many tasks, each doing many ``await asyncio.sleep(0)``."""
    n_tasks = _scaled(SLEEP0_TASKS, scale)
    n_iters = _scaled(SLEEP0_ITERS, scale)

    async def worker() -> int:
        done = 0
        for _ in range(n_iters):
            await asyncio.sleep(0)
            done += 1
        return done

    async def main() -> list[int]:
        return await asyncio.gather(*[worker() for _ in range(n_tasks)])

    start = time.perf_counter()
    counts = loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    _check(
        len(counts) == n_tasks and all(c == n_iters for c in counts),
        f"sleep0: expected {n_tasks} tasks x {n_iters} sleeps, got {sum(counts)} sleeps",
    )
    return elapsed


def bench_queue(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """Ping-pong between two tasks over two ``asyncio.Queue`` objects."""
    n = _scaled(QUEUE_MESSAGES_EACH_WAY, scale)

    async def main() -> tuple[int, int]:
        pings: asyncio.Queue[int] = asyncio.Queue()
        pongs: asyncio.Queue[int] = asyncio.Queue()

        async def pinger() -> int:
            ok = 0
            for i in range(n):
                await pings.put(i)
                ok += (await pongs.get()) == i
            await pings.put(-1)
            return ok

        async def ponger() -> int:
            echoed = 0
            while True:
                msg = await pings.get()
                if msg < 0:
                    return echoed
                await pongs.put(msg)
                echoed += 1

        ok, echoed = await asyncio.gather(pinger(), ponger())
        return ok, echoed

    start = time.perf_counter()
    ok, echoed = loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    _check(ok == n and echoed == n, f"queue: expected {n} round trips, got {ok} ok/{echoed}")
    return elapsed


def bench_timers(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """``call_later`` timers with random delays, half cancelled; wait for the rest to fire."""
    n = _scaled(TIMERS_N, scale)
    rng = random.Random(TIMERS_SEED)
    delays = [rng.uniform(0.0, TIMERS_MAX_DELAY) for _ in range(n)]
    expected = sum(1 for i in range(n) if i % 2 == 0)
    fired = 0
    cancelled_fired = 0
    early = 0

    async def main() -> None:
        done = loop.create_future()

        def on_timer(index: int, due: float) -> None:
            nonlocal fired, cancelled_fired, early
            if loop.time() < due - TIMERS_TOLERANCE:
                early += 1
            if index % 2:
                cancelled_fired += 1
                return
            fired += 1
            if fired == expected:
                done.set_result(None)

        t0 = loop.time()
        for i, delay in enumerate(delays):
            handle = loop.call_later(delay, on_timer, i, t0 + delay)
            if i % 2:
                handle.cancel()
        await done

    start = time.perf_counter()
    loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    # Untimed: run past the largest delay so a cancelled timer that would fire late is caught.
    loop.run_until_complete(asyncio.sleep(2 * TIMERS_MAX_DELAY))
    _check(fired == expected, f"timers: expected {expected} to fire, {fired} fired")
    _check(cancelled_fired == 0, f"timers: {cancelled_fired} cancelled timers fired")
    _check(early == 0, f"timers: {early} timers fired before their deadline")
    return elapsed


def bench_event(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """Event fan-out: N waiter tasks stay parked on one ``asyncio.Event`` across R rounds; each
    round, one ``set()`` wakes all of them (then ``clear()``, so each wakes once per round)."""
    n = _scaled(EVENT_WAITERS, scale)
    rounds = _scaled(EVENT_ROUNDS, scale)
    woken = 0

    async def main() -> list[int]:
        event = asyncio.Event()
        round_done = loop.create_future()

        async def waiter() -> int:
            nonlocal woken
            for r in range(rounds):
                await event.wait()
                woken += 1
                if woken == (r + 1) * n:
                    round_done.set_result(r)
            return rounds

        tasks = [loop.create_task(waiter()) for _ in range(n)]
        await asyncio.sleep(0)  # every waiter is now parked on the event
        for r in range(rounds):
            _check(woken == r * n, f"event: round {r}: {woken - r * n} woke before set()")
            round_done = loop.create_future()
            event.set()
            event.clear()  # the waiters already woken still run; none wakes twice
            _check((await round_done) == r, f"event: round {r} completed out of order")
            # The last waiter woke: all are parked again (each re-waits in the step it woke in).
            _check(woken == (r + 1) * n, f"event: round {r}: {woken - r * n} of {n} woke")
        return await asyncio.gather(*tasks)

    start = time.perf_counter()
    counts = loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    _check(counts == [rounds] * n, "event: a waiter did not see every round")
    _check(woken == rounds * n, f"event: expected {rounds * n} wake-ups, got {woken}")
    return elapsed


def bench_event_fresh(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """Event fan-out with fresh tasks: every round creates N new tasks that wait on one
    ``asyncio.Event``, sets it, and gathers them (task creation and ``gather`` dominate)."""
    n = _scaled(EVENT_WAITERS, scale)
    rounds = _scaled(EVENT_ROUNDS, scale)
    woken = 0

    async def main() -> None:
        nonlocal woken
        event = asyncio.Event()

        async def waiter() -> None:
            nonlocal woken
            await event.wait()
            woken += 1

        for r in range(rounds):
            tasks = [loop.create_task(waiter()) for _ in range(n)]
            await asyncio.sleep(0)  # every waiter is now parked on the event
            _check(woken == r * n, f"event_fresh: round {r}: {woken - r * n} woke before set()")
            event.set()
            await asyncio.gather(*tasks)
            event.clear()

    start = time.perf_counter()
    loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    _check(woken == rounds * n, f"event_fresh: expected {rounds * n} wake-ups, got {woken}")
    return elapsed


def _task_is_unblocked(task: asyncio.Task[Any]) -> bool:
    """The workaround's predicate: a task is runnable unless it awaits a pending future."""
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    return waiter is None or waiter.done()


def stock_run_until_blocked(loop: asyncio.AbstractEventLoop) -> int:
    """Best-known stock-asyncio workaround for "run until every task is blocked".

    Call from sync code (loop not running). Runs one loop iteration at a time until no task
    of ``loop`` is runnable; returns the number of iterations it needed.
    """
    passes = 0
    while True:
        loop.call_soon(loop.stop)
        loop.run_forever()
        passes += 1
        if not any(_task_is_unblocked(t) for t in asyncio.all_tasks(loop)):
            return passes


def has_native_blocked(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` has its own ``run_until_blocked()`` (quiesce does)."""
    return callable(getattr(loop, "run_until_blocked", None))


def bench_blocked(loop: asyncio.AbstractEventLoop, scale: int, n_tasks: int) -> float:
    """Latency of "is everything blocked?" with many tasks parked on a never-set Event.

    Loops with a native ``loop.run_until_blocked()`` (quiesce) are timed on it, others on
    ``stock_run_until_blocked``. Returns seconds per call.
    """
    n = _scaled(n_tasks, scale)
    native = has_native_blocked(loop)
    calls = _scaled(BLOCKED_NATIVE_CALLS if native else BLOCKED_WORKAROUND_CALLS, scale)

    async def spawn() -> tuple[asyncio.Event, list[asyncio.Task[Any]]]:
        event = asyncio.Event()
        tasks = [loop.create_task(event.wait()) for _ in range(n)]
        await asyncio.sleep(0)
        return event, tasks

    async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    event, tasks = loop.run_until_complete(spawn())
    try:
        # Settle (untimed), then time `calls` calls with nothing runnable.
        if native:
            loop.run_until_blocked()  # type: ignore[attr-defined]
            start = time.perf_counter()
            for _ in range(calls):
                loop.run_until_blocked()  # type: ignore[attr-defined]
            elapsed = time.perf_counter() - start
        else:
            stock_run_until_blocked(loop)
            extra_passes = 0
            start = time.perf_counter()
            for _ in range(calls):
                extra_passes += stock_run_until_blocked(loop) - 1
            elapsed = time.perf_counter() - start
            _check(extra_passes == 0, f"blocked: workaround needed {extra_passes} extra passes")
        pending = asyncio.all_tasks(loop)
        _check(len(pending) == n, f"blocked: {len(pending)} tasks pending, expected {n}")
        unblocked = sum(1 for t in pending if _task_is_unblocked(t))
        _check(unblocked == 0, f"blocked: {unblocked} tasks not blocked")
        _check(not event.is_set(), "blocked: event was set")
        finished = sum(1 for t in tasks if t.done())
        _check(finished == 0, f"blocked: {finished} tasks finished while blocked")
    finally:
        loop.run_until_complete(cancel_all(tasks))
    not_cancelled = sum(1 for t in tasks if not t.cancelled())
    _check(not_cancelled == 0, f"blocked: {not_cancelled} tasks not cancelled in cleanup")
    return elapsed / calls


def bench_sleepy(loop: asyncio.AbstractEventLoop, scale: int) -> float:
    """Many tasks each sleeping 60 s many times: only sensible on a virtual clock."""
    n_tasks = _scaled(SLEEPY_TASKS, scale)
    n_iters = _scaled(SLEEPY_ITERS, scale)

    async def worker() -> int:
        done = 0
        for _ in range(n_iters):
            await asyncio.sleep(SLEEPY_DELAY)
            done += 1
        return done

    async def main() -> list[int]:
        return await asyncio.gather(*[worker() for _ in range(n_tasks)])

    t0 = loop.time()
    start = time.perf_counter()
    counts = loop.run_until_complete(main())
    elapsed = time.perf_counter() - start
    advanced = loop.time() - t0
    _check(
        len(counts) == n_tasks and all(c == n_iters for c in counts),
        f"sleepy: expected {n_tasks} tasks x {n_iters} sleeps, got {sum(counts)} sleeps",
    )
    _check(
        advanced >= n_iters * SLEEPY_DELAY,
        f"sleepy: loop clock advanced {advanced:.1f} s, expected >= {n_iters * SLEEPY_DELAY} s",
    )
    return elapsed


# --------------------------------------------------------------------------------------------
# Registry and runner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A registered workload; ``name`` is what ``--only`` selects."""

    name: str
    label: str
    func: BenchFunc
    counts: tuple[int, ...] = ()  # sizes shown in the label (before scaling)
    per_call: bool = False  # result is seconds per call, reported in microseconds
    only_loops: frozenset[str] | None = None
    skip_note: str = ""

    def display(self, scale: int) -> str:
        """The label with the scaled ``counts`` filled in."""
        return self.label.format(*(_scaled(c, scale) for c in self.counts))

    def applies_to(self, loop_name: str) -> bool:
        """Whether this workload runs on the loop called ``loop_name``."""
        return self.only_loops is None or loop_name in self.only_loops


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "call_soon", "call_soon: {:,} self-rescheduled callbacks", bench_call_soon, (CALL_SOON_N,)
    ),
    Workload(
        "sleep0",
        "sleep0: {:,} tasks x {:,} sleep(0)",
        bench_sleep0,
        (SLEEP0_TASKS, SLEEP0_ITERS),
    ),
    Workload(
        "queue",
        "queue: {:,} ping-pongs over 2 Queues",
        bench_queue,
        (QUEUE_MESSAGES_EACH_WAY,),
    ),
    Workload("timers", "timers: {:,} call_later, half cancelled", bench_timers, (TIMERS_N,)),
    Workload(
        "event",
        "event: {:,} parked waiters x {:,} set() rounds",
        bench_event,
        (EVENT_WAITERS, EVENT_ROUNDS),
    ),
    Workload(
        "event_fresh",
        "event_fresh: {:,} fresh tasks per round x {:,} rounds",
        bench_event_fresh,
        (EVENT_WAITERS, EVENT_ROUNDS),
    ),
    *(
        Workload(
            "blocked",
            "blocked: {:,} tasks",
            functools.partial(bench_blocked, n_tasks=n),
            (n,),
            per_call=True,
        )
        for n in BLOCKED_TASK_COUNTS
    ),
    Workload(
        "sleepy",
        "sleepy: {:,} tasks x {:,} sleep(60)",
        bench_sleepy,
        (SLEEPY_TASKS, SLEEPY_ITERS),
        only_loops=frozenset({"quiesce-virtual"}),
        skip_note="sleepy runs only on quiesce-virtual (full size: 1 hour per run on a real clock)",
    ),
)


@dataclass
class Result:
    """All samples of one workload on one loop."""

    workload: Workload
    loop: str
    samples: list[float]

    @property
    def median(self) -> float:
        """Median sample."""
        return statistics.median(self.samples)


def run_once(spec: LoopSpec, workload: Workload, scale: int) -> float:
    """Run ``workload`` once on a fresh loop from ``spec``; close it and collect garbage."""
    loop = spec.factory()
    asyncio.set_event_loop(loop)
    try:
        return workload.func(loop, scale)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        gc.collect()


def run_benchmarks(
    loops: list[LoopSpec], workloads: list[Workload], runs: int, scale: int
) -> list[Result]:
    """Run every workload ``runs`` times on every applicable loop, interleaved and rotated."""
    results: list[Result] = []
    for workload in workloads:
        eligible = [spec for spec in loops if workload.applies_to(spec.name)]
        if not eligible:
            continue
        samples: dict[str, list[float]] = {spec.name: [] for spec in eligible}
        for k in range(runs):
            shift = k % len(eligible)
            for spec in eligible[shift:] + eligible[:shift]:
                elapsed = run_once(spec, workload, scale)
                samples[spec.name].append(elapsed)
                shown = f"{elapsed * 1e6:.1f} us/call" if workload.per_call else f"{elapsed:.4f} s"
                print(
                    f"  {workload.display(scale):<44} run {k + 1}/{runs}  {spec.name:<16} {shown}",
                    file=sys.stderr,
                    flush=True,
                )
        results.extend(Result(workload, spec.name, samples[spec.name]) for spec in eligible)
    return results


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    """Format with about three significant digits and no exponent."""
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _ratio(result: Result, baseline: Result | None) -> str:
    if baseline is None or baseline.median == 0:
        return "n/a"
    return f"{_fmt(result.median / baseline.median)}x"


def _baselines(results: list[Result]) -> dict[Workload, Result]:
    return {r.workload: r for r in results if r.loop == BASELINE}


def render_markdown(
    results: list[Result],
    loops: list[LoopSpec],
    skipped: list[tuple[str, str]],
    workloads: list[Workload],
    runs: int,
    scale: int,
) -> str:
    """Render the environment, the per-run seconds table and the per-call latency table."""
    lines = [
        "# quiesce event-loop benchmarks",
        "",
        f"- Python: {platform.python_implementation()} {sys.version.split()[0]}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs",
        f"- Runs per workload and loop: {runs} (interleaved, loop order rotated per run)"
        + (f"; --quick: counts divided by {scale}" if scale != 1 else ""),
        f"- Loops: {', '.join(spec.name for spec in loops)}",
    ]
    for name, reason in skipped:
        lines.append(f"- Skipped loop {name}: {reason}")
    baselines = _baselines(results)

    seconds = [r for r in results if not r.workload.per_call]
    if seconds:
        lines += [
            "",
            "## Wall time per run (seconds)",
            "",
            f"| workload | loop | median s | min-max s | vs {BASELINE} |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for r in seconds:
            lines.append(
                f"| {r.workload.display(scale)} | {r.loop} | {_fmt(r.median)} | "
                f"{_fmt(min(r.samples))}-{_fmt(max(r.samples))} | "
                f"{_ratio(r, baselines.get(r.workload))} |"
            )

    per_call = [r for r in results if r.workload.per_call]
    if per_call:
        lines += [
            "",
            "## Blocked-check latency (microseconds per call)",
            "",
            (
                "quiesce: native `loop.run_until_blocked()`; others: `call_soon(stop)` + "
                "`run_forever()` + scan of `asyncio.all_tasks()` for runnable tasks."
            ),
            "",
            f"| tasks | loop | method | calls timed | median µs | min-max µs | vs {BASELINE} |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        native_loops = {spec.name for spec in loops if spec.native_blocked}
        for r in per_call:
            native = r.loop in native_loops
            calls = _scaled(BLOCKED_NATIVE_CALLS if native else BLOCKED_WORKAROUND_CALLS, scale)
            lines.append(
                f"| {_scaled(r.workload.counts[0], scale):,} | {r.loop} | "
                f"{'native' if native else 'workaround'} | {calls:,} | "
                f"{_fmt(r.median * 1e6)} | "
                f"{_fmt(min(r.samples) * 1e6)}-{_fmt(max(r.samples) * 1e6)} | "
                f"{_ratio(r, baselines.get(r.workload))} |"
            )

    notes = []
    loop_names = {spec.name for spec in loops}
    for workload in workloads:
        if workload.skip_note and any(not workload.applies_to(n) for n in loop_names):
            notes.append(f"- {workload.skip_note}")
            if not any(workload.applies_to(n) for n in loop_names):
                notes.append(f"- {workload.name}: no applicable loop available, not run.")
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def results_to_json(
    results: list[Result],
    loops: list[LoopSpec],
    skipped: list[tuple[str, str]],
    runs: int,
    scale: int,
) -> dict[str, Any]:
    """Return a JSON-serialisable dict with the environment and every sample."""
    baselines = _baselines(results)
    rows = []
    for r in results:
        base = baselines.get(r.workload)
        rows.append(
            {
                "workload": r.workload.name,
                "label": r.workload.display(scale),
                "loop": r.loop,
                "unit": "seconds_per_call" if r.workload.per_call else "seconds",
                "samples": r.samples,
                "median": r.median,
                "min": min(r.samples),
                "max": max(r.samples),
                "ratio_to_baseline": (r.median / base.median) if base and base.median else None,
            }
        )
    return {
        "python": sys.version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "scale": scale,
        "loops": [spec.name for spec in loops],
        "skipped": dict(skipped),
        "results": rows,
    }


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    names = sorted({w.name for w in WORKLOADS})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"repetitions per workload and loop (default {DEFAULT_RUNS}; {QUICK_RUNS} if --quick)",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated workloads to run: {', '.join(names)}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: divide every count by {QUICK_SCALE}",
    )
    parser.add_argument("--json", metavar="FILE", help="also write all samples as JSON to FILE")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = QUICK_RUNS if args.quick else DEFAULT_RUNS
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    args.only = wanted
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the selected workloads and print the Markdown report."""
    args = parse_args(argv)
    scale = QUICK_SCALE if args.quick else 1
    workloads = [w for w in WORKLOADS if not args.only or w.name in args.only]
    loops, skipped = discover_loops()
    for name, reason in skipped:
        print(f"skipping loop {name}: {reason}", file=sys.stderr)
    results = run_benchmarks(loops, workloads, args.runs, scale)
    sys.stdout.write(render_markdown(results, loops, skipped, workloads, args.runs, scale))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results_to_json(results, loops, skipped, args.runs, scale), fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
