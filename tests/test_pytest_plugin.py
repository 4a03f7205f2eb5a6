"""The pytest plugin (``quiesce.pytest_plugin``) and ``quiesce.EventLoopPolicy``.

Each plugin test writes a small test module and runs pytest on it with pytester, in process.
Where the installed package registers the plugin through its ``pytest11`` entry point (a wheel
install, as scripts/test.sh does), the inner runs get it from there; otherwise (an editable
install made before the entry point existed) they load it with ``-p quiesce.pytest_plugin``.
No test sleeps in real time: the inner tests sleep on the virtual clock.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from typing import Any, List, Optional

import pytest

import quiesce
import quiesce._policy

pytest_plugins = ["pytester"]


def _entry_point() -> Optional[Any]:
    """The ``pytest11`` entry point named ``quiesce``, if the installed metadata has it."""
    from importlib import metadata

    if sys.version_info >= (3, 10):
        found = metadata.entry_points(group="pytest11")
    else:  # pragma: no cover - 3.9's entry_points() returns a dict of groups
        found = metadata.entry_points().get("pytest11", ())
    return next((ep for ep in found if ep.name == "quiesce"), None)


def _editable_install() -> bool:
    from importlib import metadata

    try:
        text = metadata.distribution("quiesce").read_text("direct_url.json")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return True
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


ENTRY_POINT = _entry_point()
#: Arguments that load the plugin in an inner run when no entry point does it.
PLUGIN_ARGS: List[str] = [] if ENTRY_POINT is not None else ["-p", "quiesce.pytest_plugin"]


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Writes ``source`` as a test module and runs pytest on it in process."""
    pytester.makepyfile(source)
    return pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", *args)


# -- installation ------------------------------------------------------------------------------


def test_entry_point_registers_the_plugin(pytester: pytest.Pytester) -> None:
    if ENTRY_POINT is None and _editable_install():
        pytest.skip(
            "quiesce is not installed from a wheel with the pytest11 entry point (an editable "
            "install older than it, or the source tree on sys.path)"
        )
    assert ENTRY_POINT is not None, "the installed quiesce has no pytest11 entry point"
    assert ENTRY_POINT.value == "quiesce.pytest_plugin"
    pytester.makepyfile(
        """
        import asyncio, pytest, quiesce

        @pytest.mark.quiesce
        async def test_it(quiesce_loop):
            assert asyncio.get_running_loop() is quiesce_loop
        """
    )
    # A fresh interpreter with no -p: only the entry point can have loaded the plugin.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*PLUGIN_ARGS, "--help")
    result.stdout.fnmatch_lines(["quiesce:*", "*--quiesce-seed=S*", "*--quiesce-runs=N*"])
    text = result.stdout.str()
    for option in ("--quiesce-mode", "--quiesce-policy", "--quiesce-replay", "quiesce_mode"):
        assert option in text


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*PLUGIN_ARGS, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.quiesce(seed=None, clock='virtual'*"])


# -- the marker and the fixture ----------------------------------------------------------------


def test_marked_async_test_runs_on_a_quiesce_loop_with_virtual_time(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest, quiesce

        @pytest.mark.quiesce
        async def test_an_hour():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, quiesce.Loop)
            assert loop.clock == "virtual" and loop.seed is None
            await asyncio.sleep(3600)
            assert loop.time() == 3600.0
        """,
    )
    result.assert_outcomes(passed=1)


def test_fixture_is_the_current_loop_and_is_closed_after(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest, quiesce

        seen = []

        def current():
            return asyncio.get_event_loop()

        def test_sync(quiesce_loop):
            assert isinstance(quiesce_loop, quiesce.Loop)
            assert current() is quiesce_loop
            quiesce_loop.run_until_complete(asyncio.sleep(60))
            assert quiesce_loop.time() == 60.0
            seen.append(quiesce_loop)

        @pytest.mark.quiesce
        async def test_async(quiesce_loop):
            assert asyncio.get_running_loop() is quiesce_loop
            assert quiesce_loop is not seen[0]
            seen.append(quiesce_loop)

        def test_after():
            assert len(seen) == 2
            assert all(loop.is_closed() for loop in seen)
        """,
    )
    result.assert_outcomes(passed=3)


