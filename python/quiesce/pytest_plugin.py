"""The quiesce pytest plugin: run ``async def`` tests on a :class:`quiesce.Loop`.

Installed with the package (entry point ``pytest11``), so nothing needs enabling. It provides:

- the ``quiesce_loop`` fixture: a fresh :class:`quiesce.Loop`, set as the current event loop
  during the test and closed after it. Tasks the test leaves pending (other than background
  tasks) and errors passed to the loop's exception handler (for example "Task exception was
  never retrieved") make the test error at teardown, with a report naming them;
- the ``@pytest.mark.quiesce(seed=None, clock="virtual", background=False, runs=None,
  policy=None, watchdog=60.0)`` marker: an ``async def`` test carrying it runs on the
  ``quiesce_loop`` loop (the test may request the fixture too, and gets the same loop), and so
  do its function-scoped ``async def`` fixtures;
- the ini option ``quiesce_mode = strict | auto`` (or ``--quiesce-mode``): in ``auto`` mode
  every ``async def`` test that no other async plugin claims (no ``asyncio``, ``anyio`` or
  ``trio`` marker, no ``anyio_backend`` fixture) runs on quiesce;
- the options ``--quiesce-seed``, ``--quiesce-runs``, ``--quiesce-policy``,
  ``--quiesce-override`` and ``--quiesce-replay`` (``pytest --help``, group "quiesce"), and a
  header line saying which are in force;
- beside pytest-asyncio (0.21 to 1.x, strict or auto mode): an explicit quiesce mark wins over
  the ``asyncio`` mark auto mode adds, and pytest-asyncio's async fixtures requested by a
  quiesce test run on its loop (:mod:`quiesce._pytest_asyncio_interop`);
- for each passing exploration, what it ran (``-v``, ``-rA``, the terminal summary);
- a "quiesce" section in the report of every failing quiesce test: the loop's seed, clock and
  time, the tasks still pending, and the command line that reruns the test or replays a
  failing schedule.

Tests that other plugins own (pytest-asyncio's ``asyncio`` marker, anyio's ``anyio`` marker or
``anyio_backend`` fixture, pytest-trio) are left alone.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import math
import traceback
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Set, Tuple

import pytest

from quiesce import _pytest_asyncio_interop as pytest_asyncio_interop
from quiesce import _pytest_exploration as exploration
from quiesce import _pytest_fixtures as fixtures
from quiesce._errors import BudgetExceeded, Deadlock
from quiesce._explore import STRATEGIES, ExplorationFailed, ExploreResult, replay
from quiesce._loop import (
    _CLOCKS,
    DEFAULT_MAX_STEPS,
    DEFAULT_WATCHDOG,
    Loop,
    _current_loop,
    _set_current_loop,
)
from quiesce._teardown import cancel_and_shut_down, finalizer_tasks

#: ``--quiesce-policy`` and ``@pytest.mark.quiesce(policy=...)`` values.
POLICIES = STRATEGIES

#: ``quiesce_mode`` values.
MODES = ("strict", "auto")

#: Settings whose command-line option ``--quiesce-override`` lets win over the marker.
OVERRIDABLE = ("runs", "policy", "seed")

#: Markers (and so plugins) whose ``async def`` tests quiesce never takes in auto mode.
_OTHER_ASYNC_MARKERS = ("asyncio", "anyio", "trio")

#: Keyword arguments ``@pytest.mark.quiesce`` accepts, with their defaults.
MARKER_DEFAULTS: Dict[str, Any] = {
    "seed": None,
    "clock": "virtual",
    "background": False,
    "runs": None,
    "policy": None,
    "watchdog": DEFAULT_WATCHDOG,
    "max_steps": DEFAULT_MAX_STEPS,
    "io_grace": None,
}


_MARKER_HELP = (
    "quiesce(seed=None, clock='virtual', background=False, runs=None, policy=None, "
    "watchdog=60.0, max_steps=10_000_000, io_grace=None): run this async def test on a "
    "quiesce.Loop "
    "(deterministic scheduling, "
    "virtual time, deadlock reports); background=True lets it leave tasks pending; runs=N "
    "explores N schedules (policy: one of " + ", ".join(POLICIES) + ")."
)


class QuiesceRun:
    """What the plugin knows about the quiesce loop of one test: kept on the test item
    (``item.stash[quiesce.pytest_plugin.RUN_KEY]``) for the report section."""

    def __init__(self, loop: Loop, options: Dict[str, Any], seed_source: Optional[str]) -> None:
        self.loop = loop
        self.options = options
        #: Where the seed came from: ``"marker"``, ``"--quiesce-seed"`` or None (no seed).
        self.seed_source = seed_source
        #: The contexts passed to the loop's exception handler during the test.
        self.handler_calls: List[Dict[str, Any]] = []
        #: The exception the test body raised (set by the plugin when it ran the body).
        self.failure: Optional[BaseException] = None
        #: ``loop.time()`` when the loop was closed at teardown.
        self.final_time: Optional[float] = None
        #: How the test body ran: ``"loop"`` (once, on :attr:`loop`), ``"explore"``
        #: (``quiesce.explore`` with :attr:`call_kwargs`) or ``"replay"``; None if it did not.
        self.mode: Optional[str] = None
        #: The keyword arguments of the ``quiesce.explore`` / ``quiesce.replay`` call.
        self.call_kwargs: Dict[str, Any] = {}
        #: What :func:`quiesce.explore` returned (a passing exploration), else None.
        self.result: Optional[ExploreResult] = None
        #: Tasks already reported in another way (a fixture that deadlocked in its teardown),
        #: not blamed on the test as left pending.
        self.excused_tasks: Set[asyncio.Task[Any]] = set()


#: Stash key of the :class:`QuiesceRun` of a test that used the ``quiesce_loop`` fixture.
RUN_KEY = pytest.StashKey[QuiesceRun]()
#: Stash key: the test is an ``async def`` test this plugin runs.
_CLAIMED_KEY = pytest.StashKey[bool]()
#: Stash key: the test was claimed in auto mode (the ``quiesce`` marker was added by us).
_AUTO_KEY = pytest.StashKey[bool]()
#: Stash key: we added the ``quiesce_loop`` fixture to the test's fixtures.
_ADDED_FIXTURE_KEY = pytest.StashKey[bool]()
#: Stash key: the report of the call phase.
_CALL_REPORT_KEY = pytest.StashKey[pytest.TestReport]()


# -- options -----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Adds the ``quiesce`` option group and the ``quiesce_mode`` ini option."""
    group = parser.getgroup("quiesce", "quiesce: deterministic asyncio event loop for tests")
    group.addoption(
        "--quiesce-mode",
        dest="quiesce_mode",
        default=None,
        choices=MODES,
        help="'auto': run every async def test that no other async plugin claims on quiesce; "
        "'strict' (default): only tests marked @pytest.mark.quiesce. Overrides the "
        "quiesce_mode ini option.",
    )
    group.addoption(
        "--quiesce-seed",
        dest="quiesce_seed",
        type=int,
        default=None,
        metavar="S",
        help="default scheduling seed of quiesce loops (an int in range(0, 2**64)); a seed "
        "given in @pytest.mark.quiesce wins.",
    )
    group.addoption(
        "--quiesce-runs",
        dest="quiesce_runs",
        type=int,
        default=None,
        metavar="N",
        help="run each quiesce test N times on different schedules (quiesce.explore); "
        "runs=N in @pytest.mark.quiesce wins.",
    )
    group.addoption(
        "--quiesce-policy",
        dest="quiesce_policy",
        default=None,
        choices=POLICIES,
        help="how --quiesce-runs picks schedules (default: quiesce.explore's).",
    )
    group.addoption(
        "--quiesce-replay",
        dest="quiesce_replay",
        default=None,
        metavar="SCHEDULE",
        help="run the selected quiesce test once on this recorded schedule (from a failure "
        "report), e.g. pytest 'tests/test_x.py::test_y' --quiesce-replay=q1-...",
    )
    group.addoption(
        "--quiesce-trace",
        dest="quiesce_trace",
        default=None,
        metavar="PATH",
        help="with --quiesce-replay: write the replayed run's timeline to PATH (a page if it "
        "ends in .html, else a Chrome Trace Event file for Perfetto or chrome://tracing).",
    )
    group.addoption(
        "--quiesce-override",
        dest="quiesce_override",
        default=None,
        metavar="NAMES",
        help="comma-separated names among " + ", ".join(OVERRIDABLE) + ": those of "
        "--quiesce-runs, --quiesce-policy and --quiesce-seed win over @pytest.mark.quiesce "
        "(by default the marker wins). python -m quiesce explore passes the ones given to it.",
    )
    group.addoption(
        "--quiesce-shard",
        dest="quiesce_shard",
        default=None,
        metavar="I/K",
        help="make only the I-th of K shares of every exploration (for K CI jobs or machines; "
        "together they make the whole exploration). Under pytest-xdist the workers split "
        "each exploration further by themselves.",
    )
    group.addoption(
        "--quiesce-db",
        dest="quiesce_db",
        default=None,
        metavar="PATH",
        help="the failure database: failing schedules of explored tests are saved there and "
        "replayed first the next time (default: .quiesce in the rootdir; 'none': off).",
    )
    parser.addini(
        "quiesce_mode",
        help="'strict' (default): only tests marked @pytest.mark.quiesce run on quiesce; "
        "'auto': every async def test that no other async plugin claims.",
        default="strict",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker and checks the options."""
    config.addinivalue_line("markers", _MARKER_HELP)
    mode = _mode(config)
    if mode not in MODES:
        raise pytest.UsageError(
            f"quiesce_mode must be one of {_choices(MODES)}; got {mode!r} (in the ini file)"
        )
    seed = config.getoption("quiesce_seed", None)
    if seed is not None and not 0 <= seed < 2**64:
        raise pytest.UsageError(f"--quiesce-seed must be in range(0, 2**64); got {seed}")
    runs = config.getoption("quiesce_runs", None)
    if runs is not None and runs < 1:
        raise pytest.UsageError(f"--quiesce-runs must be a positive int; got {runs}")
    replay = config.getoption("quiesce_replay", None)
    if replay is not None and not replay.strip():
        raise pytest.UsageError("--quiesce-replay needs a schedule (from a failure report)")
    if replay is not None and runs is not None:
        raise pytest.UsageError("--quiesce-replay and --quiesce-runs exclude each other")
    if config.getoption("quiesce_trace", None) is not None and replay is None:
        raise pytest.UsageError(
            "--quiesce-trace writes the timeline of a replayed schedule: pass it with "
            "--quiesce-replay=SCHEDULE (a failing quiesce test's report prints the command)"
        )
    exploration.machine_shard(config)  # a UsageError for a bad --quiesce-shard
    unknown = sorted(set(_overrides(config)) - set(OVERRIDABLE))
    if unknown:
        raise pytest.UsageError(
            f"--quiesce-override takes names among {', '.join(OVERRIDABLE)} (comma-separated); "
            f"got {', '.join(map(repr, unknown))}"
        )


def _overrides(config: pytest.Config) -> List[str]:
    text = config.getoption("quiesce_override", None) or ""
    return [name.strip() for name in text.split(",") if name.strip()]


def _setting(item: pytest.Item, options: Dict[str, Any], name: str) -> Tuple[Any, Optional[str]]:
    """The effective value of the setting ``name`` (``runs``, ``policy`` or ``seed``) of
    ``item`` and where it came from (``"marker"``, ``"--quiesce-NAME"`` or None): the
    marker's, else the command line's; the command line's first if ``--quiesce-override``
    names it."""
    given = item.config.getoption(f"quiesce_{name}", None)
    source = f"--quiesce-{name}"
    if given is not None and name in _overrides(item.config):
        return given, source
    if options[name] is not None:
        return options[name], "marker"
    return given, source if given is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_report_header(config: pytest.Config) -> List[str]:
    """The line saying how quiesce runs this session's tests."""
    parts = [f"mode={_mode(config)}"]
    for name in ("seed", "runs", "policy", "replay", "shard", "db"):
        value = config.getoption(f"quiesce_{name}", None)
        if value is not None:
            parts.append(f"{name}={value}")
    if _overrides(config):
        parts.append(f"override={','.join(_overrides(config))}")
    return ["quiesce: " + ", ".join(parts)]


def _mode(config: pytest.Config) -> str:
    return config.getoption("quiesce_mode", None) or config.getini("quiesce_mode")


def _choices(values: Any) -> str:
    return ", ".join(repr(value) for value in values)


def _marker_options(item: pytest.Item) -> Dict[str, Any]:
    """The validated ``@pytest.mark.quiesce`` arguments of ``item``, over the defaults.
    Fails the test (at setup) with a message naming what is wrong."""
    options = dict(MARKER_DEFAULTS)
    mark = item.get_closest_marker("quiesce")
    if mark is None:
        return options

    def bad(what: str) -> None:
        pytest.fail(f"{item.nodeid}: invalid @pytest.mark.quiesce(...): {what}", pytrace=False)

    if mark.args:
        bad(f"it takes keyword arguments only ({', '.join(MARKER_DEFAULTS)}); got {mark.args!r}")
    unknown = sorted(set(mark.kwargs) - set(MARKER_DEFAULTS))
    if unknown:
        bad(
            f"unknown argument(s) {', '.join(unknown)}; it accepts "
            f"{', '.join(f'{key}={value!r}' for key, value in MARKER_DEFAULTS.items())}"
        )
    options.update(mark.kwargs)
    seed = options["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        bad(f"seed must be an int in range(0, 2**64) or None; got {seed!r}")
    if seed is not None and not 0 <= seed < 2**64:
        bad(f"seed must be in range(0, 2**64); got {seed!r}")
    if not isinstance(options["clock"], str) or options["clock"] not in _CLOCKS:
        bad(f"clock must be one of {_choices(_CLOCKS)}; got {options['clock']!r}")
    if not isinstance(options["background"], bool):
        bad(f"background must be True or False; got {options['background']!r}")
    runs = options["runs"]
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
        bad(f"runs must be a positive int or None; got {runs!r}")
    if options["policy"] is not None and options["policy"] not in POLICIES:
        bad(f"policy must be one of {_choices(POLICIES)} or None; got {options['policy']!r}")
    watchdog = options["watchdog"]
    if watchdog is not None and (
        isinstance(watchdog, bool)
        or not isinstance(watchdog, (int, float))
        or not math.isfinite(watchdog)
        or watchdog <= 0
    ):
        bad(f"watchdog must be a finite number of seconds > 0, or None; got {watchdog!r}")
    io_grace = options["io_grace"]
    if io_grace is not None and (
        isinstance(io_grace, bool)
        or not isinstance(io_grace, (int, float))
        or not math.isfinite(io_grace)
        or io_grace < 0
    ):
        bad(f"io_grace must be a finite number of seconds >= 0, or None; got {io_grace!r}")
    max_steps = options["max_steps"]
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        bad(f"max_steps must be a positive int or None; got {max_steps!r}")
    return options


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Checks the ``quiesce`` marker of every test carrying it, also the plain ``def`` tests
    that only use the ``quiesce_loop`` fixture: a typo must not pass silently."""
    if item.get_closest_marker("quiesce") is None or item.stash.get(_CLAIMED_KEY, False):
        return  # a claimed test's marker is checked by its quiesce_loop fixture
    options = _marker_options(item)
    if options["runs"] is not None or options["policy"] is not None:
        pytest.fail(
            f"{item.nodeid}: @pytest.mark.quiesce(runs=..., policy=...) explores async def "
            "tests; this test is not one quiesce runs (a plain def test, or another "
            "plugin's)",
            pytrace=False,
        )


# The name must start with "pytest_" for pytest to look at it (pytest-dev/pytest#11307).
@pytest.hookimpl(hookwrapper=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_without_pytest_asyncio_loops(item: pytest.Item) -> Iterator[None]:
    """While a quiesce test's fixtures are set up, pytest-asyncio's collection-time fixture
    wrappers (0.21 to 0.26) do not take the event loop fixture it added to them."""
    if not item.stash.get(_CLAIMED_KEY, False):
        yield
        return
    with pytest_asyncio_interop.InjectedArgumentsRemoved(item):
        yield


# -- which tests are ours ----------------------------------------------------------------------


def _is_async_test(item: pytest.Item) -> bool:
    return isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj)


def _other_plugin_owner(item: pytest.Item) -> Optional[str]:
    """The name of another async plugin's marker (or fixture) on ``item``, if any."""
    for name in _OTHER_ASYNC_MARKERS:
        if item.get_closest_marker(name) is not None:
            return f"@pytest.mark.{name}"
    if "anyio_backend" in getattr(item, "fixturenames", ()):
        return "the anyio_backend fixture"
    return None


def _claims(item: pytest.Item) -> bool:
    """Whether this plugin runs ``item``: an ``async def`` test marked quiesce, or in auto mode
    one that no other async plugin claims."""
    if not _is_async_test(item):
        return False
    if item.get_closest_marker("quiesce") is not None:
        return True
    return _mode(item.config) == "auto" and _other_plugin_owner(item) is None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Claims the ``async def`` tests this plugin runs: they get the ``quiesce_loop`` fixture
    first, and in auto mode the ``quiesce`` marker (so ``-m quiesce`` selects them)."""
    if not _claims(item):
        return
    item.stash[_CLAIMED_KEY] = True
    if item.get_closest_marker("quiesce") is None:
        item.add_marker("quiesce")
        item.stash[_AUTO_KEY] = True
    fixturenames = getattr(item, "fixturenames", None)
    if isinstance(fixturenames, list) and "quiesce_loop" not in fixturenames:
        fixturenames.insert(0, "quiesce_loop")
        item.stash[_ADDED_FIXTURE_KEY] = True


def _release(item: pytest.Item) -> None:
    """Gives back a test claimed in auto mode that another plugin marked after collection
    (pytest-asyncio 0.21 in its auto mode marks tests in ``collection_modifyitems``)."""
    item.stash[_CLAIMED_KEY] = False
    item.own_markers[:] = [mark for mark in item.own_markers if mark.name != "quiesce"]
    if item.stash.get(_ADDED_FIXTURE_KEY, False):
        fixturenames = getattr(item, "fixturenames", [])
        if "quiesce_loop" in fixturenames:
            fixturenames.remove("quiesce_loop")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    """Gives back auto-claimed tests that another plugin has marked since they were
    collected, and takes back tests marked ``@pytest.mark.quiesce`` from pytest-asyncio's
    auto mode (which marks every async test ``asyncio``)."""
    for index, item in enumerate(items):
        if item.stash.get(_AUTO_KEY, False):
            if _other_plugin_owner(item) is not None:
                _release(item)
        elif (
            item.stash.get(_CLAIMED_KEY, False)
            and item.get_closest_marker("asyncio") is not None
            and pytest_asyncio_interop.quiesce_mark_wins(item)
        ):
            plain = pytest_asyncio_interop.take_back(item)
            for key in (_CLAIMED_KEY, _ADDED_FIXTURE_KEY):
                if key in item.stash:
                    plain.stash[key] = item.stash[key]
            items[index] = plain
    items[:] = exploration.split_over_workers(
        items, _splits_over_workers, [_CLAIMED_KEY, _ADDED_FIXTURE_KEY, _AUTO_KEY]
    )


def _splits_over_workers(item: pytest.Item) -> bool:
    """Whether ``item`` explores numbered runs that xdist workers can share: a quiesce test
    with more than one run under a policy other than ``fifo`` and ``dfs`` (the bounded search
    runs in order). Judged from the marker as it is: a bad one fails at setup, unsplit."""
    if not item.stash.get(_CLAIMED_KEY, False) or item.config.getoption("quiesce_replay", None):
        return False
    mark = item.get_closest_marker("quiesce")
    marked = dict(mark.kwargs) if mark is not None else {}
    options = {name: marked.get(name) for name in OVERRIDABLE}
    runs, _ = _setting(item, options, "runs")
    policy, _ = _setting(item, options, "policy")
    return isinstance(runs, int) and runs > 1 and policy not in ("fifo", "dfs")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, on the controller.) Gives every worker the directory in which the
    shards of an exploration share their progress."""
    node.workerinput[exploration.SHARED_DIRECTORY_INPUT] = exploration.shared_directory(node.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Removes the directory the xdist workers shared progress in."""
    exploration.remove_shared_directory(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """``--quiesce-replay`` replays one test's schedule: it needs exactly that test selected;
    ``--quiesce-runs`` needs at least one quiesce test among those selected. Checked on the
    final selection (after ``-k``, ``-m``, ``--lf`` and the like)."""
    config = session.config
    replay = config.getoption("quiesce_replay", None)
    runs = config.getoption("quiesce_runs", None)
    if replay is None and runs is None:
        return
    items = session.items
    claimed = [item.nodeid for item in items if item.stash.get(_CLAIMED_KEY, False)]
    if items and not claimed:
        option = "--quiesce-replay" if replay is not None else "--quiesce-runs"
        unclaimed = [item for item in items if _is_async_test(item)]
        owner = _other_plugin_owner(unclaimed[0]) if unclaimed else None
        why = (
            f"{unclaimed[0].nodeid} is run by another plugin ({owner})"
            if owner is not None
            else "mark the test @pytest.mark.quiesce, or pass --quiesce-mode=auto to take "
            "every async def test no other plugin claims"
            if unclaimed
            else "only async def tests run on quiesce"
        )
        raise pytest.UsageError(
            f"{option}: none of the {len(items)} selected test(s) runs on quiesce; {why}"
        )
    if replay is not None and len(claimed) > 1:
        shown = ", ".join(claimed[:3]) + (", ..." if len(claimed) > 3 else "")
        raise pytest.UsageError(
            f"--quiesce-replay replays the schedule of one test, but {len(claimed)} quiesce "
            f"tests are selected ({shown}); pass the node id from the failure report, "
            "e.g. pytest 'tests/test_x.py::test_y' --quiesce-replay=SCHEDULE"
        )


# -- the loop fixture --------------------------------------------------------------------------


def _call_passed(item: pytest.Item) -> bool:
    report = item.stash.get(_CALL_REPORT_KEY, None)
    return report is not None and report.passed


@pytest.fixture
def quiesce_loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    """A fresh :class:`quiesce.Loop`, set as the current event loop during the test.

    Its options come from the test's ``@pytest.mark.quiesce(seed=..., clock=...,
    watchdog=...)`` marker, the seed otherwise from ``--quiesce-seed``. At teardown pending
    tasks are cancelled and awaited, async generators and the default executor shut down,
    and the loop closed. The test then errors if it left tasks pending (other than background
    tasks, :func:`quiesce.background`, unless the marker says ``background=True``) or if
    anything reached the loop's exception handler (a task exception never retrieved, a
    failing callback); both messages name the culprits.
    """
    item = request.node
    if item.stash.get(_CLAIMED_KEY, False):
        other = _other_plugin_owner(item)
        if other is not None:
            pytest.fail(
                f"{item.nodeid} is marked @pytest.mark.quiesce but also claimed by {other} "
                "(on the test, its class or its module): two plugins cannot both run it. "
                "Remove one of them. (pytest-asyncio's auto mode alone is no conflict: "
                "@pytest.mark.quiesce wins over it.)",
                pytrace=False,
            )
        problem = _foreign_loop_problems(item)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
    options = _marker_options(item)
    options["seed"], seed_source = _setting(item, options, "seed")
    loop = Loop(
        seed=options["seed"],
        clock=options["clock"],
        watchdog=options["watchdog"],
        io_grace=options["io_grace"],
    )
    run = QuiesceRun(loop, options, seed_source)
    item.stash[RUN_KEY] = run
    loop.set_exception_handler(lambda _loop, context: run.handler_calls.append(context))
    previous = _current_loop()
    _set_current_loop(loop)
    try:
        yield loop
    finally:
        try:
            problems = _dispose(loop, run, check=_call_passed(item))
        finally:
            _set_current_loop(
                previous if previous is not None and not previous.is_closed() else None
            )
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


def _dispose(loop: Loop, run: QuiesceRun, *, check: bool) -> List[str]:
    """Cancels what is left on ``loop`` (within a bounded grace period), shuts it down and
    closes it. Returns the problems to report (only when ``check``: the test itself
    passed)."""
    problems: List[str] = []
    if loop.is_running():  # pragma: no cover - the test left its own loop running
        loop.stop()
        return problems
    if not loop.is_closed():
        excused = set(getattr(loop, "_q_background", ())) | set(finalizer_tasks(loop))
        excused |= run.excused_tasks
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        leftover = [task for task in pending if task not in excused]
        if check and leftover and not run.options["background"]:
            names = ", ".join(repr(task.get_name()) for task in leftover)
            problems.append(
                f"The test left {len(leftover)} task(s) pending on its quiesce loop: {names}. "
                "They were cancelled at teardown. Await or cancel them in the test, mark "
                "long-lived services with quiesce.background(task), or allow this with "
                f"@pytest.mark.quiesce(background=True).\n\n{_report_text(loop)}"
            )
        problems.extend(_shut_down(loop))
        gc.collect()  # a task freed now reports its never-retrieved exception to the handler
        run.final_time = loop.time()
        loop.close()
    if check and run.handler_calls:
        problems.append(_handler_calls_text(run.handler_calls))
    return problems if check else []


def _shut_down(loop: Loop) -> List[str]:
    """Bounded teardown (:func:`quiesce._teardown.cancel_and_shut_down`), as problems."""
    outcome = cancel_and_shut_down(loop)
    problems = [f"While {what} at teardown: {exc}" for what, exc in outcome.errors]
    if outcome.stuck:
        names = ", ".join(repr(task.get_name()) for task in outcome.stuck)
        problems.append(
            f"Task(s) {names} did not finish after being cancelled at teardown (they swallow "
            f"the cancellation, or their cleanup never ends).\n\n{_report_text(loop)}"
        )
    for task in outcome.failed:
        loop.call_exception_handler(
            {
                "message": "unhandled exception while the task was cancelled at teardown",
                "exception": task.exception(),
                "task": task,
            }
        )
    return problems


def _report_text(loop: Loop) -> str:
    try:
        return str(loop.report())
    except Exception as exc:  # pragma: no cover - the report must never hide the failure
        return f"(no report: {exc!r})"


def _handler_calls_text(calls: List[Dict[str, Any]]) -> str:
    lines = [
        f"The loop's exception handler was called {len(calls)} time(s) during the test "
        "(errors that asyncio would only log):"
    ]
    for context in calls:
        lines.append("")
        lines.append(f"- {context.get('message', 'Unhandled error in event loop')}")
        for key, value in context.items():
            if key not in ("message", "exception"):
                lines.append(f"  {key}: {value!r}")
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            lines.extend("  " + line for line in formatted.rstrip().splitlines())
    return "\n".join(lines)


# -- async fixtures of quiesce tests -----------------------------------------------------------


def _explores(item: pytest.Item) -> bool:
    """Whether ``item`` runs many times on fresh loops (``runs=``, ``--quiesce-runs``,
    ``--quiesce-replay``) rather than once on its ``quiesce_loop``."""
    mark = item.get_closest_marker("quiesce")
    marked_runs = mark is not None and mark.kwargs.get("runs") is not None
    config = item.config
    return (
        marked_runs
        or config.getoption("quiesce_runs", None) is not None
        or config.getoption("quiesce_replay", None) is not None
    )


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Iterator[None]:
    """Runs the ``async def`` fixtures that a quiesce test requests on its loop: plain
    pytest ones and pytest-asyncio's (``@pytest_asyncio.fixture``, every async fixture in its
    auto mode, plugins built on it such as pytest-aiohttp) alike."""
    func = fixturedef.func
    item = getattr(request, "_pyfuncitem", None)
    if (
        item is None
        or not item.stash.get(_CLAIMED_KEY, False)
        or "anyio_backend" in request.fixturenames
    ):
        yield
        return
    run = item.stash.get(RUN_KEY, None)
    original = pytest_asyncio_interop.original_fixture_function(func)
    if not fixtures.is_async_fixture(original):
        if _explores(item):
            outer_loop = run.loop if run is not None else None
            fixtures.refuse_per_run_values(fixturedef, request, item, outer_loop)
        if not pytest_asyncio_interop.is_marked_fixture(func):
            yield
            return
        fixturedef.func = fixtures.without_loop_of_its_own(func, request)
    elif fixturedef.scope != "function":  # pragma: no cover - refused by quiesce_loop first
        pytest.fail(_wide_scope_message(item, [fixturedef]), pytrace=False)
    elif _explores(item):
        fixturedef.func = fixtures.per_run_fixture(
            fixturedef.argname, fixtures.bound_fixture(original, request)
        )
    else:
        request.getfixturevalue("quiesce_loop")  # sets up the loop (and RUN_KEY) first
        run = item.stash[RUN_KEY]
        fixturedef.func = fixtures.on_loop(
            original,
            run.loop,
            request,
            max_steps=run.options["max_steps"],
            excused_tasks=run.excused_tasks,
        )
    try:
        yield
    finally:
        fixturedef.func = func


def _wide_scope_message(item: pytest.Item, fixturedefs: List[Any]) -> str:
    shown = ", ".join(f"{d.argname!r} (scope={d.scope!r})" for d in fixturedefs)
    return (
        f"{item.nodeid} runs on a fresh quiesce loop of its own, but requests the async "
        f"fixture(s) {shown}, which would run on another event loop, shared with other "
        "tests. Make them function-scoped (the default), or leave this test to the plugin "
        "that owns that loop (remove @pytest.mark.quiesce)."
    )


def _foreign_loop_problems(item: pytest.Item) -> Optional[str]:
    """Why ``item``'s fixtures cannot all run on its quiesce loop, or None: an async fixture
    of a wider scope than the test (set up once on another loop, maybe by another test), or a
    request for one of pytest-asyncio's event loops."""
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is None:  # pragma: no cover - not a Function item
        return None
    active = [defs[-1] for defs in fixtureinfo.name2fixturedefs.values() if defs]
    wide = [
        fixturedef
        for fixturedef in active
        if fixturedef.scope != "function"
        and fixtures.is_async_fixture(
            pytest_asyncio_interop.original_fixture_function(fixturedef.func)
        )
    ]
    if wide:
        return _wide_scope_message(item, wide)
    loops = pytest_asyncio_interop.loop_fixtures_requested(item, active)
    if loops:
        return (
            f"{item.nodeid} runs on its quiesce loop, but asks for pytest-asyncio's event "
            f"loop: {', '.join(loops)}. That loop is not the one the test runs on: use "
            "asyncio.get_running_loop() in async code, or the quiesce_loop fixture."
        )
    return None


