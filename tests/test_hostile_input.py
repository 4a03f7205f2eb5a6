"""No input aborts the interpreter: hostile schedule strings and sizes raise a clear exception
or work, within bounded memory. Each case runs in a child process with its address space
capped, so a regression (an eager allocation of gigabytes, an abort) fails that case instead of
taking the test run down with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: The child's address-space cap: far above what the interpreter and quiesce need, far below
#: what an eager expansion of a hostile input would ask for.
MEMORY_CAP = 1 << 30

HOSTILE_SCHEDULES = [
    # Four billion zeros then one choice: once expanded eagerly (16 GiB, SIGABRT).
    "q1-_____w8B",
    # The largest decision index a varint can name, then another deviation after it.
    "q1-_________wEBAAE",
    # Ten-byte varints whose value does not fit 64 bits.
    "q1-_____________w",
    # Deviations of 2**32 - 1 (a choice index no decision has).
    "q1-AP____w8",
]


def run_child(source: str) -> subprocess.CompletedProcess:
    prelude = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS caps memory on Linux")
@pytest.mark.parametrize("schedule", HOSTILE_SCHEDULES)
def test_hostile_schedule_strings_replay_or_raise(schedule: str) -> None:
    done = run_child(
        f"""
        import asyncio, quiesce

        async def test():
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))

        for attempt in (
            lambda: quiesce.Loop(schedule={schedule!r}).close(),
            lambda: quiesce.replay(test, {schedule!r}),
        ):
            try:
                attempt()
            except (ValueError, quiesce.ReplayDiverged) as error:
                print(type(error).__name__, error)
            else:
                print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for line in lines:
        assert line == "ok" or line.startswith(
            ("ValueError not a quiesce schedule", "ReplayDiverged")
        ), line


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS caps memory on Linux")
def test_hostile_sizes_raise_value_errors() -> None:
    done = run_child(
        """
        import asyncio, quiesce

        async def test():
            await asyncio.sleep(0)

        cases = [
            lambda: quiesce.Loop(seed=1, policy="pct", pct_depth=2**31 - 1),
            lambda: quiesce.explore(test, policy="pct", pct_depth=2**31 - 1, runs=1),
            lambda: quiesce.Loop(seed=1, policy="pct", pct_horizon=2**64),
            lambda: quiesce.explore(test, runs=2**64),
            lambda: quiesce.explore(test, max_steps=2**64),
        ]
        for case in cases:
            try:
                case()
            except ValueError as error:
                print("ValueError", error)
            else:
                print("accepted")
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ValueError pct_depth must be <= 1024, got 2147483647"
    assert lines[1] == "ValueError pct_depth must be <= 1024, got 2147483647"
    assert lines[2].startswith("ValueError pct_horizon must be <= ")
    assert all(line.startswith("ValueError") for line in lines[3:]), lines


def test_the_deepest_pct_depth_still_runs() -> None:
    import asyncio

    import quiesce

    async def test() -> None:
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(3)))

    assert quiesce.explore(test, policy="pct", pct_depth=1024, runs=3).ok