def test_plain_tests_are_left_alone(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, quiesce

        def test_sync():
            loop = asyncio.new_event_loop()
            try:
                assert not isinstance(loop, quiesce.Loop)
                assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
            finally:
                loop.close()

        async def test_unmarked_async():
            pass
        """,
    )
    # Strict mode: the unmarked async test is not ours; pytest itself refuses it.
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1
    assert outcomes.get("failed", 0) + outcomes.get("skipped", 0) == 1
    assert "not natively supported" in result.stdout.str()


def test_deadlock_fails_with_the_report(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        @pytest.mark.quiesce
        async def test_stuck():
            event = asyncio.Event()
            await asyncio.sleep(30)
            await event.wait()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Deadlock: Deadlock at loop time 30.0*",
            "*Task 'test_stuck' (coroutine test_stuck() in *) [[]waiting[]]",
            "*awaiting: *Event.wait()*",
            "*- quiesce -*",
            "seed: None*",
            "clock: virtual",
            "loop time: 30.0",
        ]
    )


def test_leftover_task_errors_at_teardown_naming_it(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def serve_forever():
            await asyncio.Event().wait()

        @pytest.mark.quiesce
        async def test_forgets_its_task():
            asyncio.get_running_loop().create_task(serve_forever(), name="forgotten")
            await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_forgets_its_task*",
            "The test left 1 task(s) pending on its quiesce loop: 'forgotten'.*",
            "Task 'forgotten' (coroutine serve_forever() in *) [[]waiting[]]",
        ]
    )
    assert "quiesce.background(task)" in result.stdout.str()
    assert "@pytest.mark.quiesce(background=True)" in result.stdout.str()


def test_background_tasks_may_be_left_behind(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest, quiesce

        cleaned = []

        async def heartbeat():
            try:
                while True:
                    await asyncio.sleep(1)
            finally:
                cleaned.append(asyncio.get_running_loop().time())

        @pytest.mark.quiesce(background=True)
        async def test_marker_allows_leftovers():
            asyncio.ensure_future(heartbeat())
            await asyncio.sleep(2.5)

        @pytest.mark.quiesce
        async def test_background_task_is_no_leftover():
            quiesce.background(asyncio.ensure_future(heartbeat()))
            await asyncio.sleep(0)

        def test_both_were_cancelled_and_cleaned_up():
            assert cleaned == [2.5, 0.0]
        """,
    )
    result.assert_outcomes(passed=3)


def test_errors_reaching_the_exception_handler_error_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def fails():
            raise ValueError("nobody awaited me")

        @pytest.mark.quiesce
        async def test_never_retrieved():
            asyncio.ensure_future(fails())
            await asyncio.sleep(1)

        def broken_callback():
            raise KeyError("in a callback")

        @pytest.mark.quiesce
        async def test_callback_error():
            asyncio.get_running_loop().call_soon(broken_callback)
            await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_never_retrieved*",
            "The loop's exception handler was called 1 time(s) during the test*",
            "- Task exception was never retrieved",
            "*ValueError: nobody awaited me",
            "*ERROR at teardown of test_callback_error*",
            "- Exception in callback broken_callback()*",
            "*KeyError: 'in a callback'",
        ]
    )


