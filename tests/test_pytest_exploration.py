"""Explorations spread over pytest-xdist workers and ``--quiesce-shard`` jobs, and the failure
database (``.quiesce/``): pytester runs of small test modules, in a subprocess where xdist
starts workers. The inner tests sleep on the virtual clock only.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
from test_pytest_plugin import PLUGIN_ARGS

import quiesce
import quiesce._explore
from quiesce._explore import SavedSchedule, Shard, _checked_settings, _explore, _RunPlan

pytest_plugins = ["pytester"]

#: A race found by a known run of a random exploration: five workers finish in reverse order.
RACE = """
    import asyncio, pytest

    @pytest.mark.quiesce(runs=400, policy="random")
    async def test_order():
        order = []
        async def worker(name):
            await asyncio.sleep(0)
            order.append(name)
        await asyncio.gather(*(worker(n) for n in "abcde"))
        assert order != list("edcba"), order
"""


def _race_failure() -> quiesce.Failure:
    """The failure ``quiesce.explore`` finds in RACE's test, in this process."""
    namespace: Dict[str, Any] = {}
    exec(textwrap.dedent(RACE), namespace)
    result = quiesce.explore(
        namespace["test_order"], runs=400, policy="random", raise_on_failure=False
    )
    assert result.failure is not None
    return result.failure


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", *args)


def failure_lines(result: pytest.RunResult) -> List[str]:
    """The lines naming the failing run and the replay command, as pytest printed them."""
    return [
        line.strip()
        for line in result.stdout.lines
        if ("quiesce.explore:" in line and not line.startswith("FAILED"))
        or line.startswith("replay this failing schedule")
    ]


