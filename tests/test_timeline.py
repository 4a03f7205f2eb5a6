"""The timeline of a replay (``quiesce.replay(..., trace=PATH)``): a Chrome Trace Event file
checked against the format, and a self-contained HTML page rendered by headless Chromium
(Debian's ``chromium`` package; skipped where it is not installed, unless
``QUIESCE_REQUIRE_CHROMIUM=1``, as CI sets).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

import quiesce
from quiesce import demo

#: Fields every event of each phase needs (Trace Event Format, "JSON Object Format").
REQUIRED = {
    "M": {"name", "ph", "pid", "args"},
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "C": {"name", "ph", "ts", "pid", "args"},
    "s": {"name", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "ph", "ts", "pid", "tid", "id"},
}


def failing_schedule() -> str:
    result = quiesce.explore(demo.test_no_overdraft, raise_on_failure=False)
    assert result.failure is not None
    return result.failure.schedule


def check_trace_format(document: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Checks ``document`` against the Trace Event format; returns its events."""
    assert set(document) >= {"traceEvents", "displayTimeUnit"}
    assert document["displayTimeUnit"] in ("ms", "ns")
    events = document["traceEvents"]
    assert isinstance(events, list) and events
    flows: Dict[Any, List[str]] = {}
    for event in events:
        phase = event["ph"]
        assert phase in REQUIRED, event
        missing = REQUIRED[phase] - set(event)
        assert not missing, (missing, event)
        if "ts" in event:
            assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
        if phase == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] > 0
        if phase == "C":
            assert all(isinstance(value, (int, float)) for value in event["args"].values())
        if phase == "i":
            assert event["s"] in ("g", "p", "t")
        if phase in ("s", "f"):
            flows.setdefault(event["id"], []).append(phase)
        if "args" in event:
            json.dumps(event["args"])  # plain JSON values only
    # Every flow starts once and ends once, start first.
    assert all(phases == ["s", "f"] for phases in flows.values()), flows
    return events


def test_a_replay_writes_its_timeline_as_a_chrome_trace(tmp_path: Path) -> None:
    schedule = failing_schedule()
    path = tmp_path / "overdraft.json"
    with pytest.raises(AssertionError, match="overdrawn"):
        quiesce.replay(demo.test_no_overdraft, schedule, trace=path)
    document = json.loads(path.read_text(encoding="utf-8"))
    events = check_trace_format(document)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    withdraws = [name for name in tracks.values() if name.endswith("test_no_overdraft.withdraw")]
    assert len(withdraws) == 2 and any(
        name.endswith(" test_no_overdraft") for name in tracks.values()
    )
    steps = [e for e in events if e["ph"] == "X"]
    assert [e["args"]["step"] for e in steps] == list(range(len(steps)))
    # The schedule's two deviations: two steps in red, naming the decision and the work that
    # stock order would have run instead.
    deviating = [e for e in steps if e["cat"] == "deviation"]
    assert len(deviating) == 2
    for event in deviating:
        assert event["args"]["left stock order"][0].endswith("(stock order: 0)")
        assert event["args"]["could have run instead"]
    # Wake-ups: each task step after the first is woken by an earlier step.
    flows = [e for e in events if e["ph"] == "f"]
    assert len(flows) >= len(steps) - 2
    assert document["otherData"]["outcome"] == "failed: AssertionError: overdrawn: balance -30"
    assert document["otherData"]["schedule"] == schedule


def test_a_passing_replay_writes_one_too_with_virtual_time(tmp_path: Path) -> None:
    async def sleeper() -> None:
        import asyncio

        await asyncio.gather(asyncio.sleep(5), asyncio.sleep(60))

    path = tmp_path / "nested" / "sleeper.json"
    quiesce.replay(sleeper, "q1-", trace=path)
    events = check_trace_format(json.loads(path.read_text(encoding="utf-8")))
    times = [e["args"]["seconds"] for e in events if e["ph"] == "C"]
    assert times == sorted(times) and times[-1] == 60.0
    assert {e["args"]["name"] for e in events if e["name"] == "thread_name"} >= {"timers"}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("QUIESCE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("QUIESCE_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt install chromium)")
        pytest.skip("headless Chromium is not installed (Debian: apt install chromium)")
    return found


def headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_html_timeline_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    page = tmp_path / "overdraft.html"
    with pytest.raises(AssertionError):
        quiesce.replay(demo.test_no_overdraft, failing_schedule(), trace=page)
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch
    dom = headless(browser, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert 'data-rendered-tracks="4"' in dom.stdout
    assert re.search(r'data-rendered-steps="\d+"', dom.stdout)
    assert dom.stdout.count('class="step deviation"') == 2
    assert "Task-" in dom.stdout and "withdraw" in dom.stdout
    shot = tmp_path / "timeline.png"
    done = headless(browser, "--window-size=1000,250", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0, done.stderr
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1000, 250)