def test_a_failing_test_is_not_also_blamed_for_its_leftovers(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        @pytest.mark.quiesce
        async def test_fails_midway():
            asyncio.ensure_future(asyncio.Event().wait())
            await asyncio.sleep(0)
            assert False, "midway"
        """,
    )
    result.assert_outcomes(failed=1)


def test_report_section_on_failure(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def waiter(event):
            await event.wait()

        @pytest.mark.quiesce(seed=3)
        async def test_fails():
            event = asyncio.Event()
            asyncio.get_running_loop().create_task(waiter(event), name="the-waiter")
            await asyncio.sleep(5)
            assert 1 + 1 == 3
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert 1 + 1 == 3*",
            "*- quiesce -*",
            "seed: 3 (from @pytest.mark.quiesce)",
            "clock: virtual",
            "loop time: 5.0",
            "quiesce report at loop time 5.0 (virtual clock)*",
            "Task 'the-waiter' (coroutine waiter() in *) [[]waiting[]]",
        ]
    )


def test_seed_option_reaches_the_loop_and_the_marker_wins(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        @pytest.mark.quiesce
        async def test_option_seed(quiesce_loop):
            assert quiesce_loop.seed == 7
            assert asyncio.get_running_loop().seed == 7

        @pytest.mark.quiesce(seed=11, clock="real", watchdog=None, io_grace=0.5)
        async def test_marker_seed():
            loop = asyncio.get_running_loop()
            assert (loop.seed, loop.clock, loop.watchdog) == (11, "real", None)
            assert loop.io_grace == 0.5

        def test_sync_fixture(quiesce_loop):
            assert quiesce_loop.seed == 7

        @pytest.mark.quiesce
        async def test_fails():
            assert False
        """,
        "--quiesce-seed=7",
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "quiesce: mode=strict, seed=7",
            "*",
            "seed: 7 (from --quiesce-seed)",
            "rerun exactly: pytest '*::test_fails' --quiesce-seed=7",
        ]
    )


def test_a_failing_test_in_stock_order_prints_its_rerun_line(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        async def test_unmarked_fails():
            assert False
        """,
        "--quiesce-mode=auto",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "seed: None (first in, first out)",
            "rerun exactly: pytest '*::test_unmarked_fails' --quiesce-mode=auto",
        ]
    )


def test_failure_tracebacks_show_no_frames_of_quiesce(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def helper():
            await asyncio.sleep(1)
            raise ValueError("boom")

        @pytest.fixture
        async def resource():
            yield 1

        @pytest.mark.quiesce
        async def test_once(resource):
            await helper()

        @pytest.mark.quiesce(runs=3)
        async def test_explored(resource):
            await helper()
        """,
    )
    result.assert_outcomes(failed=2)
    # pytest prints whole messages in the short summary when it detects CI (the CI
    # variable), so only the failure sections are counted.
    text = result.stdout.str().split("short test summary info")[0]
    assert text.count('raise ValueError("boom")') == 2
    frames = [line for line in text.splitlines() if re.search(r"quiesce[/\\]\w+\.py", line)]
    assert frames == [], frames


def test_a_passing_exploration_says_what_it_ran(pytester: pytest.Pytester) -> None:
    source = """
        import asyncio, pytest

        @pytest.mark.quiesce(runs=30, policy="random", seed=4)
        async def test_explored():
            async def step():
                await asyncio.sleep(0)
            await asyncio.gather(step(), step(), step())
        """
    result = run(pytester, source, "-v", "-rA")
    result.assert_outcomes(passed=1)
    summary = r"30 schedule\(s\), \d+ distinct, none failed \(policy random, seed 4\)"
    result.stdout.re_match_lines(
        [
            r".*::test_explored PASSED \(" + summary + r"\).*",
            r"quiesce.explore: 30 run\(s\) passed \(random, seed 4\); \d+ distinct .*",
            r"=+ quiesce =+",
            r".*::test_explored: " + summary,
        ]
    )


