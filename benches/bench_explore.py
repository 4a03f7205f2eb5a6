"""How fast exploration finds bugs, and what a run of it costs.

1. Runs to first failure: for every program of tests/buggy_programs.py (``PROGRAMS`` and
   ``DEEP_PROGRAMS``, ``STARVATION_PROGRAMS``) and every strategy,
   ``quiesce.explore`` is started from ``--seeds`` different base seeds (the bounded search is
   deterministic: one number), with up to ``--max-runs`` runs; the table gives the median and
   the worst number of runs to the first failure, and how many starts found it at all.
2. Cost per run: a small passing test (three tasks sharing a lock, about thirty callbacks) run
   1,000 times by ``quiesce.explore`` (random policy; a fresh loop per run), by stock
   ``asyncio.run`` and by ``quiesce.run``, interleaved, ``--reps`` repetitions; medians and the
   ratio to stock.

Usage::

    python benches/bench_explore.py [--seeds N] [--max-runs N] [--reps N]

The report (Markdown) goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from buggy_programs import DEEP_PROGRAMS, PROGRAMS, STARVATION_PROGRAMS

import quiesce

#: (label, explore keyword arguments)
STRATEGIES: List[Tuple[str, Dict[str, object]]] = [
    ("random", {"policy": "random"}),
    ("pct d=1", {"policy": "pct", "pct_depth": 1}),
    ("pct d=2", {"policy": "pct", "pct_depth": 2}),
    ("pct d=3", {"policy": "pct", "pct_depth": 3}),
    ("dfs (delays<=3)", {"policy": "dfs", "bound": 3}),
    ("auto", {"policy": "auto"}),
]


def runs_to_failure(program: Callable, options: Dict[str, object], seed: int, cap: int) -> int:
    """Runs until the first failure (``cap + 1`` if none was found)."""
    result = quiesce.explore(
        program,
        runs=cap,
        seed=seed,
        raise_on_failure=False,
        check_determinism=False,
        **options,  # type: ignore[arg-type]
    )
    return result.runs if result.failure is not None else cap + 1


def table_runs_to_failure(seeds: int, cap: int) -> List[str]:
    lines = [
        "| program | " + " | ".join(label for label, _ in STRATEGIES) + " |",
        "|---|" + "---:|" * len(STRATEGIES),
    ]
    for name, program in {**PROGRAMS, **DEEP_PROGRAMS, **STARVATION_PROGRAMS}.items():
        cells = []
        for _label, options in STRATEGIES:
            starts = 1 if options["policy"] == "dfs" else seeds
            counts = [runs_to_failure(program, options, 1000 * s, cap) for s in range(starts)]
            found = [c for c in counts if c <= cap]
            if not found:
                cells.append(f"not found in {cap}")
                continue
            median = statistics.median(counts)
            cell = f"{median:g} (worst {max(counts)})" if starts > 1 else f"{median:g}"
            if len(found) < starts:
                cell += f", found {len(found)}/{starts}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


async def small_test() -> None:
    lock = asyncio.Lock()
    total = {"value": 0}

    async def add() -> None:
        for _ in range(3):
            async with lock:
                current = total["value"]
                await asyncio.sleep(0)
                total["value"] = current + 1

    await asyncio.gather(add(), add(), add())
    assert total["value"] == 9


def time_explore(count: int) -> float:
    started = time.perf_counter()
    result = quiesce.explore(small_test, runs=count, policy="random", check_determinism=False)
    elapsed = time.perf_counter() - started
    assert result.ok and result.runs == count
    return elapsed


def time_plain(run: Callable, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        run(small_test())
    return time.perf_counter() - started


def table_cost(reps: int, count: int = 1000) -> List[str]:
    contenders: Dict[str, Callable[[], float]] = {
        "stock asyncio.run": lambda: time_plain(asyncio.run, count),
        "quiesce.run": lambda: time_plain(quiesce.run, count),
        "quiesce.explore (random)": lambda: time_explore(count),
    }
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            samples[name].append(contenders[name]())
    stock = statistics.median(samples["stock asyncio.run"])
    lines = [
        f"| {count:,} runs of a small test | median s | per run µs | ratio to stock |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        median = statistics.median(samples[name])
        lines.append(
            f"| {name} | {median:.3f} | {median / count * 1e6:.0f} | {median / stock:.2f} |"
        )
    return lines


def many_tasks(count: int) -> Callable[[], Any]:
    """A test of ``count`` tasks, each taking three turns: ``count`` runnable lanes at most
    decisions."""

    async def test() -> None:
        async def worker() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        await asyncio.gather(*(worker() for _ in range(count)))

    return test


def table_pct_cost(reps: int, sizes: Tuple[int, ...] = (100, 1000, 4000)) -> List[str]:
    """Per-run cost of PCT (depth 3) against random scheduling, by the number of tasks."""
    lines = [
        "| tasks | random ms per run | PCT ms per run | PCT / random |",
        "|---:|---:|---:|---:|",
    ]
    for size in sizes:
        test = many_tasks(size)
        runs = max(2, 2000 // size)
        samples: Dict[str, List[float]] = {"random": [], "pct": []}
        for rep in range(reps):
            for policy in ("random", "pct") if rep % 2 == 0 else ("pct", "random"):
                started = time.perf_counter()
                result = quiesce.explore(
                    test, runs=runs, policy=policy, seed=rep, check_determinism=False
                )
                samples[policy].append((time.perf_counter() - started) / runs)
                assert result.ok
        random_ms = statistics.median(samples["random"]) * 1e3
        pct_ms = statistics.median(samples["pct"]) * 1e3
        lines.append(f"| {size:,} | {random_ms:.1f} | {pct_ms:.1f} | {pct_ms / random_ms:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="base seeds per strategy")
    parser.add_argument("--max-runs", type=int, default=1000, help="runs per exploration")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the cost table")
    args = parser.parse_args()
    print(f"# Exploration: {platform.python_implementation()} {platform.python_version()}")
    print(f"\n{platform.machine()}, {platform.system()}; quiesce {quiesce.__version__}\n")
    print(
        f"## Runs to first failure (median over {args.seeds} base seeds, worst in brackets; "
        f"at most {args.max_runs} runs each)\n"
    )
    print("\n".join(table_runs_to_failure(args.seeds, args.max_runs)))
    print(f"\n## Cost per run (median of {args.reps} interleaved repetitions)\n")
    print("\n".join(table_cost(args.reps)))
    print(
        f"\n## PCT against random, by runnable tasks (median of {args.reps} interleaved "
        "repetitions; each task takes three turns)\n"
    )
    print("\n".join(table_pct_cost(args.reps)))


if __name__ == "__main__":
    main()
