"""The README's examples run, and print what the README says they print.

The README sits beside tests/ in a checkout (as in CI); elsewhere these tests are skipped.
"""

from __future__ import annotations

import asyncio
import re
import unittest
from pathlib import Path
from typing import Any, Dict, List

import pytest

import quiesce

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="no README.md beside tests/")


def blocks(language: str) -> List[str]:
    """The README's fenced code blocks in ``language``, in order."""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def block_containing(language: str, marker: str) -> str:
    found = [block for block in blocks(language) if marker in block]
    assert len(found) == 1, f"expected one {language} block with {marker!r}, found {len(found)}"
    return found[0]


def test_the_user_story_runs() -> None:
    source = block_containing("python", "def wait_on_event(")
    namespace: Dict[str, Any] = {}
    try:
        exec(compile(source, "README.md", "exec"), namespace)
    finally:
        asyncio.set_event_loop(None)
    assert namespace["log"] == ["waiting", "done"]


def test_the_exploration_example_fails_as_shown() -> None:
    source = block_containing("python", "quiesce.explore(test_no_overdraft)")
    namespace: Dict[str, Any] = {}
    with pytest.raises(quiesce.ExplorationFailed) as caught:
        exec(compile(source, "README.md", "exec"), namespace)
    shown = block_containing("text", "quiesce.replay(test_no_overdraft")
    printed = str(caught.value)
    # The tag after the "." names the run's decisions and the CPython version it was
    # recorded on (3.13 in the README): compared without it.
    untagged = re.compile(r"(q1-[A-Za-z0-9_-]*)\.[A-Za-z0-9_-]+")
    for line in shown.splitlines()[:5]:
        assert untagged.sub(r"\1", line) in untagged.sub(r"\1", printed)
    schedule = re.search(r'"(q1-[A-Za-z0-9_.-]*)"', shown)
    assert schedule is not None and "." in caught.value.schedule
    assert untagged.sub(r"\1", schedule.group(1)) == untagged.sub(r"\1", caught.value.schedule)
    with pytest.raises(AssertionError, match="overdrawn: balance -30"):
        quiesce.replay(namespace["test_no_overdraft"], schedule.group(1))


def test_the_fault_point_example_is_inert_outside_exploration() -> None:
    source = block_containing("python", "quiesce.buggify(")
    body = "\n".join("    " + line for line in source.splitlines())
    namespace: Dict[str, Any] = {"quiesce": quiesce}
    code = f"async def point():\n{body}\n    return 'went on'"
    exec(compile(code, "README.md", "exec"), namespace)
    assert asyncio.run(namespace["point"]()) == "went on"


def test_the_pytest_examples_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(block_containing("python", "@pytest.mark.quiesce"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_unittest_example_passes() -> None:
    namespace: Dict[str, Any] = {}
    exec(compile(block_containing("python", "quiesce.TestCase"), "README.md", "exec"), namespace)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(namespace["TestReminders"])
    outcome = unittest.TestResult()
    suite.run(outcome)
    assert outcome.testsRun == 2 and outcome.wasSuccessful(), outcome.failures + outcome.errors