def test_override_lets_the_command_line_win_over_the_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
        import pytest

        runs = []

        @pytest.mark.quiesce(runs=3, seed=1)
        async def test_explored():
            runs.append(1)

        def test_count():
            assert len(runs) == int(__import__("os").environ["EXPECTED_RUNS"])
        """
    pytester.makepyfile(source)
    for args, expected in (((), 3), (("--quiesce-override=runs",), 9)):
        monkeypatch.setenv("EXPECTED_RUNS", str(expected))
        result = pytester.runpytest(
            *PLUGIN_ARGS, "-p", "no:cacheprovider", "--quiesce-runs=9", *args
        )
        result.assert_outcomes(passed=2)
    result = pytester.runpytest(*PLUGIN_ARGS, "--quiesce-override=runs,speed")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--quiesce-override takes names among runs, policy, seed*'speed'*"]
    )


def test_seeds_reorder_deterministically(pytester: pytest.Pytester) -> None:
    source = """
        import asyncio, pytest

        async def worker(name, log):
            for _ in range(3):
                log.append(name)
                await asyncio.sleep(0)

        @pytest.mark.quiesce
        async def test_order():
            log = []
            await asyncio.gather(*(worker(name, log) for name in "abc"))
            print("ORDER", "".join(log))
    """
    orders = []
    for seed in ("1", "1", "2"):
        result = run(pytester, source, "-s", f"--quiesce-seed={seed}")
        result.assert_outcomes(passed=1)
        orders.append(re.search(r"ORDER (\w+)", result.stdout.str()).group(1))  # type: ignore
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == sorted("abc" * 3)


# -- async fixtures ----------------------------------------------------------------------------


def test_async_fixtures_run_on_the_test_loop(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        torn_down = []

        @pytest.fixture
        async def server():
            await asyncio.sleep(10)
            yield asyncio.get_running_loop()
            await asyncio.sleep(5)
            torn_down.append(asyncio.get_running_loop().time())

        @pytest.fixture
        async def started_at(server):
            return server.time()

        class TestInAClass:
            @pytest.fixture
            async def offset(self):
                return 1

            @pytest.mark.quiesce
            async def test_uses_them(self, server, started_at, offset, quiesce_loop):
                assert server is quiesce_loop is asyncio.get_running_loop()
                assert started_at + offset == 11.0

        def test_teardown_ran_on_the_loop():
            assert torn_down == [15.0]
        """,
    )
    result.assert_outcomes(passed=2)


def test_wider_scoped_async_fixture_is_refused(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture(scope="module")
        async def shared():
            return 1

        @pytest.mark.quiesce
        async def test_it(shared):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*requests the async fixture(s) 'shared' (scope='module'), which would run on another "
            "event loop*function-scoped*"
        ]
    )


# -- auto mode ---------------------------------------------------------------------------------


def test_auto_mode_runs_every_unclaimed_async_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nquiesce_mode = auto\nmarkers = asyncio: another plugin's\n")
    result = run(
        pytester,
        """
        import asyncio, pytest, quiesce

        async def test_unmarked():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, quiesce.Loop)
            await asyncio.sleep(600)
            assert loop.time() == 600.0

        def test_sync():
            pass

        @pytest.mark.asyncio
        async def test_other_plugins():
            pass
        """,
        "-m",
        "quiesce",
    )
    # -m quiesce selects the auto-claimed test (the marker is added at collection) and leaves
    # the other plugin's test and the sync test out.
    result.assert_outcomes(passed=1, deselected=2)


def test_mode_option_overrides_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nquiesce_mode = strict\n")
    result = run(
        pytester,
        """
        import asyncio, quiesce

        async def test_unmarked():
            assert isinstance(asyncio.get_running_loop(), quiesce.Loop)
        """,
        "--quiesce-mode=auto",
    )
    result.assert_outcomes(passed=1)