def entries(directory: Path) -> List[Dict[str, Any]]:
    return [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*/*.json"))
    ]


# -- shards: the same runs, the same first failure ----------------------------------------------


@pytest.mark.parametrize("policy", ["auto", "random", "pct"])
def test_shards_together_make_the_runs_of_one_exploration(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def program() -> None:
        order: List[int] = []

        async def worker(number: int) -> None:
            await asyncio.sleep(0)
            order.append(number)

        await asyncio.gather(*(worker(n) for n in range(4)))

    made: List[str] = []
    run_once = quiesce._explore._run_once

    def recording(*args: Any, **kwargs: Any) -> Any:
        outcome = run_once(*args, **kwargs)
        made.append(outcome.schedule)
        return outcome

    monkeypatch.setattr(quiesce._explore, "_run_once", recording)
    settings = _checked_settings(runs=40, policy=policy, seed=5)
    whole = _explore(program, settings)
    whole_schedules, made[:] = list(made), []
    assert whole.runs == len(whole_schedules) == 40
    assert len(set(whole_schedules)) > 20
    shards = [_explore(program, settings, shard=Shard(number, 3)) for number in (1, 2, 3)]
    assert [shard.runs for shard in shards] == [14, 13, 13]
    assert [shard.shard for shard in shards] == [(1, 3), (2, 3), (3, 3)]
    # Run i depends on i only: the shards make the whole's runs (and a shard other than the
    # first that makes a PCT run first makes the stock-order run 0, which measures PCT's
    # horizon).
    plan = _RunPlan(settings)
    calibration = sum(
        any(plan.needs_horizon(index) for index in range(number - 1, 40, 3)) for number in (2, 3)
    )
    assert calibration == {"auto": 2, "pct": 2, "random": 0}[policy]
    assert len(made) == 40 + calibration
    assert sorted(made) == sorted(whole_schedules + [whole_schedules[0]] * calibration)


def test_a_shard_reports_the_lowest_failing_run_even_when_it_owns_a_later_one() -> None:
    failure = _race_failure()
    namespace: Dict[str, Any] = {}
    exec(textwrap.dedent(RACE), namespace)
    settings = _checked_settings(runs=400, policy="random")
    for number in (1, 2, 3, 4):
        shard = _explore(namespace["test_order"], settings, shard=Shard(number, 4))
        # With nothing shared, every shard that fails makes the lower runs of the others.
        if shard.failure is not None:
            assert shard.failure.run == failure.run
            assert shard.failure.schedule == failure.schedule
    owner = (failure.run - 1) % 4 + 1
    owned = _explore(namespace["test_order"], settings, shard=Shard(owner, 4))
    assert owned.failure is not None and owned.failure.replay_line() == failure.replay_line()


def test_saved_schedules_come_before_every_run_of_every_shard() -> None:
    failure = _race_failure()
    namespace: Dict[str, Any] = {}
    exec(textwrap.dedent(RACE), namespace)
    settings = _checked_settings(runs=400, policy="random")
    for number in (1, 2):
        saved = [SavedSchedule(failure.schedule, "the saved one")]
        result = _explore(namespace["test_order"], settings, shard=Shard(number, 2), saved=saved)
        # Shard 1 replays it first; shard 2 after a failure of its own, which it then does
        # not report: the saved schedule (run "-1") comes before it.
        assert result.failure is not None and result.failure.origin == "the saved one"
        assert result.failure.replay_line() == failure.replay_line()
        assert result.runs == (1 if number == 1 else failure.run // 2 + 1)
        assert saved[0].verdict == "failed"


def test_xdist_reports_the_first_failure_as_one_process_does(pytester: pytest.Pytester) -> None:
    failure = _race_failure()
    pytester.makepyfile(RACE)
    alone = run_pytest(pytester, "--quiesce-db=none")
    alone.assert_outcomes(failed=1)
    two = run_pytest(pytester, "--quiesce-db=none", "-n", "2", "-rfs")
    # The other shard stops early (skipped, naming the owner) or, if it made all its runs
    # before the owner recorded its failure, passes: its own schedules all passed.
    outcomes = two.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 1
    assert failure_lines(two) == failure_lines(alone)
    text = two.stdout.str()
    assert f"quiesce.explore: run {failure.run} failed (random, seed {failure.seed})" in text
    assert f"--quiesce-replay={failure.schedule}" in text
    # The replay line names the test, not the shard item.
    assert "pytest 'test_xdist_reports_the_first_failure_as_one_process_does.py::test_order'" in (
        text
    )
    owner = (failure.run - 1) % 2 + 1
    if outcomes.get("skipped"):
        assert f"test_order[quiesce-shard-{owner}-of-2] reports it" in text
    assert re.search(rf"FAILED .*test_order\[quiesce-shard-{owner}-of-2\]", text)


def test_xdist_shards_of_a_passing_exploration_say_what_they_ran(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.quiesce(runs=61, policy="random")
        async def test_fine():
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))

        @pytest.mark.quiesce
        async def test_once():
            await asyncio.sleep(1)
        """
    )
    result = run_pytest(pytester, "-n", "2", "-v")
    result.assert_outcomes(passed=3)
    text = result.stdout.str()
    assert re.search(
        r"PASSED \(31 schedule\(s\).*shard 1 of 2\)\) .*fine\[quiesce-shard-1-of-2\]", text
    )
    assert re.search(
        r"PASSED \(30 schedule\(s\).*shard 2 of 2\)\) .*fine\[quiesce-shard-2-of-2\]", text
    )
    assert "test_once[" not in text  # a single run is not split


def test_quiesce_shard_splits_an_exploration_across_jobs(pytester: pytest.Pytester) -> None:
    failure = _race_failure()
    pytester.makepyfile(RACE)
    owner = (failure.run - 1) % 2 + 1
    for number in (1, 2):
        result = run_pytest(pytester, "--quiesce-db=none", f"--quiesce-shard={number}/2", "-v")
        assert "shard=" in result.stdout.str()
        if number == owner:
            result.assert_outcomes(failed=1)
            assert f"--quiesce-replay={failure.schedule}" in result.stdout.str()
        else:
            # A job that finds no failure of its own passes: the owner's job reports it.
            result.assert_outcomes(passed=1)
            assert f"shard {number} of 2" in result.stdout.str()


@pytest.mark.parametrize("value", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_quiesce_shard_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", f"--quiesce-shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--quiesce-shard takes i/k with 1 <= i <= k" in result.stderr.str()


# -- the failure database -----------------------------------------------------------------------


def test_a_failure_is_saved_and_replayed_first_next_time(pytester: pytest.Pytester) -> None:
    failure = _race_failure()
    pytester.makepyfile(RACE)
    database = pytester.path / ".quiesce"
    first = run_pytest(pytester)
    first.assert_outcomes(failed=1)
    assert (database / ".gitignore").read_text().splitlines()[-1] == "*"
    [entry] = entries(database)
    assert entry["nodeid"] == "test_a_failure_is_saved_and_replayed_first_next_time.py::test_order"
    assert (entry["schedule"], entry["run"], entry["seed"]) == (
        failure.schedule,
        failure.run,
        failure.seed,
    )
    assert entry["passes"] == 0 and entry["error"].startswith("AssertionError")

    again = run_pytest(pytester)
    again.assert_outcomes(failed=1)
    text = again.stdout.str()
    assert "the failing schedule saved in the failure database on" in text
    assert f"(found by run {failure.run}, random) failed again" in text
    assert f"--quiesce-replay={failure.schedule}" in text


def test_a_saved_schedule_is_forgotten_after_three_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RACE)
    database = pytester.path / ".quiesce"
    run_pytest(pytester).assert_outcomes(failed=1)
    # The bug is fixed: the order no longer matters.
    pytester.makepyfile(RACE.replace('assert order != list("edcba"), order', "assert order"))
    for passes in (1, 2):
        result = run_pytest(pytester, "-v")
        result.assert_outcomes(passed=1)
        assert "1 saved failing schedule(s) replayed first" in result.stdout.str()
        assert [entry["passes"] for entry in entries(database)] == [passes]
    run_pytest(pytester).assert_outcomes(passed=1)
    assert entries(database) == []
    assert list(database.glob("*/*.html")) == []  # its timeline went with it


def test_a_saved_failure_has_its_timeline_beside_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RACE)
    run_pytest(pytester).assert_outcomes(failed=1)
    [entry] = sorted((pytester.path / ".quiesce").glob("*/*.json"))
    page = entry.with_suffix(".html").read_text(encoding="utf-8")
    assert "failed: AssertionError" in page and "data-rendered-tracks" in page


