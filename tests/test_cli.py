"""``python -m quiesce``: run, explore, replay, --version, help and usage errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional

import pytest

import quiesce
from quiesce.__main__ import explore_command, pytest_command, replay_command


def quiesce_cli(
    *args: str, cwd: Path, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """Runs ``python -W error -m quiesce ARGS`` in ``cwd``; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "quiesce", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


SHOW_LOOP = """
    import asyncio
    import sys

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(60):
            await asyncio.sleep(60)
        print(type(loop).__module__, type(loop).__qualname__, loop.time(), loop.seed, loop.clock)
        print(__name__, sys.argv[1:])

    asyncio.run(main())
"""


# -- run ---------------------------------------------------------------------------------------


def test_run_script_every_loop_is_a_quiesce_loop(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", SHOW_LOOP)
    proc = quiesce_cli("run", "prog.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["quiesce Loop 3600.0 None virtual", "__main__ []"]
    assert proc.stderr == ""


def test_run_passes_seed_and_clock_and_leaves_later_options_to_the_script(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", SHOW_LOOP.replace("range(60)", "range(0)"))
    proc = quiesce_cli(
        "run",
        "--seed",
        "12",
        "--clock=real",
        "prog.py",
        "a",
        "--seed",
        "3",
        "-m",
        "x",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["quiesce", "Loop"]
    assert lines[0].split()[3:] == ["12", "real"]
    assert lines[1] == "__main__ ['a', '--seed', '3', '-m', 'x']"


def test_run_sets_argv0_and_the_script_directory_first_on_sys_path(tmp_path: Path) -> None:
    write(tmp_path / "app" / "helper.py", "VALUE = 'imported from the script directory'\n")
    script = write(
        tmp_path / "app" / "prog.py",
        """
        import sys
        import helper

        print(sys.argv[0])
        print(sys.path[0])
        print(helper.VALUE)
        """,
    )
    proc = quiesce_cli("run", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(script),
        os.path.realpath(tmp_path / "app"),
        "imported from the script directory",
    ]


def test_run_new_event_loop_is_a_quiesce_loop_too(tmp_path: Path) -> None:
    write(
        tmp_path / "prog.py",
        """
        import asyncio

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.sleep(90))
            print(type(loop).__qualname__, loop.time())
        finally:
            loop.close()
        """,
    )
    proc = quiesce_cli("run", "prog.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Loop 90.0"]


def test_run_exit_status_is_the_scripts(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", "import sys\nprint('bye')\nsys.exit(3)\n")
    proc = quiesce_cli("run", "prog.py", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == "bye\n"


def test_run_deadlock_prints_the_report_and_exits_1(tmp_path: Path) -> None:
    write(
        tmp_path / "stuck.py",
        """
        import asyncio

        async def main():
            event = asyncio.Event()
            print("waiting", flush=True)
            await asyncio.get_running_loop().create_task(event.wait(), name="never-set")

        asyncio.run(main())
        """,
    )
    proc = quiesce_cli("run", "stuck.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == "waiting\n"
    assert proc.stderr.startswith("quiesce.Deadlock: Deadlock at loop time 0.0: ")
    assert "Task 'never-set'" in proc.stderr
    assert "stuck.py:7 in main" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_uncaught_exception_shows_the_scripts_traceback(tmp_path: Path) -> None:
    write(
        tmp_path / "boom.py",
        """
        import asyncio

        async def main():
            await asyncio.sleep(5)
            raise ValueError("boom")

        asyncio.run(main())
        """,
    )
    proc = quiesce_cli("run", "boom.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "boom.py", line 8, in <module>' in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: boom")
    assert "__main__.py" not in proc.stderr and "runpy" not in proc.stderr


def test_run_module(tmp_path: Path) -> None:
    write(tmp_path / "mymod.py", SHOW_LOOP)
    proc = quiesce_cli("run", "--seed", "5", "-m", "mymod", "x", "--clock", "real", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "quiesce Loop 3600.0 5 virtual",
        "__main__ ['x', '--clock', 'real']",
    ]


def test_run_package_main_module(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(
        tmp_path / "pkg" / "__main__.py",
        """
        import asyncio
        import sys

        async def main():
            await asyncio.sleep(7)
            return asyncio.get_running_loop().time()

        print(__name__, sys.argv[0].endswith("__main__.py"), sys.argv[1:], asyncio.run(main()))
        sys.exit(4)
        """,
    )
    proc = quiesce_cli("run", "-m", "pkg", "arg", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.splitlines() == ["__main__ True ['arg'] 7.0"]


def test_run_module_deadlock(tmp_path: Path) -> None:
    write(
        tmp_path / "stuckmod.py",
        """
        import asyncio

        async def main():
            lock = asyncio.Lock()
            async with lock:
                await asyncio.get_running_loop().create_task(lock.acquire(), name="second-taker")

        asyncio.run(main())
        """,
    )
    proc = quiesce_cli("run", "-m", "stuckmod", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("quiesce.Deadlock: Deadlock at loop time 0.0")
    assert "Task 'second-taker'" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.py"], "can't open file"),
        (["run", "--seed", "minus-one", "prog.py"], "argument --seed: invalid seed 'minus-one'"),
        (["run", "--seed", str(2**64), "prog.py"], "argument --seed: invalid seed"),
        (["run", "--clock", "sundial", "prog.py"], "argument --clock: invalid choice: 'sundial'"),
        (["run", "-m", "no_such_module_here"], "No module named no_such_module_here"),
        (["run", "-m", "pkg_without_main"], "is a package and cannot be directly executed"),
        (["run"], "a SCRIPT or -m MODULE is required"),
        (["run", "--seed", "3"], "a SCRIPT or -m MODULE is required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["explore"], "TEST_ID"),
        (["explore", "t.py::x", "--runs", "0"], "argument --runs: invalid count '0'"),
        (["explore", "t.py::x", "--policy", "lucky"], "argument --policy: invalid choice"),
        (["replay", "t.py::x"], "SCHEDULE"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list, message: str) -> None:
    write(tmp_path / "prog.py", "print('must not run')\n")
    write(tmp_path / "pkg_without_main" / "__init__.py", "")
    proc = quiesce_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: python -m quiesce")
    assert message in proc.stderr


def test_version(tmp_path: Path) -> None:
    proc = quiesce_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == f"quiesce {quiesce.__version__}\n"


def test_no_arguments_prints_help(tmp_path: Path) -> None:
    proc = quiesce_cli(cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m quiesce")
    for command in ("run", "explore", "replay"):
        assert f"    {command} " in proc.stdout


def test_run_help_lists_the_options(tmp_path: Path) -> None:
    proc = quiesce_cli("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--seed", "--clock", "-m MODULE", "SCRIPT", "ARGS"):
        assert option in proc.stdout


def test_demo_module_still_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "quiesce.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "quiesce.Deadlock" in proc.stdout
    assert "in stock asyncio order the test passes" in proc.stdout
    assert 'quiesce.replay(test_no_overdraft, "q1-' in proc.stdout
    assert "AssertionError: overdrawn: balance -30" in proc.stdout


# -- explore and replay: the pytest command lines ------------------------------------------------


def test_explore_command_line() -> None:
    assert pytest_command(
        ["explore", "tests/test_x.py::test_y", "--runs", "50", "--policy", "pct", "--seed", "7"]
    ) == [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_x.py::test_y",
        "--quiesce-mode=auto",
        "--quiesce-runs=50",
        "--quiesce-policy=pct",
        "--quiesce-seed=7",
        "--quiesce-override=runs,policy,seed",
    ]


def test_explore_defaults_and_pytest_arguments_pass_through() -> None:
    command = pytest_command(["explore", "t.py::test_a", "-x", "-k", "slow", "--runs=3", "-q"])
    assert command == [
        sys.executable,
        "-m",
        "pytest",
        "t.py::test_a",
        "--quiesce-mode=auto",
        "--quiesce-runs=3",
        "--quiesce-override=runs",
        "-x",
        "-k",
        "slow",
        "-q",
    ]
    assert pytest_command(["explore", "t.py::test_a"])[4:] == [
        "--quiesce-mode=auto",
        "--quiesce-runs=200",
    ]


@pytest.mark.parametrize("policy", ["auto", "random", "pct", "dfs", "fifo"])
def test_explore_policies(policy: str) -> None:
    command = pytest_command(["explore", "t.py::x", "--policy", policy])
    assert f"--quiesce-policy={policy}" in command


def test_replay_command_line() -> None:
    assert pytest_command(["replay", "t.py::test_a", "q1-AwI", "-vv"]) == [
        sys.executable,
        "-m",
        "pytest",
        "t.py::test_a",
        "--quiesce-mode=auto",
        "--quiesce-replay=q1-AwI",
        "-vv",
    ]


def test_command_builders() -> None:
    assert explore_command("t.py::x", runs=2, policy="dfs", seed=0, pytest_args=["-s"])[3:] == [
        "t.py::x",
        "--quiesce-mode=auto",
        "--quiesce-runs=2",
        "--quiesce-policy=dfs",
        "--quiesce-seed=0",
        "--quiesce-override=runs,policy,seed",
        "-s",
    ]
    assert replay_command("t.py::x", "q1-A")[3:] == [
        "t.py::x",
        "--quiesce-mode=auto",
        "--quiesce-replay=q1-A",
    ]


def test_explore_runs_pytest_and_exits_with_its_status(tmp_path: Path) -> None:
    """Plugin or not: with plugin autoloading off, pytest rejects --quiesce-runs (a usage
    error, status 4); the CLI streams pytest's output and exits with its status."""
    write(tmp_path / "test_ok.py", "def test_ok():\n    pass\n")
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = quiesce_cli(
        "explore",
        "test_ok.py::test_ok",
        "--runs",
        "2",
        "-p",
        "no:cacheprovider",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--quiesce-runs=2" in proc.stderr
    proc = quiesce_cli("replay", "test_ok.py::test_ok", "q1-A", cwd=tmp_path, env=env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--quiesce-replay=q1-A" in proc.stderr


RACY_MODULE = """
import asyncio

async def test_ok():
    await asyncio.sleep(60)

async def test_racy():
    account = {"balance": 100}

    async def withdraw(amount, login_steps):
        for _ in range(login_steps):
            await asyncio.sleep(0)
        if account["balance"] >= amount:
            await asyncio.sleep(0)
            account["balance"] -= amount

    await asyncio.gather(withdraw(80, 0), withdraw(50, 2))
    assert account["balance"] >= 0

def test_sync():
    pass
"""


def test_explore_and_replay_take_an_unmarked_async_test(tmp_path: Path) -> None:
    write(tmp_path / "test_some.py", RACY_MODULE)
    passing = quiesce_cli(
        "explore", "test_some.py::test_ok", "--runs", "3", "-p", "no:cacheprovider", cwd=tmp_path
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 passed" in passing.stdout
    failing = quiesce_cli(
        "explore", "test_some.py::test_racy", "-p", "no:cacheprovider", cwd=tmp_path
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    found = re.search(r"--quiesce-replay=(q1-\S+)", failing.stdout)
    assert found is not None, failing.stdout
    replayed = quiesce_cli(
        "replay",
        "test_some.py::test_racy",
        found.group(1),
        "-p",
        "no:cacheprovider",
        cwd=tmp_path,
    )
    assert replayed.returncode == 1 and "assert -30 >= 0" in replayed.stdout


def test_explore_of_a_test_quiesce_does_not_run_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path / "test_some.py", RACY_MODULE)
    proc = quiesce_cli("explore", "test_some.py::test_sync", "-p", "no:cacheprovider", cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "none of the 1 selected test(s) runs on quiesce" in proc.stderr
    assert "only async def tests run on quiesce" in proc.stderr


def test_replay_of_a_failure_database_entry_passes_the_rest_to_pytest(tmp_path: Path) -> None:
    entry = tmp_path / "entry.json"
    entry.write_text(
        json.dumps(
            {
                "nodeid": "tests/test_x.py::test_y",
                "schedule": "q1-AAEAAQ",
                "found": "2026-12-08T00:00:00+00:00",
                "run": 2,
                "policy": "random",
                "seed": 1,
                "passes": 0,
                "error": "AssertionError",
                "rootdir": str(tmp_path),
            }
        )
    )
    # A pytest option's value must not be taken for the (absent) SCHEDULE argument.
    command = pytest_command(["replay", str(entry), "-p", "no:cacheprovider", "-x"])
    assert command[3:] == [
        str(tmp_path / "tests/test_x.py::test_y"),
        "--quiesce-mode=auto",
        "--quiesce-replay=q1-AAEAAQ",
        f"--rootdir={tmp_path}",
        "-p",
        "no:cacheprovider",
        "-x",
    ]
    entry.write_text("{}")
    proc = quiesce_cli("replay", str(entry), cwd=tmp_path)
    assert proc.returncode == 2 and "is not a failure database entry (missing" in proc.stderr