def test_marked_test_claimed_by_another_plugin_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers = asyncio: another plugin's\n")
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.quiesce
        @pytest.mark.asyncio
        async def test_both():
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*marked @pytest.mark.quiesce but also claimed by*asyncio*"])


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('clock="fast"', "clock must be one of 'virtual', 'real'; got 'fast'"),
        ("seed=-1", "seed must be in range(0, 2**64); got -1"),
        ('seed="1"', "seed must be an int in range(0, 2**64) or None; got '1'"),
        ("runs=0", "runs must be a positive int or None; got 0"),
        ('policy="smart"', "policy must be one of 'auto', 'random', 'pct', 'dfs', 'fifo'"),
        ("background=1", "background must be True or False; got 1"),
        ("watchdog=0", "watchdog must be a finite number of seconds > 0, or None; got 0"),
        ("io_grace=-1", "io_grace must be a finite number of seconds >= 0, or None; got -1"),
        ("3", "it takes keyword arguments only"),
        ("sead=3", "unknown argument(s) sead; it accepts seed=None, clock='virtual'"),
    ],
)
def test_bad_marker_arguments_are_a_clear_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    result = run(
        pytester,
        f"""
        import pytest

        @pytest.mark.quiesce({marker})
        async def test_it():
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*test_it: invalid @pytest.mark.quiesce(...): {pytester_escape(message)}*"]
    )


def pytester_escape(text: str) -> str:
    """Escapes fnmatch's special characters."""
    return re.sub(r"([\[\]?*])", r"[\1]", text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quiesce-seed=-1"], "--quiesce-seed must be in range(0, 2**64); got -1"),
        (["--quiesce-runs=0"], "--quiesce-runs must be a positive int; got 0"),
        (["--quiesce-replay="], "--quiesce-replay needs a schedule"),
        (
            ["--quiesce-replay=q1-A", "--quiesce-runs=3"],
            "--quiesce-replay and --quiesce-runs exclude each other",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, args: List[str], message: str
) -> None:
    result = run(pytester, "def test_nothing(): pass\n", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_bad_choices_name_the_allowed_values(pytester: pytest.Pytester) -> None:
    result = run(pytester, "def test_nothing(): pass\n", "--quiesce-policy=smart")
    assert result.ret != pytest.ExitCode.OK  # a usage error (an internal one on pytest 7)
    assert "'auto', 'random', 'pct', 'dfs', 'fifo'" in result.stderr.str()
    pytester.makeini("[pytest]\nquiesce_mode = sometimes\n")
    result = run(pytester, "def test_nothing(): pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "quiesce_mode must be one of 'strict', 'auto'; got 'sometimes'" in result.stderr.str()


def test_replay_needs_exactly_one_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.quiesce
        async def test_a():
            pass

        @pytest.mark.quiesce
        async def test_b():
            pass
        """,
        "--quiesce-replay=q1-A",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--quiesce-replay replays the schedule of one test, but 2 quiesce tests" in (
        result.stderr.str()
    )


@pytest.mark.parametrize("option", ["--quiesce-runs=3", "--quiesce-replay=q1-A"])
def test_exploring_when_no_selected_test_runs_on_quiesce_is_a_usage_error(
    pytester: pytest.Pytester, option: str
) -> None:
    source = """
        import asyncio

        async def test_unmarked():
            await asyncio.sleep(1)
    """
    result = run(pytester, source, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = result.stderr.str()
    assert f"{option.split('=')[0]}: none of the 1 selected test(s) runs on quiesce" in message
    assert "mark the test @pytest.mark.quiesce, or pass --quiesce-mode=auto" in message
    assert run(pytester, source, option, "--quiesce-mode=auto").ret in (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
    )


# -- exploration -------------------------------------------------------------------------------

RACY = """
import asyncio, pytest

@pytest.mark.quiesce{marker}
async def test_lost_update():
    balance = {{"value": 0}}

    async def deposit():
        seen = balance["value"]
        await asyncio.sleep(0)
        balance["value"] = seen + 1

    first = asyncio.ensure_future(deposit())
    await asyncio.sleep(0)  # in stock (FIFO) order, the first deposit reads here...
    await asyncio.sleep(0)  # ...and writes here, before the second one starts
    second = asyncio.ensure_future(deposit())
    await asyncio.gather(first, second)
    assert balance["value"] == 2
"""


def test_racy_test_passes_in_stock_order(pytester: pytest.Pytester) -> None:
    run(pytester, RACY.format(marker="")).assert_outcomes(passed=1)


def test_runs_explores_and_prints_the_replay_command(pytester: pytest.Pytester) -> None:
    result = run(pytester, RACY.format(marker=""), "--quiesce-runs=50", "--quiesce-policy=random")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "ExplorationFailed" in text and "assert 1 == 2" in text
    result.stdout.fnmatch_lines(
        ["*- quiesce -*", "ran with quiesce.explore(runs=50, policy='random')"]
    )
    match = re.search(
        r"pytest '(test_runs_explores_and_prints_the_replay_command\.py::test_lost_update)' "
        r"--quiesce-replay=(q1-\S+)",
        text,
    )
    assert match, text
    # The printed line replays the failure: the same assertion fails, once.
    replayed = pytester.runpytest(
        *PLUGIN_ARGS, "-p", "no:cacheprovider", match.group(1), f"--quiesce-replay={match.group(2)}"
    )
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        ["*assert 1 == 2*", f"ran with quiesce.replay(schedule='{match.group(2)}')"]
    )


def test_marker_runs_explores_a_passing_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        calls = []

        @pytest.mark.quiesce(runs=5, policy="random")
        async def test_safe():
            calls.append(asyncio.get_running_loop())
            lock = asyncio.Lock()
            balance = [0]

            async def deposit():
                async with lock:
                    seen = balance[0]
                    await asyncio.sleep(0)
                    balance[0] = seen + 1

            await asyncio.gather(deposit(), deposit())
            assert balance[0] == 2

        def test_ran_on_fresh_loops():
            assert len(calls) >= 5 and len(set(map(id, calls))) == len(calls)
        """,
    )
    result.assert_outcomes(passed=2)


EXPLORED_LOOP_TEST = """
import asyncio
import pytest
import quiesce

loops = []

@pytest.fixture
async def worker_loop(quiesce_loop):
    yield quiesce_loop

@pytest.mark.quiesce{marker}
async def test_it(quiesce_loop, worker_loop):
    assert quiesce_loop is asyncio.get_running_loop() is worker_loop
    loops.append(quiesce_loop)

def test_each_run_had_its_own_loop():
    assert len(loops) == {runs} and len(set(map(id, loops))) == {runs}
    assert all(loop.is_closed() for loop in loops)
"""


@pytest.mark.parametrize(
    "marker, args", [("(runs=4)", ()), ("", ("--quiesce-runs=4",))], ids=["marker", "option"]
)
def test_an_explored_test_gets_each_runs_loop_as_quiesce_loop(
    pytester: pytest.Pytester, marker: str, args: Any
) -> None:
    result = run(pytester, EXPLORED_LOOP_TEST.format(marker=marker, runs=4), *args)
    result.assert_outcomes(passed=2)


def test_a_sync_fixture_cannot_take_the_loop_of_an_explored_test(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture
        def uses_loop(quiesce_loop):
            return quiesce_loop

        @pytest.mark.quiesce(runs=3)
        async def test_it(uses_loop):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*the sync fixture 'uses_loop' cannot take 'quiesce_loop'. Make 'uses_loop' an async*"]
    )


# -- quiesce.EventLoopPolicy -------------------------------------------------------------------


# Policies are deprecated from 3.14 on (asyncio warns); quiesce.EventLoopPolicy is still there
# for the tools that make their loops through one.
deprecated_policies = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@deprecated_policies
def test_policy_makes_quiesce_loops() -> None:
    policy = quiesce.EventLoopPolicy(seed=5, clock="real", watchdog=None, io_grace=2)
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    assert policy.loop_kwargs == {"seed": 5, "clock": "real", "watchdog": None, "io_grace": 2.0}
    assert repr(policy) == (
        "quiesce.EventLoopPolicy(seed=5, clock='real', watchdog=None, io_grace=2.0)"
    )
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, quiesce.Loop)
        assert (loop.seed, loop.clock, loop.watchdog, loop.io_grace) == (5, "real", None, 2.0)
    finally:
        loop.close()


@deprecated_policies
def test_policy_installed_globally_serves_new_event_loop() -> None:
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(quiesce.EventLoopPolicy())
    try:
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, quiesce.Loop) and loop.clock == "virtual"
            assert loop.run_until_complete(asyncio.sleep(86400, "a day")) == "a day"
            assert loop.time() == 86400.0
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(previous)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seed": -1}, ValueError, "seed must be in range(0, 2**64), got -1"),
        ({"seed": "1"}, TypeError, "seed must be an int or None, got str"),
        ({"clock": "fast"}, ValueError, "clock must be 'virtual' or 'real', got 'fast'"),
        ({"watchdog": 0}, ValueError, "watchdog must be > 0 seconds"),
        ({"watchdog": "1"}, TypeError, "watchdog must be a number of seconds or None"),
        ({"io_grace": -1}, ValueError, "io_grace must be a finite number of seconds >= 0"),
    ],
)
def test_policy_checks_its_arguments_at_once(kwargs: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        quiesce.EventLoopPolicy(**kwargs)


def test_policy_says_what_to_use_where_asyncio_has_no_policies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Removal is planned for 3.16: quiesce still imports there, and the class says why not.
    monkeypatch.setattr(quiesce._policy, "_DefaultPolicy", None)
    with pytest.raises(RuntimeError, match=r"no event loop policies.*loop_factory=quiesce\.Loop"):
        quiesce.EventLoopPolicy()


def test_use_quiesce_loops_reaches_asyncio_run_and_new_event_loop_without_warnings() -> None:
    # In a child: the change is for the rest of the process. -W error: no deprecated API.
    program = textwrap.dedent(
        """
        import asyncio, sys
        from quiesce._policy import use_quiesce_loops
        use_quiesce_loops(seed=3, clock="virtual")

        async def main():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(3600)
            return type(loop).__name__, loop.seed, loop.time()

        print(asyncio.run(main()))
        loop = asyncio.new_event_loop()
        print(type(loop).__name__, loop.seed)
        loop.close()
        if sys.version_info >= (3, 11):
            with asyncio.Runner() as runner:
                print(runner.run(main()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    expected = ["('Loop', 3, 3600.0)", "Loop 3"]
    if sys.version_info >= (3, 11):
        expected.append("('Loop', 3, 3600.0)")
    assert done.stdout.splitlines() == expected


def test_use_quiesce_loops_checks_its_arguments_before_changing_anything() -> None:
    with pytest.raises(ValueError, match="clock must be 'virtual' or 'real'"):
        quiesce._policy.use_quiesce_loops(clock="fast")


# -- regressions: exploration with fixtures, bounded teardown, claims ----------------------------


def test_async_fixtures_are_set_up_anew_in_every_exploration_run(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        setups, teardowns = [], []

        @pytest.fixture
        async def queue():
            return asyncio.Queue()  # bound to this run's loop on 3.9

        @pytest.fixture
        async def state(queue):
            setups.append(asyncio.get_running_loop())
            yield {"n": 0, "queue": queue}
            teardowns.append(asyncio.get_running_loop())

        @pytest.mark.quiesce(runs=5)
        async def test_fresh_state(state):
            state["n"] += 1
            await state["queue"].put(1)
            assert state["n"] == 1 and await state["queue"].get() == 1

        def test_each_run_had_its_own_loop():
            assert len(setups) == 5 and len(set(map(id, setups))) == 5
            assert teardowns == setups
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_sync_fixture_cannot_take_an_async_fixture_under_exploration(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture
        async def client():
            return "client"

        @pytest.fixture
        def wrapper(client):
            return [client]

        @pytest.mark.quiesce(runs=3)
        async def test_it(wrapper):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*the sync fixture 'wrapper' cannot take 'client'. Make 'wrapper' an async fixture*"]
    )


def test_breaking_out_of_an_async_generator_is_not_a_leftover_task(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest

        async def numbers():
            i = 0
            while True:
                yield i
                i += 1

        @pytest.mark.quiesce
        async def test_first():
            async for n in numbers():
                break
            assert n == 0
        """,
    )
    result.assert_outcomes(passed=1)


def test_tasks_that_refuse_to_die_are_reported_without_hanging(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def swallows_cancellation():
            while True:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    pass

        @pytest.mark.quiesce
        async def test_leaves_a_stubborn_task():
            asyncio.ensure_future(swallows_cancellation())
            await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*The test left 1 task(s) pending*",
            "*did not finish after being cancelled at teardown (they swallow the cancellation*",
        ]
    )


