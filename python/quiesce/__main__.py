"""``python -m quiesce``: run a program on quiesce loops; explore and replay a test's schedules.

python -m quiesce run [--seed N] [--clock virtual|real] SCRIPT [ARGS...]
python -m quiesce run [--seed N] [--clock virtual|real] -m MODULE [ARGS...]
python -m quiesce explore TEST_ID [--runs N] [--policy P] [--seed S] [PYTEST_ARGS...]
python -m quiesce replay TEST_ID SCHEDULE [PYTEST_ARGS...]
python -m quiesce --version
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Dict, List, Optional, Sequence, Tuple

import quiesce
from quiesce._errors import Deadlock
from quiesce._explore import DEFAULT_RUNS, STRATEGIES
from quiesce._failure_db import read_entry
from quiesce._loop import _CLOCKS
from quiesce._policy import use_quiesce_loops

PROG = "python -m quiesce"


def _seed(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(
            f"invalid seed {text!r}: expected an integer in range(0, 2**64)"
        )
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected an integer >= 1")
    return value


def _parsers() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "quiesce: a deterministic asyncio event loop for tests.\n"
            "Run a program with every asyncio event loop a quiesce.Loop, or explore and\n"
            "replay the interleavings of a pytest test."
        ),
        epilog=(
            "examples:\n"
            "  python -m quiesce run app.py --port 8080       # app.py on quiesce loops\n"
            "  python -m quiesce run --seed 7 -m mypkg.tool   # a module, seeded scheduling\n"
            "  python -m quiesce explore tests/test_x.py::test_y --runs 500\n"
            "  python -m quiesce replay tests/test_x.py::test_y SCHEDULE\n"
            "\n"
            "'python -m quiesce COMMAND --help' describes each command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"quiesce {quiesce.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a script or module with every asyncio event loop a quiesce.Loop",
        description=(
            "Runs SCRIPT (or -m MODULE) as python would, with every loop asyncio makes by "
            "itself a quiesce.Loop(seed=..., clock=...): asyncio.run(), asyncio.Runner() and "
            "asyncio.new_event_loop() make one. A quiesce.Deadlock that ends the program is "
            "printed with its report, and the exit status is 1; otherwise the exit status is "
            "the program's."
        ),
        allow_abbrev=False,
    )
    run.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="scheduling seed of every loop (default: first in, first out)",
    )
    run.add_argument(
        "--clock", choices=_CLOCKS, default="virtual", help="the loops' clock (default: virtual)"
    )
    run.add_argument(
        "-m",
        dest="module",
        metavar="MODULE",
        help="run library module MODULE as a script (like python -m); the rest are its ARGS",
    )
    run.add_argument("script", nargs="?", metavar="SCRIPT", help="the script to run")
    run.add_argument(
        "args", nargs="*", metavar="ARGS", help="the program's arguments (its sys.argv[1:])"
    )

    explore = commands.add_parser(
        "explore",
        help="run a pytest test under many schedules (the quiesce pytest plugin)",
        description=(
            "Runs python -m pytest TEST_ID --quiesce-runs=N [--quiesce-policy=P] "
            "[--quiesce-seed=S] [--quiesce-override=...] [PYTEST_ARGS...] and exits with "
            "pytest's status. Arguments other than the ones below are passed on to pytest; the "
            "ones below, when given, win over the test's @pytest.mark.quiesce."
        ),
        allow_abbrev=False,
    )
    explore.add_argument("test_id", metavar="TEST_ID", help="the pytest node id to explore")
    explore.add_argument(
        "--runs",
        type=_positive_int,
        default=None,
        help="how many schedules to try (default: the test's @pytest.mark.quiesce(runs=...), "
        f"else {DEFAULT_RUNS}); given, it wins over the marker",
    )
    explore.add_argument(
        "--policy",
        choices=STRATEGIES,
        default=None,
        help="how to pick the schedules (default: the marker's, else auto); given, it wins "
        "over the marker",
    )
    explore.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="seed of the exploration (default: the marker's, else 0); given, it wins over "
        "the marker",
    )

    replay = commands.add_parser(
        "replay",
        help="re-run a pytest test under one recorded schedule",
        description=(
            "Runs python -m pytest TEST_ID --quiesce-replay=SCHEDULE [PYTEST_ARGS...] and exits "
            "with pytest's status. Other arguments are passed on to pytest. Given an entry of "
            "the failure database (a .json file under .quiesce/) instead of TEST_ID and "
            "SCHEDULE, replays the test and schedule it saved."
        ),
        allow_abbrev=False,
    )
    replay.add_argument(
        "test_id",
        metavar="TEST_ID",
        help="the pytest node id to replay, or a failure database entry (ENTRY.json)",
    )
    replay.add_argument(
        "schedule",
        metavar="SCHEDULE",
        nargs="?",
        help="the schedule, as printed by a failed exploration (not with ENTRY.json)",
    )
    return parser, {"run": run, "explore": explore, "replay": replay}


def explore_command(
    test_id: str,
    *,
    runs: Optional[int] = None,
    policy: Optional[str] = None,
    seed: Optional[int] = None,
    pytest_args: Sequence[str] = (),
) -> List[str]:
    """The command ``python -m quiesce explore`` runs: this interpreter's pytest on
    ``test_id`` with the quiesce plugin's exploration options, then ``pytest_args``. The
    settings given (not None) win over the test's marker (``--quiesce-override``)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        test_id,
        "--quiesce-mode=auto",
        f"--quiesce-runs={runs if runs is not None else DEFAULT_RUNS}",
    ]
    if policy is not None:
        command.append(f"--quiesce-policy={policy}")
    if seed is not None:
        command.append(f"--quiesce-seed={seed}")
    settings = (("runs", runs), ("policy", policy), ("seed", seed))
    given = [name for name, value in settings if value is not None]
    if given:
        command.append(f"--quiesce-override={','.join(given)}")
    return [*command, *pytest_args]


