"""The per-module child process: installs the loop routes, runs one test_asyncio module, and
streams one JSON line per event to a file, so the driver keeps every finished test's result
even if a later test hangs or crashes the interpreter.

Events (one JSON object per line): ``setup`` (interpreter, routes patched), ``start`` (a test
began), ``result`` (a test or fixture finished: status, reason, traceback, duration, loops
created and run while it ran), ``done`` (the module finished; census totals).
"""

from __future__ import annotations

import argparse
import faulthandler
import fnmatch
import json
import os
import platform
import sys
import time
import traceback
import unittest
from typing import Any, Dict, Iterator, List, Optional, Set, TextIO

from harness import catalog, expectations, routes

PACKAGE = "test.test_asyncio"

#: Longest traceback kept per test (characters, from the end).
_MAX_TRACEBACK = 6000


def short_id(test_id: str) -> str:
    """``test.test_asyncio.test_tasks.C.test_x`` -> ``test_tasks.C.test_x``."""
    prefix = PACKAGE + "."
    return test_id[len(prefix) :] if test_id.startswith(prefix) else test_id


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    """Every test case in ``suite``, depth first, in the loader's order."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def _reason(err: Any) -> str:
    exc_type, exc, _tb = err
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc_type.__name__}: {first}"[:400]


class StreamingResult(unittest.TestResult):
    """A ``TestResult`` that writes one ``result`` event per test (and per fixture error)."""

    def __init__(
        self,
        events: TextIO,
        census: routes.LoopCensus,
        dump: Optional[TextIO],
        dump_after: float,
    ) -> None:
        super().__init__()
        self._events = events
        self._census = census
        self._dump = dump
        self._dump_after = dump_after
        self._current: Optional[Dict[str, Any]] = None
        self._started = 0.0

    def emit(self, record: Dict[str, Any]) -> None:
        """Writes one event line and flushes it to disk."""
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()

    # -- per-test lifecycle ------------------------------------------------------------------

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        test_id = short_id(test.id())
        self._current = {"event": "result", "id": test_id, "status": None}
        self._started = time.monotonic()
        self._census.mark()
        self.emit({"event": "start", "id": test_id})
        if self._dump is not None:
            self._dump.seek(0)
            self._dump.truncate()
            faulthandler.dump_traceback_later(self._dump_after, file=self._dump)

    def stopTest(self, test: unittest.TestCase) -> None:
        if self._dump is not None:
            faulthandler.cancel_dump_traceback_later()
        record = self._current
        self._current = None
        if record is not None:
            if record["status"] is None:
                record["status"] = "pass"
            record["duration"] = round(time.monotonic() - self._started, 3)
            record["loops"] = self._census.since_mark()
            self.emit(record)
        super().stopTest(test)

    def _set(self, test: Any, status: str, err: Any = None, reason: str = "") -> None:
        tb = ""
        if err is not None:
            tb = self._exc_info_to_string(err, test)[-_MAX_TRACEBACK:]
            reason = reason or _reason(err)
        record = self._current
        if record is None or short_id(test.id()) != record["id"]:
            # A fixture (setUpModule, setUpClass, tearDownClass, ...) outside any test.
            self.emit(
                {
                    "event": "result",
                    "id": short_id(test.id()),
                    "status": status,
                    "reason": reason,
                    "traceback": tb,
                    "duration": 0.0,
                    "loops": {"created": {}, "runs": {}},
                    "fixture": True,
                }
            )
            return
        rank = {"pass": 0, "xfail": 0, "skip": 1, "uxpass": 2, "fail": 3, "error": 4}
        if record["status"] is None or rank[status] >= rank[record["status"]]:
            record["status"] = status
            if reason or tb:
                record["reason"] = reason
                record["traceback"] = tb

    def escaped(self, test: unittest.TestCase, err: Any) -> None:
        """An exception escaped the test's own ``run()`` after it finished (for example from
        ``IsolatedAsyncioTestCase``'s loop teardown): record the test as an error."""
        self.emit(
            {
                "event": "result",
                "id": short_id(test.id()),
                "status": "error",
                "reason": "escaped the test's run(): " + _reason(err),
                "traceback": self._exc_info_to_string(err, test)[-_MAX_TRACEBACK:],
                "duration": round(time.monotonic() - self._started, 3),
                "loops": self._census.since_mark(),
            }
        )

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._set(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "fail", err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._set(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(test, "skip", reason=str(reason)[:400])

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "uxpass", reason="unexpected success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            status = "fail" if issubclass(err[0], test.failureException) else "error"
            detail = subtest._subDescription()
            tb = self._exc_info_to_string(err, test)[-_MAX_TRACEBACK:]
            record = self._current
            if record is not None:
                rank = {"fail": 3, "error": 4}
                if record["status"] not in ("fail", "error") or (
                    rank[status] > rank[record["status"]]
                ):
                    record["status"] = status
                    record["reason"] = f"{_reason(err)} {detail}"[:400]
                    record["traceback"] = tb


def _guard(test: unittest.TestCase, result: StreamingResult) -> None:
    """Makes an exception that escapes ``test.run()`` a recorded error instead of the end of
    the module (``TestCase.__call__`` looks ``run`` up on the instance)."""
    original = test.run

    def run(inner: Optional[unittest.TestResult] = None) -> Any:
        try:
            return original(inner)
        except Exception:
            result.escaped(test, sys.exc_info())
            return None

    test.run = run  # type: ignore[method-assign]


def excluded(test_id: str, patterns: List[str]) -> bool:
    """Whether ``module.Class.test`` matches one of the catalog's ``Class[.test]`` patterns."""
    _module, _, rest = test_id.partition(".")
    cls = rest.split(".", 1)[0]
    return any(cls == pattern or fnmatch.fnmatchcase(rest, pattern) for pattern in patterns)


def run_module(args: argparse.Namespace) -> int:
    """Runs one module as configured by the command line; returns the exit status."""
    census = routes.LoopCensus()
    census.install()
    patched: List[str] = []
    mode = args.mode
    if mode in ("real", "virtual"):
        patched = routes.install_quiesce_routes(mode)
    elif mode.startswith("broken-"):
        patched = routes.install_quiesce_routes("real", mode[len("broken-") :])
    elif mode != "stock":
        raise SystemExit(f"unknown mode {mode!r}")

    skip: Set[str] = set()
    if args.skip:
        with open(args.skip, encoding="utf-8") as fh:
            skip = {line.strip() for line in fh if line.strip()}
    only: Optional[Set[str]] = set(args.only.split(",")) if args.only else None
    patterns = [pattern for pattern, _ in catalog.excluded_tests(args.module)]

    with open(args.events, "a", encoding="utf-8") as events:
        dump = open(args.dump, "w+", encoding="utf-8") if args.dump else None
        try:
            quiesce_version = None
            if mode != "stock":
                import quiesce

                quiesce_version = quiesce.__version__
            result = StreamingResult(events, census, dump, args.dump_after)
            result.emit(
                {
                    "event": "setup",
                    "python": platform.python_version(),
                    "executable": sys.executable,
                    "mode": mode,
                    "quiesce": quiesce_version,
                    "patched": patched,
                    "pid": os.getpid(),
                }
            )
            module = __import__(f"{PACKAGE}.{args.module}", fromlist=["_"])
            loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
            tests = [
                test
                for test in iter_tests(loaded)
                if short_id(test.id()) not in skip
                and not excluded(short_id(test.id()), patterns)
                and (only is None or short_id(test.id()) in only)
            ]
            runnable = []
            for test in tests:
                hang = expectations.known_hang(platform.python_version(), mode, short_id(test.id()))
                if hang is None:
                    runnable.append(test)
                else:
                    result.emit(
                        {
                            "event": "result",
                            "id": short_id(test.id()),
                            "status": "hang",
                            "reason": f"not started: hangs by design in this mode ({hang.why})",
                            "traceback": "",
                            "duration": 0.0,
                            "loops": {"created": {}, "runs": {}},
                        }
                    )
            for test in runnable:
                _guard(test, result)
            suite = unittest.TestSuite(runnable)
            suite.run(result)
            result.emit({"event": "done", "loops": census.totals()})
        except BaseException:
            events.write(
                json.dumps({"event": "worker-error", "traceback": traceback.format_exc()}) + "\n"
            )
            events.flush()
            raise
        finally:
            if dump is not None:
                faulthandler.cancel_dump_traceback_later()
                dump.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the child (``run.py --worker ...``)."""
    parser = argparse.ArgumentParser(prog="run.py --worker")
    parser.add_argument("--module", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--events", required=True, help="JSON-lines file to append events to")
    parser.add_argument("--skip", help="file of test ids (one a line) not to run")
    parser.add_argument("--only", help="comma-separated test ids: run only these")
    parser.add_argument("--dump", help="file for faulthandler's dump of a test that overruns")
    parser.add_argument("--dump-after", type=float, default=60.0)
    args = parser.parse_args(argv)
    faulthandler.enable()
    return run_module(args)