# -- running the tests -------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    """Runs a claimed ``async def`` test on its ``quiesce_loop``; with ``runs`` (marker or
    ``--quiesce-runs``) through :func:`quiesce.explore`, with ``--quiesce-replay`` through
    :func:`quiesce.replay`."""
    __tracebackhide__ = True
    if not pyfuncitem.stash.get(_CLAIMED_KEY, False):
        return None
    testfunction = pyfuncitem.obj
    if not inspect.iscoroutinefunction(testfunction):
        return None  # pragma: no cover - another plugin wrapped it after all
    run = pyfuncitem.stash[RUN_KEY]
    config = pyfuncitem.config
    funcargs = pyfuncitem.funcargs
    testargs = {arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    schedule = config.getoption("quiesce_replay", None)
    runs, _ = _setting(pyfuncitem, run.options, "runs")
    if schedule is None and runs is None:
        run.mode = "loop"
        task = run.loop.create_task(testfunction(**testargs), name=pyfuncitem.name)
        try:
            run.loop._q_run_until_done(task, "the test", None, run.options["max_steps"])
            task.result()
        except (Deadlock, BudgetExceeded) as exc:
            run.failure = exc
            task.cancel()
            # The message holds the report; the loop's own frames would only bury it.
            raise exc.with_traceback(None) from None
        except BaseException as exc:
            run.failure = exc
            raise
        return True

    def make() -> Any:
        return fixtures.run_with_fixtures(testfunction, testargs, run.loop)

    # quiesce.explore names the test in its replay hint: name it after the test.
    make.__name__ = getattr(testfunction, "__name__", pyfuncitem.name)
    make.__qualname__ = getattr(testfunction, "__qualname__", pyfuncitem.name)
    kwargs: Dict[str, Any] = {}
    if run.options["clock"] != "virtual":
        kwargs["clock"] = run.options["clock"]
    if run.options["watchdog"] != DEFAULT_WATCHDOG:
        kwargs["watchdog"] = run.options["watchdog"]
    if run.options["io_grace"] is not None:
        kwargs["io_grace"] = run.options["io_grace"]
    mark = pyfuncitem.get_closest_marker("quiesce")
    if mark is not None and "max_steps" in mark.kwargs:
        kwargs["max_steps"] = run.options["max_steps"]
    function: Callable[..., Any]
    if schedule is not None:
        run.mode, function = "replay", replay
        args: Tuple[Any, ...] = (make, schedule)
        trace = config.getoption("quiesce_trace", None)
        if trace is not None:
            kwargs["trace"] = trace
    else:
        run.mode, function = "explore", functools.partial(exploration.explore_item, pyfuncitem)
        args = (make,)
        kwargs["runs"] = runs
        policy, _ = _setting(pyfuncitem, run.options, "policy")
        if policy is not None:
            kwargs["policy"] = policy
        if run.options["seed"] is not None:
            kwargs["seed"] = run.options["seed"]
    run.call_kwargs = dict(kwargs) if schedule is None else {"schedule": schedule, **kwargs}
    try:
        result = function(*args, **kwargs)
        if result is not None and result.failure is not None:
            raise ExplorationFailed(result)
        if result is not None and result.failure_elsewhere is not None:
            _skip_for_lower_failure(pyfuncitem, result.failure_elsewhere)
        run.result = result
    except AssertionError as exc:
        run.failure = exc
        if isinstance(exc, ExplorationFailed):
            # Its message holds the failing run's traceback; exploration's own frames would
            # only bury it.
            raise exc.with_traceback(None) from None
        raise
    except BaseException as exc:
        run.failure = exc
        raise
    return True


# -- reporting ---------------------------------------------------------------------------------


def _mode_option(item: pytest.Item) -> str:
    """What a command line that reruns ``item`` must add so that quiesce takes it again."""
    return " --quiesce-mode=auto" if item.stash.get(_AUTO_KEY, False) else ""


def _quote(nodeid: str) -> str:
    return "'" + nodeid.replace("'", "'\"'\"'") + "'"


def _rerun_command(item: pytest.Item, *options: str) -> str:
    """The command line that runs ``item`` again as quiesce ran it, with ``options``."""
    nodeid = exploration.original_nodeid(item)
    return " ".join(["pytest", _quote(nodeid) + _mode_option(item), *options])


def _skip_for_lower_failure(item: pytest.Item, index: int) -> None:
    """Ends a shard whose exploration failed at a lower run another shard reports."""
    shard = exploration.shard_of(item)
    owner = shard.owner(index) if shard is not None and index >= 0 else 1
    what = (
        f"run {index + 1} of this exploration failed"
        if index >= 0
        else "a schedule saved in the failure database failed again"
    )
    raise pytest.skip.Exception(
        f"quiesce: {what}; {exploration.shard_nodeid(item, owner)} reports it (a failure is "
        "reported once, by the shard that owns the first failing run)",
        _use_item_location=True,
    )


def _section_text(item: pytest.Item, run: QuiesceRun) -> str:
    loop = run.loop
    options = run.options
    lines: List[str] = []
    if run.mode in ("explore", "replay"):
        call = ", ".join(f"{key}={value!r}" for key, value in run.call_kwargs.items())
        lines.append(f"ran with quiesce.{run.mode}({call})")
        failing_seed = getattr(run.failure, "seed", None)
        if failing_seed is not None:
            lines.append(f"failing run's seed: {failing_seed}")
        lines.append(f"clock: {options['clock']}")
        schedule = getattr(run.failure, "schedule", None)
        if schedule is None and run.mode == "replay":
            schedule = run.call_kwargs.get("schedule")
        if schedule is not None:
            lines.append(
                "replay this failing schedule: "
                + _rerun_command(item, f"--quiesce-replay={schedule}")
            )
            lines.append(
                "see its timeline: "
                + _rerun_command(
                    item, f"--quiesce-replay={schedule}", "--quiesce-trace=timeline.html"
                )
            )
        return "\n".join(lines)
    seed = options["seed"]
    rerun: List[str] = []
    if seed is None:
        lines.append("seed: None (first in, first out)")
    elif run.seed_source == "--quiesce-seed":
        lines.append(f"seed: {seed} (from --quiesce-seed)")
        rerun.append(f"--quiesce-seed={seed}")
        if "seed" in _overrides(item.config):
            rerun.append("--quiesce-override=seed")
    else:
        lines.append(f"seed: {seed} (from @pytest.mark.quiesce)")
    lines.append("rerun exactly: " + _rerun_command(item, *rerun))
    lines.append(f"clock: {options['clock']}")
    now = run.final_time if loop.is_closed() and run.final_time is not None else loop.time()
    lines.append(f"loop time: {now!r}")
    if not loop.is_closed():
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if pending and isinstance(run.failure, (Deadlock, BudgetExceeded)):
            lines.append("pending tasks: see the report in the error above")
        elif pending:
            lines.extend(["", _report_text(loop)])
        if run.handler_calls:
            lines.extend(["", _handler_calls_text(run.handler_calls)])
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Adds the "quiesce" section (seed, clock, loop time, pending tasks, replay command) to
    the report of a failing quiesce test."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_REPORT_KEY] = report
    run = item.stash.get(RUN_KEY, None)
    if run is not None and run.result is not None and report.when == "call" and report.passed:
        report.user_properties.append((EXPLORED_PROPERTY, _explored_summary(run.result)))
        report.sections.append(("quiesce", str(run.result)))
    if run is None or not report.failed:
        return
    if run.failure is None and call.excinfo is not None and report.when == "call":
        run.failure = call.excinfo.value
    report.sections.append(("quiesce", _section_text(item, run)))


#: Name of the ``user_properties`` entry of a passing explored test's report: a dict with the
#: runs, distinct schedules, policy and seed of the exploration (it crosses to the pytest-xdist
#: controller with the report).
EXPLORED_PROPERTY = "quiesce_explored"


def _explored_summary(result: ExploreResult) -> Dict[str, Any]:
    return {
        "runs": result.runs,
        "schedules": result.schedules,
        "policy": result.strategy,
        "seed": result.seed,
        "exhausted": result.exhausted,
        "bound": result.bound,
        "shard": result.shard,
        "saved": result.saved_runs,
    }


def _explored(report: Any) -> Optional[Dict[str, Any]]:
    for name, value in getattr(report, "user_properties", ()):
        if name == EXPLORED_PROPERTY and isinstance(value, dict):
            return value
    return None


def _explored_text(summary: Dict[str, Any]) -> str:
    text = (
        f"{summary['runs']:,} schedule(s), {summary['schedules']:,} distinct, none failed "
        f"(policy {summary['policy']}, seed {summary['seed']}"
    )
    if summary.get("bound") is not None:
        every = "all" if summary.get("exhausted") else "not all"
        text += f", {every} within {summary['bound']} delay(s)"
    if summary.get("shard"):
        number, count = summary["shard"]
        text += f", shard {number} of {count}"
    if summary.get("saved"):
        text += f"; {summary['saved']} saved failing schedule(s) replayed first"
    return text + ")"


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: Any, config: pytest.Config) -> Optional[Tuple[str, str, Any]]:
    """In ``-v`` output, a passing explored test says how many schedules it ran."""
    summary = _explored(report)
    if summary is None or report.when != "call" or not report.passed:
        return None
    return "passed", ".", (f"PASSED ({_explored_text(summary)})", {"green": True})


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """A "quiesce" section listing each passing exploration: schedules run, distinct, policy."""
    # The terminal reporter keeps every report (the pytest-xdist controller's too: the summary
    # travels in the report's user_properties).
    explored = [
        (report.nodeid, summary)
        for report in terminalreporter.stats.get("passed", [])
        if getattr(report, "when", None) == "call"
        for summary in [_explored(report)]
        if summary is not None
    ]
    if not explored:
        return
    terminalreporter.section("quiesce")
    shown = 20
    for nodeid, summary in explored[:shown]:
        terminalreporter.write_line(f"{nodeid}: {_explored_text(summary)}")
    if len(explored) > shown:
        terminalreporter.write_line(f"... and {len(explored) - shown} more passing explorations")