def replay_command(test_id: str, schedule: str, *, pytest_args: Sequence[str] = ()) -> List[str]:
    """The command ``python -m quiesce replay`` runs: this interpreter's pytest on ``test_id``
    with the quiesce plugin's ``--quiesce-replay``, then ``pytest_args``."""
    return [
        sys.executable,
        "-m",
        "pytest",
        test_id,
        "--quiesce-mode=auto",
        f"--quiesce-replay={schedule}",
        *pytest_args,
    ]


def pytest_command(argv: Sequence[str]) -> List[str]:
    """Parses an ``explore ...`` or ``replay ...`` command line (the arguments after
    ``python -m quiesce``) and returns the pytest command it runs. Exits with status 2 and a
    usage message on bad arguments, as the command line does."""
    parser, _ = _parsers()
    argv = list(argv)
    if len(argv) >= 2 and argv[0] == "replay" and argv[1].endswith(".json"):
        # Everything after the entry goes to pytest as it is: argparse (3.14+) would take a
        # pytest option's value (`-p no:cacheprovider`) for the optional SCHEDULE.
        return _replay_entry_command(parser, argv[1], argv[2:])
    options, rest = parser.parse_known_args(argv)
    if options.command == "explore":
        return explore_command(
            options.test_id,
            runs=options.runs,
            policy=options.policy,
            seed=options.seed,
            pytest_args=rest,
        )
    if options.command == "replay":
        if options.schedule is None:
            parser.error(
                "replay takes TEST_ID SCHEDULE (from a failure report), or one failure "
                f"database entry ENTRY.json; got only {options.test_id!r}"
            )
        return replay_command(options.test_id, options.schedule, pytest_args=rest)
    parser.error("expected an explore or replay command")
    raise AssertionError("unreachable")  # parser.error exits


def _replay_entry_command(
    parser: argparse.ArgumentParser, path: str, pytest_args: Sequence[str]
) -> List[str]:
    """The pytest command replaying failure database entry ``path``."""
    try:
        entry = read_entry(Path(path))
    except ValueError as error:
        parser.error(str(error))
    if not entry.rootdir:
        return replay_command(entry.nodeid, entry.schedule, pytest_args=pytest_args)
    # The node id is relative to the rootdir it was found under: run it from there.
    test_id = os.path.join(entry.rootdir, entry.nodeid)
    rootdir = f"--rootdir={entry.rootdir}"
    return replay_command(test_id, entry.schedule, pytest_args=[rootdir, *pytest_args])


