"""Runs test modules in fresh child processes, with per-test and per-module timeouts.

Each module runs in its own child (``run.py --worker``), which streams one JSON line per event
(see :mod:`harness.worker`). The driver watches that stream. When a test overruns the per-test
timeout, the driver kills the child's process group, records the test as ``hang`` (with the
faulthandler stack dumped just before), and starts a fresh child that skips every test already
finished. A child that dies inside a test (a crash) is handled the same way (``crash``). The
module as a whole has a time budget too; tests not reached within it are not reported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

RUN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run.py")

#: How often the driver looks at a child's event stream.
_POLL_SECONDS = 0.2

#: Retries of a module whose child keeps dying without finishing a test.
_MAX_FRUITLESS_ATTEMPTS = 2


def _tail(path: str, limit: int = 3000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-limit:]
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child and everything it started (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class ModuleRun:
    """One module on one interpreter in one mode: runs it and holds its per-test records."""

    def __init__(
        self,
        python: str,
        mode: str,
        module: str,
        work_dir: str,
        per_test_timeout: float,
        module_timeout: float,
        only: Optional[List[str]] = None,
    ) -> None:
        self.python = python
        self.mode = mode
        self.module = module
        self.work_dir = work_dir
        self.per_test_timeout = per_test_timeout
        self.module_timeout = module_timeout
        self.only = only
        self.records: Dict[str, Dict[str, Any]] = {}
        self.setup: Dict[str, Any] = {}
        self.loops: Dict[str, Dict[str, int]] = {"created": {}, "runs": {}}
        self.notes: List[str] = []
        self.attempts = 0
        self.wall = 0.0
        self._attempt_loops: List[Dict[str, Dict[str, int]]] = []

    # -- the child ---------------------------------------------------------------------------

    def _command(self, events: str, skip: str, dump: str) -> List[str]:
        return [
            self.python,
            RUN_PY,
            "--worker",
            "--module",
            self.module,
            "--mode",
            self.mode,
            "--events",
            events,
            "--skip",
            skip,
            "--dump",
            dump,
            "--dump-after",
            str(max(1.0, self.per_test_timeout - 2.0)),
        ]

    def _add_loops(self, loops: Dict[str, Dict[str, int]]) -> None:
        for kind in ("created", "runs"):
            for label, count in loops.get(kind, {}).items():
                self.loops[kind][label] = self.loops[kind].get(label, 0) + count

    def run(self) -> ModuleRun:
        """Runs the module to completion (resuming after hangs and crashes)."""
        started = time.monotonic()
        deadline = started + self.module_timeout
        scratch = tempfile.mkdtemp(prefix=f"conf-{self.module}-", dir=self.work_dir)
        fruitless = 0
        try:
            while True:
                self.attempts += 1
                before = len(self.records)
                finished, stop = self._attempt(scratch, deadline)
                if finished or stop:
                    break
                fruitless = fruitless + 1 if len(self.records) == before else 0
                if fruitless >= _MAX_FRUITLESS_ATTEMPTS:
                    self.notes.append("gave up: the child died twice without finishing a test")
                    break
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.wall = round(time.monotonic() - started, 1)
        return self

    def _attempt(self, scratch: str, deadline: float) -> tuple[bool, bool]:
        """One child. Returns ``(finished, stop)``: whether the module ran to its end, and
        whether to give up resuming."""
        n = self.attempts
        events = os.path.join(scratch, f"events-{n}.jsonl")
        skip = os.path.join(scratch, f"skip-{n}.txt")
        dump = os.path.join(scratch, f"hang-{n}.txt")
        output = os.path.join(scratch, f"output-{n}.txt")
        cwd = os.path.join(scratch, f"cwd-{n}")
        os.makedirs(cwd)
        with open(skip, "w", encoding="utf-8") as fh:
            fh.write("\n".join(self.records) + "\n")
        command = self._command(events, skip, dump)
        if self.only is not None:
            command += ["--only", ",".join(self.only)]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env["PYTHONFAULTHANDLER"] = "1"
        open(events, "w").close()
        with open(output, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        buffer = ""
        self._attempt_loops = []
        current: Optional[str] = None
        current_since = time.monotonic()
        last_event = time.monotonic()
        finished = False
        killed_for: Optional[str] = None
        with open(events, encoding="utf-8") as stream:
            while True:
                exited = proc.poll() is not None
                buffer += stream.read()
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    if line.strip():
                        last_event = time.monotonic()
                        current, current_since, finished = self._on_event(
                            json.loads(line), current, current_since, finished
                        )
                if exited:
                    break
                now = time.monotonic()
                if current is not None and now - current_since > self.per_test_timeout:
                    killed_for = "hang"
                elif current is None and now - last_event > self.per_test_timeout:
                    killed_for = "fixture-hang"
                elif now > deadline:
                    killed_for = "module-timeout"
                if killed_for:
                    _kill_group(proc)
                    continue
                time.sleep(_POLL_SECONDS)
        code = proc.returncode
        for loops in self._attempt_loops:
            self._add_loops(loops)
        if finished:
            return True, False
        if killed_for == "module-timeout":
            where = f" while running {current}" if current else ""
            self.notes.append(
                f"module timeout: stopped after {self.module_timeout:g} s{where}; "
                "tests not reached are not reported"
            )
            if current is not None:
                self._record_broken(current, "hang", self._hang_reason(dump, "module timeout"))
            return False, True
        if current is not None:
            if killed_for == "hang":
                reason = self._hang_reason(dump, f"no result after {self.per_test_timeout:g} s")
                self._record_broken(current, "hang", reason)
            else:
                reason = f"the interpreter died during the test ({_describe_exit(code)})"
                self._record_broken(current, "crash", reason, _tail(output))
            return False, False
        what = "hung" if killed_for == "fixture-hang" else _describe_exit(code)
        last = next(reversed(self.records), None) if self.records else None
        pseudo = f"{self.module}.<module fixtures after {last or 'start'}>"
        self._record_broken(
            pseudo,
            "hang" if killed_for else "crash",
            f"the child {what} outside any test",
            _tail(output),
        )
        return False, True

    def _on_event(
        self, event: Dict[str, Any], current: Optional[str], since: float, finished: bool
    ) -> tuple[Optional[str], float, bool]:
        """Folds one child event into the records; returns the new (current test, when it
        started, finished) state."""
        kind = event["event"]
        if kind == "setup":
            self.setup = event
        elif kind == "start":
            current, since = event["id"], time.monotonic()
        elif kind == "result":
            self.records[event["id"]] = event
            if event["id"] == current:
                current = None
            self._attempt_loops.append(event.get("loops", {}))
        elif kind == "done":
            # The child's own census covers loops made outside any test window too
            # (setUpClass, IsolatedAsyncioTestCase's loop on 3.9, ...).
            self._attempt_loops = [event["loops"]]
            finished = True
        elif kind == "worker-error":
            self.notes.append("worker error:\n" + event["traceback"][-2000:])
        return current, since, finished

    def _hang_reason(self, dump: str, what: str) -> str:
        stack = _tail(dump, 2500)
        return f"{what}; faulthandler stack:\n{stack}" if stack else what

    def _record_broken(self, test_id: str, status: str, reason: str, output: str = "") -> None:
        headline = reason.splitlines()[0] if reason else status
        self.records[test_id] = {
            "event": "result",
            "id": test_id,
            "status": status,
            "reason": headline,
            "traceback": (reason + ("\n--- child output ---\n" + output if output else ""))[-6000:],
            "duration": None,
            "loops": {"created": {}, "runs": {}},
            "fixture": test_id.startswith(f"{self.module}.<"),
        }

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready summary with every record."""
        return {
            "module": self.module,
            "mode": self.mode,
            "attempts": self.attempts,
            "wall": self.wall,
            "setup": self.setup,
            "loops": self.loops,
            "notes": self.notes,
            "records": self.records,
        }


def probe(python: str) -> Dict[str, Any]:
    """Interpreter version, and whether quiesce and CPython's test.test_asyncio import there
    (run in the target python)."""
    code = (
        "import json, platform, sys\n"
        "info = {'version': platform.python_version(), 'executable': sys.executable}\n"
        "try:\n"
        "    import quiesce\n"
        "    info['quiesce'] = quiesce.__version__\n"
        "    info['quiesce_file'] = quiesce.__file__\n"
        "except Exception as exc:\n"
        "    info['quiesce_error'] = repr(exc)\n"
        "try:\n"
        "    import test.test_asyncio\n"
        "except Exception as exc:\n"
        "    info['test_asyncio_error'] = repr(exc)\n"
        "print(json.dumps(info))\n"
    )
    out = subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    return json.loads(out.stdout)


def default_python() -> str:
    """The interpreter running the driver."""
    return sys.executable
