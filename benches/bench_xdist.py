"""Throughput of one exploration spread over pytest-xdist workers.

Writes a test module with one explored test (``--tasks`` tasks sharing an ``asyncio.Lock`` and a
``Queue``; it passes, so every run is made) marked ``@pytest.mark.quiesce(runs=--runs)``, and
runs ``pytest`` on it with ``-n 0`` and with ``-n 2`` (and any ``--workers`` given),
interleaved, ``--reps`` times. Reports the wall time of each pytest process (start-up and
worker start included), runs per second, and the ratio to ``-n 0``.

Usage::

    python benches/bench_xdist.py [--runs 10000] [--tasks 100] [--reps 3] [--workers 0 2]

Needs pytest-xdist (in the test requirements). The report (Markdown) goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List

TEST = """
import asyncio, pytest

@pytest.mark.quiesce(runs={runs})
async def test_many_tasks():
    lock = asyncio.Lock()
    queue = asyncio.Queue()
    total = 0

    async def worker(number):
        nonlocal total
        async with lock:
            await asyncio.sleep(0)
            total += number
        await queue.put(number)

    await asyncio.gather(*(worker(n) for n in range({tasks})))
    assert queue.qsize() == {tasks} and total == sum(range({tasks}))
"""


def main() -> None:
    """Runs the benchmark and prints the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="quiesce-bench-xdist-"))
    (directory / "test_many.py").write_text(
        textwrap.dedent(TEST.format(runs=options.runs, tasks=options.tasks))
    )
    times: Dict[int, List[float]] = {workers: [] for workers in options.workers}
    for _ in range(options.reps):
        for workers in options.workers:
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--quiesce-db=none",
                "-n",
                str(workers),
                "test_many.py",
            ]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=directory, capture_output=True, text=True)
            times[workers].append(time.perf_counter() - started)
            if done.returncode != 0:
                sys.exit(f"pytest -n {workers} failed:\n{done.stdout}\n{done.stderr}")
    base = statistics.median(times[options.workers[0]])
    print(
        f"# One exploration over pytest-xdist: {options.runs:,} runs of a {options.tasks}-task test"
    )
    print()
    print(
        f"CPython {platform.python_version()}, {os.cpu_count()} CPU(s), {options.reps} "
        "interleaved repetitions, medians of the whole pytest process's wall time."
    )
    print()
    print(f"| workers | seconds | runs per second | speed-up over -n {options.workers[0]} |")
    print("|---:|---:|---:|---:|")
    for workers in options.workers:
        seconds = statistics.median(times[workers])
        print(
            f"| -n {workers} | {seconds:.1f} | {options.runs / seconds:,.0f} | "
            f"{base / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