def _split_run_args(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Splits the arguments of ``run`` into quiesce's (up to and including SCRIPT or
    ``-m MODULE``) and the program's (everything after, options included, as python does)."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--", "-m"):
            return argv[: i + 2], argv[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):
            return argv[: i + 1], argv[i + 1 :]  # -mMODULE
        if arg in ("--seed", "--clock"):
            i += 2
        elif arg.startswith("-") and arg != "-":
            i += 1  # --seed=N, -h, or an unknown option argparse reports
        else:
            return argv[: i + 1], argv[i + 1 :]
    return argv, []


def _module_error(module: str) -> Optional[str]:
    """Why ``python -m MODULE`` could not start, or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as error:
        return f"Error while finding module specification for {module!r} ({error})"
    if spec is None:
        return f"No module named {module}"
    if spec.submodule_search_locations is not None:
        try:
            main_spec = importlib.util.find_spec(f"{module}.__main__")
        except (ImportError, ValueError):
            main_spec = None
        if main_spec is None:
            return (
                f"No module named {module}.__main__; {module!r} is a package and cannot be "
                "directly executed"
            )
    return None


def _run(options: argparse.Namespace, args: Sequence[str], usage: argparse.ArgumentParser) -> int:
    """``run``: makes every loop asyncio creates by itself a quiesce loop (see
    :func:`quiesce._policy.use_quiesce_loops`: a policy before 3.14, asyncio's loop factory
    function from 3.14 on), sets ``sys.argv`` (and ``sys.path[0]``) as python would, and runs
    the script or module as ``__main__``. This stays so for the rest of the process (threads
    and atexit handlers included).

    Returns the exit status: 0 when the program ends, 1 after an uncaught exception (shown by
    ``sys.excepthook``) or a :class:`quiesce.Deadlock` (its report printed to stderr).
    ``SystemExit`` from the program propagates, as does ``KeyboardInterrupt``.
    """
    use_quiesce_loops(seed=options.seed, clock=options.clock)
    module: Optional[str] = options.module
    script: Optional[str] = options.script
    if module is None and script is None:
        usage.error("a SCRIPT or -m MODULE is required")
    if module is not None:
        sys.argv = [module, *args]
        error = _module_error(module)  # may import the parent package: after the loops are set
        if error is not None:
            usage.error(error)
    else:
        assert script is not None
        if not os.path.exists(script):
            usage.error(
                f"can't open file {os.path.abspath(script)!r}: [Errno 2] No such file or directory"
            )
        sys.argv = [script, *args]
        if not getattr(sys.flags, "safe_path", False) and os.path.isfile(script):
            # As `python SCRIPT`: the script's directory replaces `-m quiesce`'s cwd.
            directory = os.path.dirname(os.path.realpath(script))
            if sys.path:
                sys.path[0] = directory
            else:
                sys.path.insert(0, directory)
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(script, run_name="__main__")  # type: ignore[arg-type]
    except Deadlock as deadlock:
        sys.stdout.flush()
        print(f"quiesce.Deadlock: {deadlock}", file=sys.stderr)
        return 1
    except Exception as error:
        sys.stdout.flush()
        # The default hook prints the exception's own __traceback__, not its argument.
        error.__traceback__ = _program_traceback(error)
        sys.excepthook(type(error), error, error.__traceback__)
        return 1
    return 0


def _program_traceback(error: BaseException) -> Optional[TracebackType]:
    """``error``'s traceback without the frames of this module and of runpy, as python shows
    an uncaught exception of a script (None if nothing is left: a script's SyntaxError)."""
    tb = error.__traceback__
    while tb is not None and (
        tb.tb_frame.f_globals is globals() or tb.tb_frame.f_globals is vars(runpy)
    ):
        tb = tb.tb_next
    return tb


def _call(command: Sequence[str]) -> int:
    """Runs ``command`` with this process's standard streams; returns its exit status."""
    process = subprocess.Popen(list(command))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # pytest got the SIGINT too: let it report and stop.
        return process.wait()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``python -m quiesce`` command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser, sub = _parsers()
    if not args:
        parser.print_help()
        return 0
    if args[0] == "run":
        ours, program_args = _split_run_args(args[1:])
        return _run(parser.parse_args(["run", *ours]), program_args, sub["run"])
    options, _ = parser.parse_known_args(args)
    if options.command is None:
        parser.error(f"unrecognized arguments: {' '.join(args)}")
    if importlib.util.find_spec("pytest") is None:
        sub[options.command].error(f"{options.command} runs pytest, which is not installed")
    return _call(pytest_command(args))


if __name__ == "__main__":
    sys.exit(main())
