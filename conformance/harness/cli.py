"""Command line of ``conformance/run.py`` (the driver side)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from harness import catalog, driver, report, routes

#: Modes that run quiesce.Loop (the loop under test).
QUIESCE_MODES = ["real", "virtual"]
#: Self-check modes: deliberately broken quiesce loops.
BROKEN_MODES = [f"broken-{name}" for name in routes.BROKEN_VARIANTS]
ALL_MODES = ["stock", *QUIESCE_MODES, *BROKEN_MODES]

_FAILED = ("fail", "error", "uxpass", "hang", "crash")


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The driver's options."""
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run CPython's test_asyncio against quiesce.Loop (see conformance/README.md).",
    )
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter to test (repeatable); quiesce must be installed in it for the "
        "quiesce modes. Default: the interpreter running this script.",
    )
    parser.add_argument(
        "--mode",
        default="all",
        help="stock, real, virtual, self-check, all (= all four), or a comma-separated list",
    )
    parser.add_argument(
        "--module", action="append", help="run only this module (repeatable; default: all)"
    )
    parser.add_argument(
        "--fast", action="store_true", help="the fast subset of modules (for CI; see README)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="modules run at once (default 1)")
    parser.add_argument(
        "--per-test-timeout",
        type=float,
        default=90.0,
        help="seconds one test may run before it counts as hung (default 90)",
    )
    parser.add_argument(
        "--module-timeout",
        type=float,
        default=1200.0,
        help="seconds one module may run in total (default 1200)",
    )
    parser.add_argument(
        "--rerun",
        type=int,
        default=1,
        help="re-run each failing test this many times in a fresh child, alone; a test that "
        "then passes is reported as flaky (default 1)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(tempfile.gettempdir(), "quiesce-conformance"),
        help="directory for raw JSON results (default: $TMPDIR/quiesce-conformance)",
    )
    parser.add_argument("--write", metavar="PATH", help="render the results document to PATH")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="do not run anything: render --write from the JSON already in --out (of the "
        "--python interpreters given, else of every interpreter found there: results from "
        "runs on other machines or roots can be copied in and rendered together)",
    )
    args = parser.parse_args(argv)
    args.all_saved = args.report_only and not args.python
    # Absolute, not resolved: a venv's python is a symlink that must stay inside the venv.
    args.python = [os.path.abspath(p) for p in args.python or [driver.default_python()]]
    return args


def saved_versions(out: str) -> List[str]:
    """The interpreter versions that have results saved in ``out``."""
    found = set()
    for name in os.listdir(out) if os.path.isdir(out) else []:
        if name.startswith("results-") and name.endswith(".json"):
            found.add(name[len("results-") :].split("-", 1)[0])
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def expand_modes(spec: str) -> List[str]:
    """``all`` / ``self-check`` / comma list -> the concrete modes."""
    modes: List[str] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "all":
            modes += ALL_MODES
        elif part == "self-check":
            modes += BROKEN_MODES
        elif part in ALL_MODES:
            modes.append(part)
        else:
            raise SystemExit(f"unknown mode {part!r}; choose from {', '.join(ALL_MODES)}, all")
    return list(dict.fromkeys(modes))


def modules_for(version: str, args: argparse.Namespace, mode: str) -> List[str]:
    """The modules to run on an interpreter of ``version`` in ``mode``."""
    major, minor = (int(part) for part in version.split(".")[:2])
    names = [m.name for m in catalog.INCLUDED if (major, minor) >= m.since]
    if mode in BROKEN_MODES:
        names = [name for name in names if name in catalog.SELF_CHECK]
    elif args.fast:
        names = [name for name in names if name in catalog.FAST]
    if args.module:
        names = [name for name in names if name in args.module]
    return names


def results_path(out: str, version: str, mode: str) -> str:
    """Where the JSON results of one interpreter and mode live."""
    return os.path.join(out, f"results-{version}-{mode}.json")