def test_a_busy_loop_waiting_for_a_timer_fails_instead_of_hanging(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        async def spin():
            while True:
                await asyncio.sleep(0)

        @pytest.mark.quiesce(max_steps=10_000)
        async def test_busy():
            await asyncio.wait_for(spin(), 0.5)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*BudgetExceeded: the loop ran 10000 callbacks*"])


def test_the_marker_watchdog_reaches_every_exploration_run(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, threading, pytest

        @pytest.mark.quiesce(runs=2, watchdog=0.05)
        async def test_waits_on_a_thread_that_never_answers():
            never = threading.Event()
            try:
                await asyncio.to_thread(never.wait)  # the watchdog fires first
            finally:
                never.set()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Potential deadlock at loop time*"])


def test_the_marker_io_grace_reaches_every_exploration_run(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        @pytest.mark.quiesce(runs=3, io_grace=0.25)
        async def test_sees_it():
            assert asyncio.get_running_loop().io_grace == 0.25
        """,
    )
    result.assert_outcomes(passed=1)


def test_a_fixture_that_deadlocks_in_its_teardown_is_named_once(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, pytest

        @pytest.fixture
        async def resource():
            yield "resource"
            await asyncio.Event().wait()  # its cleanup waits forever

        @pytest.mark.quiesce
        async def test_uses_it(resource):
            assert resource == "resource"
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*Deadlock: in the teardown of async fixture 'resource'*"])
    result.stdout.no_fnmatch_line("*The test left*")


def test_an_auto_claimed_test_gets_a_replay_line_that_claims_it_again(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        RACY.format(marker="").replace("@pytest.mark.quiesce\n", ""),
        "--quiesce-mode=auto",
        "--quiesce-runs=100",
    )
    result.assert_outcomes(failed=1)
    line = next(
        text for text in result.outlines if text.startswith("replay this failing schedule:")
    )
    assert " --quiesce-mode=auto --quiesce-replay=q1-" in line


def test_an_auto_claim_is_given_back_when_another_plugin_marks_the_test_later(
    pytester: pytest.Pytester,
) -> None:
    # pytest-asyncio 0.21 in its auto mode marks tests in collection_modifyitems.
    pytester.makeconftest(
        """
        import pytest

        def pytest_configure(config):
            config.addinivalue_line("markers", "asyncio: stands in for pytest-asyncio")

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker("asyncio")

        @pytest.hookimpl(tryfirst=True)
        def pytest_pyfunc_call(pyfuncitem):
            pyfuncitem.config.stash.setdefault("ran", []).append(pyfuncitem.name)
            return True
        """
    )
    result = run(
        pytester,
        """
        async def test_owned_by_the_other_plugin():
            pass
        """,
        "--quiesce-mode=auto",
    )
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*claimed by*")


def test_replay_counts_the_tests_left_after_last_failed_selection(
    pytester: pytest.Pytester,
) -> None:
    source = RACY.format(marker="") + ("\n@pytest.mark.quiesce\nasync def test_fine():\n    pass\n")
    first = run(pytester, source, "-p", "cacheprovider", "--quiesce-runs=100")
    first.assert_outcomes(failed=1, passed=1)
    again = pytester.runpytest(
        *PLUGIN_ARGS, "-p", "cacheprovider", "--lf", "--quiesce-replay=q1-AAEAAQ"
    )
    assert again.ret != pytest.ExitCode.USAGE_ERROR, again.stderr.str()
    again.assert_outcomes(failed=1)


def test_bad_marker_arguments_on_a_plain_test_are_errors_too(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.quiesce(sed=1)
        def test_typo(quiesce_loop):
            pass

        @pytest.mark.quiesce(runs=5)
        def test_runs_on_a_plain_test():
            pass
        """,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*invalid @pytest.mark.quiesce(...): unknown argument(s) sed*",
            "*@pytest.mark.quiesce(runs=..., policy=...) explores async def tests*",
        ]
    )