def test_quiesce_trace_writes_the_timeline_of_a_replay(pytester: pytest.Pytester) -> None:
    failure = _race_failure()
    pytester.makepyfile(RACE)
    first = run_pytest(pytester, "--quiesce-db=none")
    assert "--quiesce-trace=timeline.html" in first.stdout.str()
    result = run_pytest(
        pytester, f"--quiesce-replay={failure.schedule}", "--quiesce-trace=out/run.json"
    )
    result.assert_outcomes(failed=1)
    trace = json.loads((pytester.path / "out" / "run.json").read_text(encoding="utf-8"))
    assert trace["otherData"]["schedule"] == failure.schedule
    assert sum(event["ph"] == "X" for event in trace["traceEvents"]) > 5
    bad = run_pytest(pytester, "--quiesce-trace=x.html")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--quiesce-trace writes the timeline of a replayed schedule" in bad.stderr.str()


def test_passes_of_a_saved_schedule_count_in_a_row(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RACE)
    database = pytester.path / ".quiesce"
    run_pytest(pytester).assert_outcomes(failed=1)
    [found] = entries(database)
    fixed = RACE.replace('assert order != list("edcba"), order', "assert order")
    pytester.makepyfile(fixed)
    run_pytest(pytester).assert_outcomes(passed=1)
    assert [entry["passes"] for entry in entries(database)] == [1]
    pytester.makepyfile(RACE)  # the bug is back
    run_pytest(pytester).assert_outcomes(failed=1)
    [entry] = entries(database)
    assert entry["passes"] == 0 and entry["found"] == found["found"]


def test_a_stale_saved_schedule_is_dropped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RACE)
    database = pytester.path / ".quiesce"
    run_pytest(pytester).assert_outcomes(failed=1)
    # The test changed: one worker, no decisions for the saved schedule to make.
    pytester.makepyfile(RACE.replace('for n in "abcde"', 'for n in "a"'))
    run_pytest(pytester).assert_outcomes(passed=1)
    assert entries(database) == []


def test_two_workers_share_one_database(pytester: pytest.Pytester) -> None:
    tests = "\n".join(
        textwrap.dedent(RACE).replace("test_order", f"test_order_{number}") for number in range(4)
    )
    pytester.makepyfile(tests)
    database = pytester.path / ".quiesce"
    first = run_pytest(pytester, "-n", "2")
    outcomes = first.parseoutcomes()
    assert outcomes["failed"] == 4
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 4
    saved = entries(database)
    assert sorted(entry["nodeid"].rsplit("::", 1)[1] for entry in saved) == [
        f"test_order_{number}" for number in range(4)
    ]
    assert len({entry["schedule"] for entry in saved}) == 1
    again = run_pytest(pytester, "-n", "2", "-rs")
    outcomes = again.parseoutcomes()
    # Shard 1 of each test replays its saved schedule first, and fails on it.
    assert outcomes["failed"] == 4
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 4
    assert again.stdout.str().count("saved in the failure database on") >= 4
    assert len(re.findall(r"_ test_order_\d\[quiesce-shard-1-of-2\] _", again.stdout.str())) == 4
    assert len(entries(database)) == 4


def test_the_database_can_move_or_be_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RACE)
    run_pytest(pytester, "--quiesce-db=none").assert_outcomes(failed=1)
    assert not (pytester.path / ".quiesce").exists()
    result = run_pytest(pytester, "--quiesce-db=elsewhere/db")
    result.assert_outcomes(failed=1)
    assert "db=elsewhere/db" in result.stdout.str()
    assert len(entries(pytester.path / "elsewhere" / "db")) == 1
    assert not (pytester.path / ".quiesce").exists()


def test_python_m_quiesce_replays_a_saved_entry(pytester: pytest.Pytester) -> None:
    failure = _race_failure()
    pytester.makepyfile(RACE)
    run_pytest(pytester).assert_outcomes(failed=1)
    [path] = sorted((pytester.path / ".quiesce").glob("*/*.json"))
    result = pytester.run(
        sys.executable, "-m", "quiesce", "replay", str(path), "-p", "no:cacheprovider"
    )
    assert result.ret == 1
    text = result.stdout.str()
    assert f"replay={failure.schedule}" in text
    assert "AssertionError: ['e', 'd', 'c', 'b', 'a']" in text
    assert "1 failed" in text