def load_results(out: str, version: str, mode: str) -> Dict[str, Any]:
    """The saved results of one interpreter and mode (empty if none)."""
    try:
        with open(results_path(out, version, mode), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def _summary(run: Dict[str, Any]) -> str:
    counts = report.count(run)
    loops = ", ".join(f"{k}={v}" for k, v in sorted(run["loops"]["created"].items())) or "none"
    return (
        f"{counts['run']} run, {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['errors']} errors, {counts['skipped']} skipped "
        f"[{run['wall']:.1f} s; loops created: {loops}]"
    )


def _rerun_failures(
    first: driver.ModuleRun, args: argparse.Namespace, work_dir: str
) -> driver.ModuleRun:
    """Re-runs each failing test alone in fresh children; marks those that pass as flaky."""
    for attempt in range(args.rerun):
        failing = [
            test_id
            for test_id, record in first.records.items()
            if record["status"] in _FAILED and not record.get("fixture")
        ]
        if not failing:
            break
        again = driver.ModuleRun(
            first.python,
            first.mode,
            first.module,
            work_dir,
            args.per_test_timeout,
            args.module_timeout,
            only=failing,
        ).run()
        for test_id in failing:
            record = first.records[test_id]
            rerun = again.records.get(test_id)
            status = rerun["status"] if rerun else "not-run"
            record.setdefault("reruns", []).append(status)
            if status in ("pass", "xfail"):
                record["status"] = "flaky"
        first.wall = round(first.wall + again.wall, 1)
        if attempt + 1 < args.rerun:
            continue
    return first


def run_all(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """Runs every (interpreter, mode, module); saves JSON after each module. Returns the
    ``(version, mode)`` pairs that ran."""
    modes = expand_modes(args.mode)
    os.makedirs(args.out, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix="work-", dir=args.out)
    jobs: List[Tuple[str, Dict[str, Any], str, str]] = []
    ran: List[Tuple[str, str]] = []
    saved: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for python in args.python:
        info = driver.probe(python)
        version = info["version"]
        if "test_asyncio_error" in info:
            minor = ".".join(version.split(".")[:2])
            raise SystemExit(
                f"{python}: CPython's own test suite is not installed for this interpreter "
                f"(import test.test_asyncio: {info['test_asyncio_error']}), and the conformance "
                "run is that suite. pyenv and python.org builds include it; on Debian or Ubuntu "
                f"install it with `apt install libpython{minor}-testsuite`. Or leave conformance "
                "out: QUIESCE_CONFORMANCE=0 bash scripts/test.sh."
            )
        for mode in modes:
            if mode != "stock" and "quiesce" not in info:
                raise SystemExit(
                    f"{python}: cannot import quiesce ({info.get('quiesce_error')}); install "
                    "the quiesce wheel into it, or use --mode stock"
                )
            data = load_results(args.out, version, mode)
            data.update({"python": info, "mode": mode})
            data.setdefault("modules", {})
            saved[(version, mode)] = data
            ran.append((version, mode))
            for module in modules_for(version, args, mode):
                jobs.append((python, info, mode, module))
    lock = threading.Lock()

    def one(job: Tuple[str, Dict[str, Any], str, str]) -> None:
        python, info, mode, module = job
        run = driver.ModuleRun(
            python, mode, module, work_dir, args.per_test_timeout, args.module_timeout
        ).run()
        if args.rerun and not mode.startswith("broken-"):
            run = _rerun_failures(run, args, work_dir)
        result = run.as_dict()
        with lock:
            data = saved[(info["version"], mode)]
            data["modules"][module] = result
            data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(results_path(args.out, info["version"], mode), "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            print(f"{info['version']:>7} {mode:<15} {module:<24} {_summary(result)}", flush=True)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
    print(f"ran {len(jobs)} module runs in {time.monotonic() - started:.0f} s", flush=True)
    return ran


def main(argv: Optional[List[str]] = None) -> int:
    """Runs what the options ask for, prints the checks, writes the document; returns the
    exit status."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.all_saved:
        versions = saved_versions(args.out)
        pairs = [(version, mode) for version in versions for mode in expand_modes(args.mode)]
    elif args.report_only:
        versions = [driver.probe(python)["version"] for python in args.python]
        pairs = [(version, mode) for version in versions for mode in expand_modes(args.mode)]
    else:
        pairs = run_all(args)
    results = {pair: load_results(args.out, *pair) for pair in pairs}
    results = {pair: data for pair, data in results.items() if data}
    problems = report.check(results)
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            fh.write(report.render(results, command="bash scripts/conformance.sh"))
        print(f"wrote {args.write}")
    return 1 if problems else 0
