"""What a quiesce test in a pytest-asyncio auto-mode suite cannot do, and says so at setup
naming the fixture or mark and the fix (inner pytest runs in a subprocess, each with its own
pytest-asyncio)."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Unknown config option:pytest.PytestConfigWarning
    # pytest-asyncio 0.23 to 0.26 deprecate asking for event_loop in an async test.
    ignore:.*explicitly requests the "event_loop" fixture:DeprecationWarning
"""


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(textwrap.dedent(source))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_module_scoped_async_fixture_is_named(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture(scope="module")
        async def shared_pool():
            return object()

        @pytest.mark.quiesce
        async def test_quiesce(shared_pool):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quiesce runs on a fresh quiesce loop of its own, but requests the async "
            "fixture(s) 'shared_pool' (scope='module'), which would run on another event "
            "loop*Make them function-scoped*"
        ]
    )


def test_event_loop_request_is_named(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.quiesce
        async def test_quiesce(event_loop):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quiesce runs on its quiesce loop, but asks for pytest-asyncio's event loop: "
            "event_loop*use asyncio.get_running_loop()*"
        ]
    )


def test_explicit_asyncio_mark_beside_quiesce_is_refused(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.quiesce
        async def test_both():
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*test_both is marked @pytest.mark.quiesce but also claimed by @pytest.mark.asyncio*"]
    )


def test_module_asyncio_mark_beside_quiesce_is_refused(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.asyncio

        @pytest.mark.quiesce
        async def test_quiesce():
            pass

        async def test_asyncio():
            pass
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quiesce is marked @pytest.mark.quiesce but also claimed by "
            "@pytest.mark.asyncio (on the test, its class or its module)*"
        ]
    )
